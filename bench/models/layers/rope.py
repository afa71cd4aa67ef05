"""2D rotary position embedding (RoPE) over a patch grid, as used by VGGT and pi3.

Each head's channels are split into a row half and a column half; each half is rotated in the
rotate-half form by angles ``position · inv_freq`` with ``inv_freq = 1 / frequency^(2i / half)``.
Patch (r, c) sits at position (r + 1, c + 1) and special tokens at (0, 0), so special tokens are
not rotated. Global attention reuses the per-frame positions (no frame index), which is why a
table for one frame's P tokens serves every layout whose token count is a multiple of P.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def grid_positions(grid_h: int, grid_w: int, num_special: int, device: torch.device | None = None) -> torch.Tensor:
    """(num_special + h·w, 2) integer (row, col) positions: specials at 0, patch (r, c) at (r+1, c+1)."""
    rows = torch.arange(1, grid_h + 1, device=device).repeat_interleave(grid_w)
    cols = torch.arange(1, grid_w + 1, device=device).repeat(grid_h)
    patches = torch.stack([rows, cols], dim=-1)
    return torch.cat([patches.new_zeros(num_special, 2), patches])


@dataclass(frozen=True)
class RopeTable:
    """cos/sin of one frame's P token positions, (P, head_dim) each, applied to rows of tokens.

    `apply` takes (rows, heads, head_dim) with rows a multiple of P laid out frame after frame,
    so the same table serves frame attention, global attention and chunks of whole frames.
    """

    cos: torch.Tensor
    sin: torch.Tensor

    @property
    def period(self) -> int:
        return self.cos.shape[0]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        rows, heads, dim = x.shape
        x = x.view(rows // self.period, self.period, heads, dim)
        out = x * self.cos[:, None] + _rotate_halves(x) * self.sin[:, None]
        return out.view(rows, heads, dim)


def _rotate_halves(x: torch.Tensor) -> torch.Tensor:
    """Rotate-half inside the row half and inside the column half: (a, b) → (-b, a) in each."""
    a, b = x.unflatten(-1, (2, 2, -1)).unbind(-2)
    return torch.stack([-b, a], dim=-2).flatten(-3)


def rope_table(positions: torch.Tensor, head_dim: int, frequency: float = 100.0) -> RopeTable:
    """The table for integer (row, col) `positions` (P, 2) and heads of `head_dim` channels."""
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {head_dim}")
    half = head_dim // 2
    inv_freq = 1.0 / frequency ** (torch.arange(0, half, 2, device=positions.device).float() / half)
    angles = positions.float()[..., None] * inv_freq  # (P, 2, half/2)
    angles = torch.cat([angles, angles], dim=-1).flatten(-2)  # (P, head_dim): row half, then column half
    return RopeTable(cos=angles.cos(), sin=angles.sin())
