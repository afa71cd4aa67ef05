"""Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x))).

The per-token work (norms, projections, MLP) can run in chunks of rows so that a sequence of
a million tokens never materialises its MLP hidden state or its float32 RoPE temporaries at
once; only q, k, v (in the attention dtype) and the block's input and output are full size.
Chunks hold whole frames when RoPE is on, so one frame's table rotates every chunk.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.models.layers.attention import Attend, Attention, sdpa
from bench.models.layers.layer_scale import LayerScale
from bench.models.layers.mlp import Mlp
from bench.models.layers.rope import RopeTable


class Block(nn.Module):
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
        heads, head_dim = self.attn.num_heads, self.attn.head_dim

        qkv = None
        for span in spans:
            q, k, v = self.attn.project(self.norm1(rows[span]), rope)
            if qkv is None:
                qkv = v.new_empty((3, batch * tokens, heads, head_dim))
            qkv[0, span], qkv[1, span], qkv[2, span] = q, k, v
        q, k, v = (t.view(batch, tokens, heads, head_dim).transpose(1, 2) for t in qkv)
        attended = attend(q, k, v).transpose(1, 2).reshape(batch * tokens, dim)
        del qkv, q, k, v

        out = None
        for span in spans:
            y = rows[span] + self.ls1(self.attn.proj(attended[span]))
            if out is None:
                out = y.new_empty((batch * tokens, dim))
            out[span] = y
        del attended
        for span in spans:
            out[span] += self.ls2(self.mlp(self.norm2(out[span])))
        return out.view(batch, tokens, dim)


def _row_spans(num_rows: int, chunk_rows: int | None, multiple: int) -> list[slice]:
    """Consecutive slices covering `num_rows`, each a multiple of `multiple` rows long (but the last)."""
    if chunk_rows is None or chunk_rows >= num_rows:
        return [slice(0, num_rows)]
    step = max(multiple, chunk_rows // multiple * multiple)
    return [slice(start, min(start + step, num_rows)) for start in range(0, num_rows, step)]
