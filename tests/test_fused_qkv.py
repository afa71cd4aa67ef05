"""The fused pre-attention kernel (`bench.models.layers.fused_qkv`) against the model's own code:
q/k LayerNorm, RoPE and the q/k/v layout, run on the CPU through Triton's interpreter
(`TRITON_INTERPRET`, set in conftest.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.models.layers import Block, grid_positions, rope_table
from bench.models.layers import fused_qkv
from bench.models.layers.block import attention_inputs


def _block(heads: int, head_dim: int, qk_norm: bool) -> Block:
    block = Block(heads * head_dim, heads, qk_norm=qk_norm, init_values=0.01).eval()
    with torch.no_grad():  # LayerNorm starts at weight 1, bias 0: trained values make every term count
        for norm in (block.attn.q_norm, block.attn.k_norm):
            if isinstance(norm, nn.LayerNorm):
                norm.weight.normal_(1.0, 0.3)
                norm.bias.normal_(0.0, 0.3)
    return block


def _fused(block: Block, rows: torch.Tensor, rope) -> torch.Tensor:
    return fused_qkv.normed_rotated_qkv(block.attn.qkv(block.norm1(rows)), block.attn, rope)


@pytest.mark.parametrize("qk_norm, with_rope", [(True, True), (False, True), (True, False), (False, False)])
def test_kernel_equals_the_models_pre_attention_stage(qk_norm, with_rope):
    heads, head_dim, frames = 3, 16, 4
    rope = rope_table(grid_positions(2, 3, num_special=2), head_dim) if with_rope else None
    block = _block(heads, head_dim, qk_norm)
    rows = torch.randn(frames * 8, heads * head_dim)  # 8 tokens per frame; 96 (token, head) rows: not a multiple of a program's 32
    with torch.no_grad():
        expected, fused = attention_inputs(block, rows, rope), _fused(block, rows, rope)
    assert fused.shape == (3, frames * 8, heads, head_dim)
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


def test_kernel_rotates_by_each_tokens_position_within_its_frame():
    """Frame 2's tokens get frame 0's angles (global attention carries no frame index), and a
    wrong partner channel or sign would break the rotation's norm-preserving pairs."""
    heads, head_dim = 2, 8
    rope = rope_table(grid_positions(1, 2, num_special=1), head_dim)  # 3 tokens a frame
    block = _block(heads, head_dim, qk_norm=False)
    rows = torch.randn(3, heads * head_dim).repeat(3, 1)  # one frame's tokens, three times
    with torch.no_grad():
        fused = _fused(block, rows, rope).view(3, 3, 3, heads, head_dim)
        unrotated = block.attn.qkv(block.norm1(rows)).view(3, 3, 3, heads, head_dim).permute(2, 0, 1, 3, 4)  # (part, frame, token, ...)
    torch.testing.assert_close(fused[:, 1], fused[:, 0])
    torch.testing.assert_close(fused[:, 2], fused[:, 0])
    pairs = lambda t: t.unflatten(-1, (2, 2, head_dim // 4)).pow(2).sum(-2)  # |(a, b)|² of each rotated pair
    torch.testing.assert_close(pairs(fused[:2]), pairs(unrotated[:2]))
    assert not torch.allclose(fused[:2, :, 1:], unrotated[:2, :, 1:], atol=1e-3)  # patches turn, specials do not
    torch.testing.assert_close(fused[:, :, 0], unrotated[:, :, 0])


def test_kernel_keeps_bfloat16_within_its_rounding():
    heads, head_dim = 4, 16
    rope = rope_table(grid_positions(2, 2, num_special=1), head_dim)
    block = _block(heads, head_dim, qk_norm=True)
    qkv = block.attn.qkv(torch.randn(10, heads * head_dim)).detach()
    with torch.no_grad():
        q, k, v = qkv.bfloat16().unflatten(-1, (3, heads, head_dim)).unbind(-3)
        q, k = rope.apply(block.attn.q_norm(q.float())), rope.apply(block.attn.k_norm(k.float()))
        expected = torch.stack([q.bfloat16(), k.bfloat16(), v])
        fused = fused_qkv.normed_rotated_qkv(qkv.bfloat16(), block.attn, rope)
    assert fused.dtype == torch.bfloat16
    torch.testing.assert_close(fused.float(), expected.float(), rtol=2**-7, atol=2**-7)


def test_kernel_fits_layer_norms_or_none_and_power_of_two_heads():
    assert fused_qkv.kernel_fits(_block(2, 16, qk_norm=True).attn)
    assert fused_qkv.kernel_fits(_block(2, 16, qk_norm=False).attn)
    assert not fused_qkv.kernel_fits(_block(2, 12, qk_norm=True).attn)
    attention = _block(2, 16, qk_norm=True).attn
    attention.q_norm = nn.LayerNorm(16, elementwise_affine=False)
    assert not fused_qkv.kernel_fits(attention)
    attention = _block(2, 16, qk_norm=True).attn
    attention.k_norm = nn.Identity()  # one norm without the other: the kernel normalises both or neither
    assert not fused_qkv.kernel_fits(attention)


def test_not_fused_on_cpu_or_with_gradients():
    attention = _block(2, 16, qk_norm=True).attn
    assert not fused_qkv.fusable(attention, torch.device("cpu"))
    with torch.no_grad():
        assert not fused_qkv.fusable(attention, torch.device("cpu"))
