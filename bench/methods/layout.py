"""The types every part of a method shares: how tokens are laid out, what a plan is, a layer rule.

This module imports nothing else of the package, so any operator module can import `Layout` at
run time without an import cycle (plan.py imports the operators).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class Layout:
    frames: int  # S
    tokens_per_frame: int  # P = special + h·w
    special_tokens: int  # per frame, first in each frame (camera, registers)
    grid: tuple[int, int]  # patch grid (h, w)
    reference_frame: int | None  # the model's reference frame (VGGT's frame 0), None for pi3

    def __post_init__(self) -> None:
        h, w = self.grid
        if self.special_tokens + h * w != self.tokens_per_frame:
            raise ValueError(f"layout: {self.special_tokens} special + {h}×{w} patches != {self.tokens_per_frame} tokens per frame")

    @property
    def num_tokens(self) -> int:
        return self.frames * self.tokens_per_frame


class AttentionPlan(Protocol):
    is_dense: bool  # every global layer exact dense attention: the baseline speedups are measured against
    capturable: bool  # its forward may run as a captured CUDA graph: it does nothing on the host per call

    def describe(self, frames: int | None = None) -> dict:
        """The full resolved plan, JSON-serialisable, recorded in every result row."""

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout) -> torch.Tensor: ...

    def reset_observations(self) -> None:
        """Start a new cell: what `describe` reports as observed covers the calls after this."""


@dataclass(frozen=True)
class LayerRule:
    """One operator with its parameters over a set of global layers."""

    operator: str
    layers: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)
