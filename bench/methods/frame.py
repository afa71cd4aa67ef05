"""`frame`: a global layer run as attention within each frame (AVGGT step 1, global-to-frame).

The layer keeps its own weights; only the set of keys changes. Tokens of one frame are contiguous,
so the frames fold into the batch axis: (B, heads, S·P, d) → (B·S, heads, P, d).
"""

from __future__ import annotations

import torch

from bench.methods.kernels import AttentionKernel
from bench.methods.layout import Layout


def frame(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout, *, kernel: AttentionKernel) -> torch.Tensor:
    """Each query attends to the keys of its own frame only."""
    per_frame = (layout.frames, layout.tokens_per_frame)

    def fold(x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(2, per_frame).transpose(1, 2).flatten(0, 1)

    out = kernel.attend(fold(q), fold(k), fold(v))
    return out.unflatten(0, (q.shape[0], layout.frames)).transpose(1, 2).flatten(2, 3)
