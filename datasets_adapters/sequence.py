"""The one type every adapter produces and every consumer reads: a sequence of posed frames.

Conventions (DESIGN.md): extrinsics are OpenCV world-to-camera [R|t] (3×4), intrinsics are pixel
K (3×3) for the images as stored here, depth is z-depth in the dataset's units with 0 = invalid,
and images are float32 in [0, 1] shaped (S, 3, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class Sequence:
    dataset: str
    scene: str
    images: np.ndarray  # (S, 3, H, W) float32 in [0, 1]
    extrinsics: np.ndarray  # (S, 3, 4) float64, world-to-camera, OpenCV axes
    intrinsics: np.ndarray  # (S, 3, 3) float64, pixels of `images`
    depth: np.ndarray | None = None  # (S, H, W) float32, 0 = invalid
    valid: np.ndarray | None = None  # (S, H, W) bool
    frame_ids: list[str] = field(default_factory=list)
    sampling: dict[str, Any] = field(default_factory=dict)  # how the frames were chosen (recorded per row)

    def __post_init__(self) -> None:
        s = self.images.shape[0]
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"{self.name}: images must be (S, 3, H, W), got {self.images.shape}")
        h, w = self.images.shape[2:]
        if self.extrinsics.shape != (s, 3, 4):
            raise ValueError(f"{self.name}: extrinsics must be ({s}, 3, 4), got {self.extrinsics.shape}")
        if self.intrinsics.shape != (s, 3, 3):
            raise ValueError(f"{self.name}: intrinsics must be ({s}, 3, 3), got {self.intrinsics.shape}")
        for key in ("depth", "valid"):
            arr = getattr(self, key)
            if arr is not None and arr.shape != (s, h, w):
                raise ValueError(f"{self.name}: {key} must be ({s}, {h}, {w}), got {arr.shape}")
        if self.depth is not None and self.valid is None:
            self.valid = self.depth > 0
        if not self.frame_ids:
            self.frame_ids = [str(i) for i in range(s)]
        if len(self.frame_ids) != s:
            raise ValueError(f"{self.name}: {len(self.frame_ids)} frame ids for {s} frames")

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.scene}"

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the stored images."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def select(self, indices: list[int] | np.ndarray) -> "Sequence":
        """The sub-sequence at `indices`, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            images=self.images[idx],
            extrinsics=self.extrinsics[idx],
            intrinsics=self.intrinsics[idx],
            depth=None if self.depth is None else self.depth[idx],
            valid=None if self.valid is None else self.valid[idx],
            frame_ids=[self.frame_ids[i] for i in idx],
        )
