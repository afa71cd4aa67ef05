"""The fused pre-attention kernel on the GPU: a compiled block (which runs it) against the eager
block (the model's own code) at VGGT-1B's head layout, under bf16 autocast, with chunked rows."""

from __future__ import annotations

import torch

from bench.models.layers import Block, grid_positions, rope_table
from bench.models.layers import fused_qkv
from bench.models.layers.block import attention_inputs, fused_attention_inputs

if not torch.cuda.is_available():
    raise RuntimeError("gpu_tests need a CUDA device; run them through the device tool")


def _block() -> Block:
    torch.manual_seed(0)
    block = Block(1024, 16, qk_norm=True, init_values=0.01).cuda().eval()
    with torch.no_grad():
        for norm in (block.attn.q_norm, block.attn.k_norm):
            norm.weight.normal_(1.0, 0.3)
            norm.bias.normal_(0.0, 0.3)
    return block


def test_fused_stage_equals_the_eager_stage_within_bfloat16_rounding():
    block = _block()
    rope = rope_table(grid_positions(28, 37, 5, device="cuda"), 64)
    rows = torch.randn(3 * rope.period, 1024, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert fused_qkv.fusable(block.attn, rows.device)
        eager, fused = attention_inputs(block, rows, rope), fused_attention_inputs(block, rows, rope)
    assert fused.dtype == eager.dtype == torch.bfloat16
    torch.testing.assert_close(fused.float(), eager.float(), rtol=2**-7, atol=2**-6)
    assert (fused != eager).float().mean() < 0.01  # the same float32 arithmetic: nearly every value bit for bit


def test_compiled_block_with_chunks_equals_eager():
    block = _block()
    rope = rope_table(grid_positions(4, 6, 5, device="cuda"), 64)
    x = torch.randn(2, 5 * rope.period, 1024, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        eager = block(x, rope)
        block.stages_compiled = True
        compiled_whole, compiled_chunked = block(x, rope), block(x, rope, chunk_rows=3 * rope.period)
    torch.testing.assert_close(compiled_whole, eager, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(compiled_chunked, compiled_whole, rtol=1e-3, atol=1e-4)  # cuBLAS picks its kernel by row count
