"""Multi-head self-attention split into its three steps, so the middle one can be swapped.

`project` (qkv, optional qk-norm, optional RoPE) and `proj` act on each token alone; the
attention itself is an `Attend` callable on (B, heads, N, head_dim) tensors. Frame attention
uses `sdpa`; a model's global layers pass a callable that forwards to an attention plan.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.layers.rope import RopeTable

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Exact softmax attention through PyTorch's fused kernels."""
    return F.scaled_dot_product_attention(q, k, v)


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
        qk_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def project(self, rows: torch.Tensor, rope: RopeTable | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows, dim) normed tokens → q, k, v as (rows, heads, head_dim), normed and rotated.

        q and k come back in v's dtype, the dtype attention computes in (under autocast SDPA
        would cast them to it anyway), so a caller can hold all three at the same width.
        """
        q, k, v = self.qkv(rows).unflatten(-1, (3, self.num_heads, self.head_dim)).unbind(-3)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope.apply(q), rope.apply(k)
        return q.to(v.dtype), k.to(v.dtype), v
