"""Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x))).

The block runs in three stages: the per-token work before attention (norm1, qkv, qk-norm, RoPE),
the attention itself (swappable: an attention plan's operator), and the per-token work after it
(proj, layer scale, residual, norm2, MLP, residual). The two per-token stages are where a forward
spends its memory-bound time (float32 norms and residuals, casts, RoPE, GELU); with
`stages_compiled` each runs as a few fused kernels (`bench.stages`), and on CUDA the pre-attention
work after the qkv projection is one hand-written kernel (`bench.models.layers.fused_qkv`).

The per-token stages can run in chunks of rows so that a sequence of a million tokens never
materialises its MLP hidden state or its float32 RoPE temporaries at once; only q, k, v (in the
attention dtype) and the block's input and output are full size. Chunks hold whole frames when
RoPE is on, so one frame's table rotates every chunk.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from bench.models.layers import fused_qkv
from bench.models.layers.attention import Attend, Attention, sdpa
from bench.models.layers.layer_scale import LayerScale
from bench.models.layers.mlp import Mlp
from bench.models.layers.rope import RopeTable
from bench.stages import compiled


class Block(nn.Module):
    stages_compiled = False  # run the per-token stages compiled (`compile_stages`)

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        init_values: float | None = None,
        norm_eps: float = 1e-5,
        qk_norm: bool = False,
        qk_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, qk_norm=qk_norm, qk_norm_eps=qk_norm_eps)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        rope: RopeTable | None = None,
        attend: Attend = sdpa,
        chunk_rows: int | None = None,
    ) -> torch.Tensor:
        """x (B, N, dim) → (B, N, dim); attention over the N tokens of each batch entry.

        `attend` gets q, k, v as (B, heads, N, head_dim); `chunk_rows` bounds how many of the
        B·N tokens the per-token layers process at once (None: all).
        """
        batch, tokens, dim = x.shape
        rows = x.reshape(batch * tokens, dim)
        spans = _row_spans(batch * tokens, chunk_rows, rope.period if rope is not None else 1)
        before, after = (attention_inputs, attention_output)
        if self.stages_compiled:
            before = fused_attention_inputs if fused_qkv.fusable(self.attn, x.device) else compiled(attention_inputs)
            after = compiled(attention_output)

        qkv = _over_spans(spans, lambda span: before(self, rows[span], rope), row_dim=1)
        q, k, v = (t.view(batch, tokens, self.attn.num_heads, self.attn.head_dim).transpose(1, 2) for t in qkv)
        attended = attend(q, k, v).transpose(1, 2).reshape(batch * tokens, dim)
        del qkv, q, k, v
        out = _over_spans(spans, lambda span: after(self, rows[span], attended[span]), row_dim=0)
        return out.view(batch, tokens, dim)


def attention_inputs(block: Block, rows: torch.Tensor, rope: RopeTable | None) -> torch.Tensor:
    """(rows, dim) tokens → q, k, v stacked as (3, rows, heads, head_dim) in the attention dtype."""
    return torch.stack(block.attn.project(block.norm1(rows), rope))


def fused_attention_inputs(block: Block, rows: torch.Tensor, rope: RopeTable | None) -> torch.Tensor:
    """`attention_inputs` as a compiled forward runs it on CUDA: norm1 and the projection compiled,
    the rest in one Triton kernel."""
    return fused_qkv.normed_rotated_qkv(compiled(projection)(block, rows), block.attn, rope)


def projection(block: Block, rows: torch.Tensor) -> torch.Tensor:
    """(rows, dim) tokens → their qkv projection (rows, 3·dim)."""
    return block.attn.qkv(block.norm1(rows))


def attention_output(block: Block, rows: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """The block's output rows from its input rows and their attention result (rows, dim)."""
    rows = rows + block.ls1(block.attn.proj(attended))
    return rows + block.ls2(block.mlp(block.norm2(rows)))


def _row_spans(num_rows: int, chunk_rows: int | None, multiple: int) -> list[slice]:
    """Consecutive slices covering `num_rows`, each a multiple of `multiple` rows long (but the last)."""
    if chunk_rows is None or chunk_rows >= num_rows:
        return [slice(0, num_rows)]
    step = max(multiple, chunk_rows // multiple * multiple)
    return [slice(start, min(start + step, num_rows)) for start in range(0, num_rows, step)]


def _over_spans(spans: list[slice], stage: Callable[[slice], torch.Tensor], row_dim: int) -> torch.Tensor:
    """`stage` of every span of rows, laid side by side along `row_dim` (one span: no copy)."""
    if len(spans) == 1:
        return stage(spans[0])
    whole = None
    for span in spans:
        part = stage(span)
        if whole is None:
            shape = list(part.shape)
            shape[row_dim] = spans[-1].stop
            whole = part.new_empty(shape)
        whole[(slice(None),) * row_dim + (span,)] = part
    return whole
