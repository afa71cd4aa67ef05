"""The contract between models and methods: a model calls `plan.attend` once per global layer.

q, k, v arrive as (B, heads, N, head_dim) with N = frames × tokens_per_frame, already normed and
rotated (RoPE); the plan returns the attention output of the same shape. `layout` tells the
operator how the N tokens are organised, so the model never knows which method runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Layout:
    frames: int  # S
    tokens_per_frame: int  # P = special + h·w
    special_tokens: int  # per frame, first in each frame (camera, registers)
    grid: tuple[int, int]  # patch grid (h, w)
    reference_frame: int | None  # 0 for VGGT, None for pi3

    def __post_init__(self) -> None:
        h, w = self.grid
        if self.special_tokens + h * w != self.tokens_per_frame:
            raise ValueError(f"layout: {self.special_tokens} special + {h}×{w} patches != {self.tokens_per_frame} tokens per frame")

    @property
    def num_tokens(self) -> int:
        return self.frames * self.tokens_per_frame


class AttentionPlan(Protocol):
    is_dense: bool  # every global layer exact dense attention: the baseline speedups are measured against

    def describe(self, frames: int | None = None) -> dict:
        """The full resolved plan, JSON-serialisable, recorded in every result row."""

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout) -> torch.Tensor: ...


class DensePlan:
    """Exact softmax attention over all tokens in every layer: the published models."""

    is_dense = True

    def describe(self, frames: int | None = None) -> dict:
        return {"operator": "dense"}

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)
