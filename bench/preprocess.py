"""Model-input preprocessing with ground truth transformed alike, in one place for every adapter.

A mode maps a `Sequence` to a new `Sequence` whose images are what the model sees and whose
intrinsics, depth and valid mask describe exactly those pixels.

The resizing modes are each one small function from an image size to a `FrameTransform` (resize,
then crop or pad); `ResizeMode` applies it to images (a PIL filter, as the official loaders do:
bicubic for VGGT, Lanczos for pi3), intrinsics (the same pixel map), and depth and validity
(nearest neighbour, so depth is never blended across an edge; padding is invalid). Pixel centres
sit at integer coordinates: a resize by s maps x to (x + 0.5)·s − 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from PIL import Image

from bench.registry import Registry
from datasets_adapters.sequence import Sequence

PREPROCESS: Registry[Callable[[Sequence], Sequence]] = Registry("preprocess mode")
PREPROCESS.register("none", lambda seq: seq, help="images and ground truth as the adapter gives them")

PAD_VALUE = 1.0  # the official loaders pad with white


def preprocess(seq: Sequence, mode: str | None) -> Sequence:
    return seq if mode is None else PREPROCESS.get(mode)(seq)


@dataclass(frozen=True)
class FrameTransform:
    """Resize an image to `resized` (h, w), then put it on an `out_size` canvas with its top-left
    corner at `offset` (top, left): a negative offset crops, a positive one pads."""

    resized: tuple[int, int]
    out_size: tuple[int, int]
    offset: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if min(self.resized) < 1 or min(self.out_size) < 1:
            raise ValueError(f"preprocessing would resize the image to {self.resized} on a {self.out_size} canvas; is it extremely elongated?")

    def pixel_map(self, src_size: tuple[int, int], one_scale: bool = False) -> np.ndarray:
        """3×3 affine taking source pixel coordinates (x, y, 1) to output ones. `one_scale` scales
        both axes by the larger factor, as π³'s point-map evaluation rescales K (then K no longer
        describes the resized pixels exactly where the two factors differ)."""
        (src_h, src_w), (h, w), (top, left) = src_size, self.resized, self.offset
        sx, sy = w / src_w, h / src_h
        if one_scale:
            sx = sy = max(sx, sy)
        return np.array([[sx, 0.0, 0.5 * sx - 0.5 + left], [0.0, sy, 0.5 * sy - 0.5 + top], [0.0, 0.0, 1.0]])

    def place(self, resized: np.ndarray, fill: float | bool) -> np.ndarray:
        """Crop/pad a (..., h, w) array onto the output canvas."""
        (out_h, out_w), (top, left) = self.out_size, self.offset
        canvas = np.full((*resized.shape[:-2], out_h, out_w), fill, dtype=resized.dtype)
        h, w = resized.shape[-2:]
        ys, yd = max(0, -top), max(0, top)
        xs, xd = max(0, -left), max(0, left)
        rows, cols = min(h - ys, out_h - yd), min(w - xs, out_w - xd)
        canvas[..., yd : yd + rows, xd : xd + cols] = resized[..., ys : ys + rows, xs : xs + cols]
        return canvas


@dataclass(frozen=True)
class ResizeMode:
    """A preprocessing mode given by `plan(height, width) -> FrameTransform` and a PIL resampling
    filter; `one_scale_intrinsics` rescales K by the larger factor on both axes (see `pixel_map`)."""

    plan: Callable[[int, int], FrameTransform]
    resample: Image.Resampling = Image.Resampling.BICUBIC
    one_scale_intrinsics: bool = False

    def __call__(self, seq: Sequence) -> Sequence:
        transform = self.plan(*seq.image_size)

        def per_pixel(maps: np.ndarray | None, fill: float | bool) -> np.ndarray | None:
            return None if maps is None else transform.place(_resize_nearest(maps, transform.resized), fill)

        return replace(
            seq,
            images=np.stack([transform.place(resize_image(img, transform.resized, self.resample), PAD_VALUE) for img in seq.images]),
            intrinsics=transform.pixel_map(seq.image_size, self.one_scale_intrinsics) @ seq.intrinsics,
            depth=per_pixel(seq.depth, 0.0),
            valid=per_pixel(seq.valid, False),
        )

    def images(self, images: list[np.ndarray]) -> np.ndarray:
        """Images (3, H, W) of any sizes → one (S, 3, H, W) array; mixed results are padded alike
        to the largest (as the official loader does, centred, with white)."""
        out = []
        for img in images:
            transform = self.plan(*img.shape[1:])
            out.append(transform.place(resize_image(img, transform.resized, self.resample), PAD_VALUE))
        height, width = max(a.shape[1] for a in out), max(a.shape[2] for a in out)
        centre = [FrameTransform(a.shape[1:], (height, width), ((height - a.shape[1]) // 2, (width - a.shape[2]) // 2)) for a in out]
        return np.stack([t.place(a, PAD_VALUE) for t, a in zip(centre, out)])


def resize_image(image: np.ndarray, size: tuple[int, int], resample: Image.Resampling = Image.Resampling.BICUBIC) -> np.ndarray:
    """(3, H, W) float in [0, 1] → (3, h, w) by a PIL filter.

    Images that hold 8-bit values (every decoded photo) are resized as 8-bit RGB, which is
    exactly what the official loaders do; others channel by channel in float.
    """
    if image.shape[1:] == tuple(size):
        return image
    height, width = size
    levels = np.round(image * 255.0)
    if np.abs(image * 255.0 - levels).max() < 1e-3:
        rgb = Image.fromarray(levels.astype(np.uint8).transpose(1, 2, 0), mode="RGB")
        return np.asarray(rgb.resize((width, height), resample), dtype=np.float32).transpose(2, 0, 1) / 255.0
    channels = [np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize((width, height), resample)) for c in image]
    return np.clip(np.stack(channels), 0.0, 1.0)


def _resize_nearest(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(S, H, W) → (S, h, w), each output pixel taking the source pixel under its centre."""
    (src_h, src_w), (h, w) = maps.shape[-2:], size
    rows = np.minimum(((np.arange(h) + 0.5) * (src_h / h)).astype(np.int64), src_h - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (src_w / w)).astype(np.int64), src_w - 1)
    return maps[..., rows[:, None], cols[None, :]]


