"""`dense`: exact softmax attention over all S·P tokens, the published models' global attention."""

from __future__ import annotations

import torch

from bench.methods.kernels import AttentionKernel
from bench.methods.layout import Layout


def dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout, *, kernel: AttentionKernel) -> torch.Tensor:
    """Every query attends to every key of every frame."""
    return kernel.attend(q, k, v)
