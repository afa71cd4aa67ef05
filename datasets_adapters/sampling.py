"""Frame sampling shared by every adapter, seeded and recorded in each result row."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SAMPLING_KINDS = ("first-n", "stride", "uniform", "random")


@dataclass(frozen=True)
class Sampling:
    """How `num_frames` frames are taken from a sequence of `n` frames.

    - ``first-n``: frames 0 .. num_frames-1
    - ``stride``: frames start, start+stride, ... (num_frames of them, or all that fit)
    - ``uniform``: num_frames indices spread evenly over the whole sequence
    - ``random``: num_frames distinct indices drawn with `seed`, returned in temporal order
    """

    kind: str = "uniform"
    stride: int = 1
    start: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SAMPLING_KINDS:
            raise ValueError(f"sampling kind {self.kind!r} is not one of {', '.join(SAMPLING_KINDS)}")
        if self.stride < 1:
            raise ValueError(f"sampling stride must be >= 1, got {self.stride}")
        if self.start < 0:
            raise ValueError(f"sampling start must be >= 0, got {self.start}")

    def as_row(self) -> dict[str, Any]:
        return {f"sampling_{k}": v for k, v in asdict(self).items()}

    def select(self, n: int, num_frames: int | None) -> np.ndarray:
        """Indices into a sequence of `n` frames; `num_frames=None` means every frame the rule gives."""
        if n <= 0:
            raise ValueError("cannot sample frames from an empty sequence")
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"frame count must be >= 1, got {num_frames}")
        if self.kind == "stride":
            idx = np.arange(self.start, n, self.stride)
            if num_frames is not None:
                if len(idx) < num_frames:
                    raise ValueError(
                        f"stride {self.stride} from frame {self.start} gives {len(idx)} of {n} frames, fewer than the {num_frames} asked for"
                    )
                idx = idx[:num_frames]
            return idx
        k = n if num_frames is None else num_frames
        if k > n:
            raise ValueError(f"asked for {k} frames but the sequence has only {n}")
        if self.kind == "first-n":
            return np.arange(k)
        if self.kind == "uniform":
            return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64)) if k > 1 else np.array([0])
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(n, size=k, replace=False))