VGGT_SIZE = 518  # VGGT's training width and the side of its "pad" square
PATCH = 14


def _vggt_crop(height: int, width: int) -> FrameTransform:
    """Width → 518, height → nearest multiple of 14 keeping the aspect, centre crop to 518 if taller."""
    new_height = round(height * (VGGT_SIZE / width) / PATCH) * PATCH
    top = -((new_height - VGGT_SIZE) // 2) if new_height > VGGT_SIZE else 0
    return FrameTransform((new_height, VGGT_SIZE), (min(new_height, VGGT_SIZE), VGGT_SIZE), (top, 0))


def _vggt_pad(height: int, width: int) -> FrameTransform:
    """Long side → 518, short side → nearest multiple of 14 keeping the aspect, centred on a white 518×518."""
    if width >= height:
        new_height, new_width = round(height * (VGGT_SIZE / width) / PATCH) * PATCH, VGGT_SIZE
    else:
        new_height, new_width = VGGT_SIZE, round(width * (VGGT_SIZE / height) / PATCH) * PATCH
    return FrameTransform((new_height, new_width), (VGGT_SIZE, VGGT_SIZE), ((VGGT_SIZE - new_height) // 2, (VGGT_SIZE - new_width) // 2))


def _width_518(height: int, width: int) -> FrameTransform:
    """Width → 518, height → nearest multiple of 14 keeping the aspect, no crop."""
    new_height = round(height * (VGGT_SIZE / width) / PATCH) * PATCH
    return FrameTransform((new_height, VGGT_SIZE), (new_height, VGGT_SIZE))


PREPROCESS.register("crop", ResizeMode(_vggt_crop), help="VGGT's default: width 518, height to a multiple of 14, centre crop to 518")
PREPROCESS.register("pad", ResizeMode(_vggt_pad), help="VGGT's pad mode: long side 518, padded with white to 518×518")


PI3_PIXEL_LIMIT = 255_000  # pi3's loader: at most this many pixels per image


def pi3_size(height: int, width: int, pixel_limit: int = PI3_PIXEL_LIMIT) -> tuple[int, int]:
    """(h, w) that pi3's released loader resizes an H×W image to: the aspect ratio kept as far as
    sides that are multiples of 14 allow, the area at most `pixel_limit` (small images grow).
    Sides scaled to the limit are rounded to the nearest multiple (Python's round), then the side
    that is too long for the aspect ratio loses one multiple at a time until the area fits.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"pi3 preprocessing: image size must be positive, got {height}×{width}")
    scale = (pixel_limit / (width * height)) ** 0.5
    target_w, target_h = width * scale, height * scale
    cols, rows = round(target_w / PATCH), round(target_h / PATCH)
    while cols * rows * PATCH * PATCH > pixel_limit:
        if cols / rows > target_w / target_h:
            cols -= 1
        else:
            rows -= 1
    return max(1, rows) * PATCH, max(1, cols) * PATCH


def _pi3_resize(height: int, width: int) -> FrameTransform:
    """The whole image resized to `pi3_size` (no crop, no pad; the aspect ratio may change slightly)."""
    size = pi3_size(height, width)
    return FrameTransform(size, size)


PREPROCESS.register(
    "pi3",
    ResizeMode(_pi3_resize, Image.Resampling.LANCZOS),
    help="pi3's loader: Lanczos resize (no crop) to at most 255,000 pixels, sides multiples of 14",
)
PREPROCESS.register(
    "mv-recon",
    ResizeMode(_width_518, Image.Resampling.LANCZOS, one_scale_intrinsics=True),
    help="pi3's point-map evaluation: width 518, height a multiple of 14 (640x480 → 518x392), K scaled by the larger factor",
)
