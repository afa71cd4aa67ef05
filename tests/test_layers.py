"""Shared transformer layers: RoPE against a float64 complex-rotation reference, the block's
chunked path against its unchunked one, the attend hook, and position-embedding resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.layers import Block, DinoVisionTransformer, grid_positions, interpolate_pos_embed, rope_table


def test_grid_positions_put_specials_at_zero_and_patches_row_major_from_one():
    pos = grid_positions(2, 3, num_special=2)
    assert pos.tolist() == [[0, 0], [0, 0], [1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]


def _rope_reference(x: np.ndarray, positions: np.ndarray, frequency: float) -> np.ndarray:
    """Per head: channels [0, D/2) rotate with the row, [D/2, D) with the column; inside each half
    channel i pairs with i + D/4 as one complex number turned by position · frequency^(-4i/D)."""
    dim = x.shape[-1]
    quarter = dim // 4
    out = np.empty_like(x)
    for axis in range(2):
        half = x[..., axis * 2 * quarter : (axis + 1) * 2 * quarter]
        z = half[..., :quarter] + 1j * half[..., quarter:]
        inv_freq = frequency ** (-np.arange(quarter) * 2.0 / (2 * quarter))
        z = z * np.exp(1j * positions[:, axis, None, None] * inv_freq)  # (P, heads, quarter)
        out[..., axis * 2 * quarter : axis * 2 * quarter + quarter] = z.real
        out[..., axis * 2 * quarter + quarter : (axis + 1) * 2 * quarter] = z.imag
    return out


def test_rope_matches_complex_rotation_reference():
    positions = grid_positions(3, 4, num_special=5)
    x = torch.randn(positions.shape[0], 2, 16, dtype=torch.float64)
    table = rope_table(positions, head_dim=16, frequency=100.0)
    expected = _rope_reference(x.numpy(), positions.numpy().astype(np.float64), 100.0)
    np.testing.assert_allclose(table.apply(x).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_rope_leaves_special_tokens_and_repeats_per_frame():
    positions = grid_positions(2, 2, num_special=3)
    table = rope_table(positions, head_dim=8)
    x = torch.randn(3 * positions.shape[0], 1, 8)  # three frames back to back, as global attention sees them
    out = table.apply(x).view(3, -1, 1, 8)
    frames = x.view(3, -1, 1, 8)
    torch.testing.assert_close(out[:, :3], frames[:, :3])
    torch.testing.assert_close(out[1], table.apply(frames[1]))


def test_rope_dot_products_depend_only_on_relative_position():
    positions = torch.tensor([[3, 5], [7, 2], [3 + 4, 5 - 1], [7 + 4, 2 - 1]])
    table = rope_table(positions, head_dim=32)
    q, k = torch.randn(1, 1, 32, dtype=torch.float64), torch.randn(1, 1, 32, dtype=torch.float64)
    rotated_q = table.apply(q.expand(4, 1, 32).contiguous())
    rotated_k = table.apply(k.expand(4, 1, 32).contiguous())
    # the table is float32 like the released model's, hence the tolerance
    torch.testing.assert_close((rotated_q[0] * rotated_k[1]).sum(), (rotated_q[2] * rotated_k[3]).sum(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose((rotated_q[0] * rotated_k[1]).sum(), (rotated_q[0] * rotated_k[3]).sum(), rtol=1e-3)


def test_rope_rejects_head_dim_not_divisible_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        rope_table(grid_positions(2, 2, 1), head_dim=6)


@pytest.mark.parametrize("batch", [1, 3])
def test_block_gives_the_same_result_in_chunks(batch):
    torch.manual_seed(0)
    block = Block(32, 4, init_values=0.5, qk_norm=True).eval()
    positions = grid_positions(2, 3, num_special=2)  # 8 tokens per frame
    rope = rope_table(positions, head_dim=8)
    x = torch.randn(batch, 5 * 8, 32)  # five frames in one global sequence per batch entry
    with torch.no_grad():
        whole = block(x, rope)
        chunked = block(x, rope, chunk_rows=13)  # rounded down to whole frames (8 rows)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


def test_block_routes_attention_through_attend():
    block = Block(16, 2, qk_norm=True).eval()
    seen = []

    def attend(q, k, v):
        seen.append(q.shape)
        return torch.zeros_like(v)

    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        out = block(x, attend=attend)
        y = x + block.attn.proj(torch.zeros(2, 6, 16))
        expected = y + block.mlp(block.norm2(y))
    assert seen == [(2, 2, 6, 8)]
    torch.testing.assert_close(out, expected)


def test_block_matches_textbook_attention_in_float64():
    torch.manual_seed(1)
    block = Block(12, 3, init_values=0.3, qk_norm=True).double().eval()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    with torch.no_grad():
        h = block.norm1(x)
        q, k, v = block.attn.qkv(h).view(2, 5, 3, 3, 4).permute(2, 0, 3, 1, 4)
        q, k = block.attn.q_norm(q), block.attn.k_norm(k)
        weights = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)  # head_dim 4 → scale 1/2
        y = x + block.ls1(block.attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 12)))
        expected = y + block.ls2(block.mlp(block.norm2(y)))
        torch.testing.assert_close(block(x), expected)


def test_interpolate_pos_embed_keeps_square_grid_and_orientation():
    side = 5
    rows = torch.arange(side, dtype=torch.float32).repeat_interleave(side)  # varies along rows only
    pos = torch.cat([torch.full((1,), 7.0), rows])[None, :, None].expand(1, 1 + side * side, 2).contiguous()
    assert interpolate_pos_embed(pos, side, side) is pos
    out = interpolate_pos_embed(pos, 3, 8)
    assert out.shape == (1, 1 + 24, 2)
    assert out[0, 0, 0] == 7.0
    grid = out[0, 1:, 0].view(3, 8)
    torch.testing.assert_close(grid, grid[:, :1].expand(3, 8))  # constant along each row
    assert grid[0, 0] < grid[1, 0] < grid[2, 0]


def test_dinov2_returns_normed_patch_tokens_and_optional_mask_token():
    vit = DinoVisionTransformer(img_size=56, patch_size=14, embed_dim=16, depth=1, num_heads=2, num_register_tokens=3).eval()
    with torch.no_grad():
        out = vit(torch.randn(2, 3, 42, 70))
    assert out.shape == (2, 3 * 5, 16)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 15), atol=1e-5, rtol=0)  # LayerNorm, unit gain at init
    assert "mask_token" in vit.state_dict()
    assert "mask_token" not in DinoVisionTransformer(56, 14, 16, 1, 2, mask_token=False).state_dict()


def test_the_alternating_loop_frees_each_input_and_keeps_only_the_asked_pairs():
    """The caller hands the tokens over and keeps no reference: by the second block the first
    input is gone (at 1000 frames a copy of the stream is 4 GB); only the pairs in `keep` are stored."""
    import weakref

    from bench.methods import DensePlan, Layout
    from bench.models.runtime import alternate_attention

    seen_alive = []

    class Probe(torch.nn.Module):
        def __init__(self, shift: float) -> None:
            super().__init__()
            self.shift = shift

        def forward(self, x, rope, attend=None, rows=None, chunk_rows=None):
            seen_alive.append(first() is not None)
            return x + self.shift

    layout = Layout(frames=2, tokens_per_frame=5, special_tokens=1, grid=(2, 2), reference_frame=None)
    tokens = torch.zeros(2, 5, 3)
    first = weakref.ref(tokens)
    handed = [tokens]
    del tokens
    kept = alternate_attention([Probe(1.0), Probe(10.0)], [Probe(2.0), Probe(20.0)], handed, 1, None, DensePlan(), layout, None, (1,))
    assert seen_alive == [True, False, False, False] and handed == []
    assert list(kept) == [1] and kept[1].shape == (1, 2, 5, 6)
    assert torch.equal(kept[1][..., :3], torch.full((1, 2, 5, 3), 13.0)) and torch.equal(kept[1][..., 3:], torch.full((1, 2, 5, 3), 33.0))
