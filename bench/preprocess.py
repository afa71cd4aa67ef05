"""Model-input preprocessing with ground truth transformed alike, in one place for every adapter.

A mode maps a `Sequence` to a new `Sequence` whose images are what the model sees and whose
intrinsics, depth and valid mask describe exactly those pixels.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
from PIL import Image

from bench.registry import Registry
from datasets_adapters.sequence import Sequence

PREPROCESS: Registry[Callable[[Sequence], Sequence]] = Registry("preprocess mode")
PREPROCESS.register("none", lambda seq: seq, help="images and ground truth as the adapter gives them")

PI3_PIXEL_LIMIT = 255_000
PATCH_SIZE = 14


def preprocess(seq: Sequence, mode: str | None) -> Sequence:
    return seq if mode is None else PREPROCESS.get(mode)(seq)


def pi3_size(height: int, width: int, pixel_limit: int = PI3_PIXEL_LIMIT, multiple: int = PATCH_SIZE) -> tuple[int, int]:
    """(H, W) that pi3's released loader resizes an image to: the aspect ratio kept as far as
    sides that are multiples of `multiple` allow, the area at most `pixel_limit` (small images
    grow). Sides scaled to the limit are rounded to the nearest multiple (Python's round), then
    the side that is too long for the aspect ratio loses one multiple until the area fits.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"pi3 preprocessing: image size must be positive, got {height}×{width}")
    scale = (pixel_limit / (width * height)) ** 0.5
    target_w, target_h = width * scale, height * scale
    cols, rows = round(target_w / multiple), round(target_h / multiple)
    while cols * rows * multiple * multiple > pixel_limit:
        if cols / rows > target_w / target_h:
            cols -= 1
        else:
            rows -= 1
    return max(1, rows) * multiple, max(1, cols) * multiple


def resize_sequence(seq: Sequence, size: tuple[int, int]) -> Sequence:
    """`seq` with images resized to `size` (H, W) by Lanczos (clipped to [0, 1]), depth and valid mask
    by nearest pixel centre, and intrinsics scaled per axis (pixel centres at integer coordinates)."""
    height, width = seq.image_size
    new_h, new_w = size
    images = np.stack([[_resize_lanczos(channel, size) for channel in frame] for frame in seq.images])
    rows = ((np.arange(new_h) + 0.5) * height / new_h).astype(np.int64)
    cols = ((np.arange(new_w) + 0.5) * width / new_w).astype(np.int64)
    return replace(
        seq,
        images=np.clip(images, 0.0, 1.0).astype(np.float32),
        intrinsics=_scale_intrinsics(seq.intrinsics, new_h / height, new_w / width),
        depth=None if seq.depth is None else seq.depth[:, rows][:, :, cols],
        valid=None if seq.valid is None else seq.valid[:, rows][:, :, cols],
    )


def _resize_lanczos(channel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One float channel (H, W) → `size` (H, W), through PIL's Lanczos filter as pi3's loader uses."""
    resized = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32)).resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return np.asarray(resized)


def _scale_intrinsics(intrinsics: np.ndarray, scale_y: float, scale_x: float) -> np.ndarray:
    """K (S, 3, 3) for images resized corner to corner: a pixel centre u maps to (u + 0.5)·s − 0.5."""
    out = np.array(intrinsics, dtype=np.float64)
    out[:, 0, :2] *= scale_x
    out[:, 1, 1] *= scale_y
    out[:, 0, 2] = (intrinsics[:, 0, 2] + 0.5) * scale_x - 0.5
    out[:, 1, 2] = (intrinsics[:, 1, 2] + 0.5) * scale_y - 0.5
    return out


def _pi3_mode(seq: Sequence) -> Sequence:
    return resize_sequence(seq, pi3_size(*seq.image_size))


PREPROCESS.register("pi3", _pi3_mode, help="pi3's loader: resize (Lanczos, no crop) to at most 255,000 pixels, sides multiples of 14")
