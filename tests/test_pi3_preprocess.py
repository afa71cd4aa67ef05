"""The `pi3` preprocessing mode: the released loader's target size, and ground truth resized alike."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.models import create_model
from bench.preprocess import PI3_PIXEL_LIMIT, PREPROCESS, pi3_size, preprocess
from datasets_adapters.sequence import Sequence


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        # worked by hand from the loader's rule: scale to the limit, round each side to a multiple of 14,
        # then shorten the side that is too long for the aspect ratio until the area fits
        (480, 640, (434, 574)),  # 437.3×583.1 → 31×42 patches = 255,192 px > limit → 31×41
        (294, 518, (378, 672)),  # smaller images grow: 380.4×670.3 → 27×48 fits
        (968, 1296, (434, 574)),  # ScanNet colour has the same 4:3 aspect
        (500, 500, (504, 504)),  # 505×505 → 36×36 = 254,016 px
        (1000, 10, (5054, 42)),  # extreme aspect: 5049.8×50.5 → 361×4 patches > limit → 361×3
    ],
)
def test_target_size_follows_the_released_loader(height: int, width: int, expected: tuple[int, int]) -> None:
    assert pi3_size(height, width) == expected


@pytest.mark.parametrize("seed", range(5))
def test_target_sides_are_multiples_of_14_within_the_pixel_limit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for height, aspect in zip(rng.integers(50, 3000, size=200), rng.uniform(1 / 3, 3, size=200)):
        width = max(1, round(height * aspect))
        h, w = pi3_size(int(height), width)
        assert h % 14 == 0 and w % 14 == 0 and h * w <= PI3_PIXEL_LIMIT
        assert h * w > 0.85 * PI3_PIXEL_LIMIT  # close to the limit, not far under it
        assert abs(np.log((w / h) / (width / height))) < 0.1  # the aspect ratio is kept


def test_bad_size_is_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        pi3_size(0, 640)


def _sequence(height: int = 48, width: int = 64) -> Sequence:
    """Two 8-bit photos (a constant one and a ramp), a depth map with a distinct value per pixel."""
    v, u = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    ramp = np.stack([u * 255 // width, v * 255 // height, 255 - u * 255 // width]) / 255.0
    images = np.stack([np.full((3, height, width), 64 / 255), ramp]).astype(np.float32)
    depth = np.stack([(1.0 + u + 100.0 * v).astype(np.float32)] * 2)
    valid = depth > 0
    valid[:, :10] = False
    k = np.array([[40.0, 0.0, 31.5], [0.0, 42.0, 23.5], [0.0, 0.0, 1.0]])
    return Sequence("synthetic", "ramp", images, np.tile(np.eye(4)[:3], (2, 1, 1)), np.stack([k, k]), depth, valid)


def test_pi3_mode_resizes_the_whole_image_to_the_loader_size() -> None:
    seq = _sequence()
    out = preprocess(seq, "pi3")
    assert "pi3" in PREPROCESS
    h, w = out.image_size
    assert (h, w) == pi3_size(48, 64) == (434, 574)
    assert out.images.dtype == np.float32 and out.images.min() >= 0 and out.images.max() <= 1
    np.testing.assert_array_equal(out.extrinsics, seq.extrinsics)
    # no crop, no pad: the corners of the source land on the corners of the output
    sx, sy = w / 64, h / 48
    expected_k = np.array([[40.0 * sx, 0.0, 32.0 * sx - 0.5], [0.0, 42.0 * sy, 24.0 * sy - 0.5], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(out.intrinsics[0], expected_k, rtol=1e-12)
    rows, cols = np.floor((np.arange(h) + 0.5) / sy).astype(int), np.floor((np.arange(w) + 0.5) / sx).astype(int)
    np.testing.assert_array_equal(out.depth[1], 1.0 + cols[None, :] + 100.0 * rows[:, None])
    np.testing.assert_array_equal(out.valid[1], np.broadcast_to(rows[:, None] >= 10, (h, w)))


def test_pi3_mode_resizes_photos_with_lanczos_as_the_loader_does() -> None:
    seq = _sequence()
    out = preprocess(seq, "pi3")
    h, w = out.image_size
    photo = Image.fromarray(np.round(seq.images[1] * 255).astype(np.uint8).transpose(1, 2, 0))
    expected = np.asarray(photo.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32).transpose(2, 0, 1) / 255
    np.testing.assert_array_equal(out.images[1], expected)
    bicubic = np.asarray(photo.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32).transpose(2, 0, 1) / 255
    assert not np.array_equal(out.images[1], bicubic)


def test_pi3_is_the_default_mode_of_the_pi3_models() -> None:
    assert create_model("pi3-tiny").preprocess_mode == "pi3"
