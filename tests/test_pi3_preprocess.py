"""The `pi3` preprocessing mode: the released loader's target size, and ground truth resized alike."""

from __future__ import annotations

import numpy as np
import pytest

from bench.preprocess import PI3_PIXEL_LIMIT, PREPROCESS, pi3_size, preprocess, resize_sequence
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
    frames = 2
    v, u = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    images = np.stack([np.full((3, height, width), 0.25, dtype=np.float32), np.stack([u / width, v / height, u * 0 + 1.0]).astype(np.float32)])
    depth = np.stack([(1.0 + u + 100.0 * v).astype(np.float32)] * frames)  # every pixel its own value
    valid = depth > 0
    valid[:, :10] = False
    k = np.array([[40.0, 0.5, 31.5], [0.0, 42.0, 23.5], [0.0, 0.0, 1.0]])
    extrinsics = np.tile(np.eye(4)[:3], (frames, 1, 1))
    return Sequence("synthetic", "plane", images, extrinsics, np.stack([k, k]), depth, valid)


def test_pi3_mode_is_registered_and_resizes_to_the_loader_size() -> None:
    seq = _sequence()
    out = preprocess(seq, "pi3")
    assert "pi3" in PREPROCESS
    assert out.image_size == pi3_size(48, 64) == (434, 574)
    assert out.images.dtype == np.float32 and out.images.min() >= 0 and out.images.max() <= 1
    np.testing.assert_array_equal(out.extrinsics, seq.extrinsics)


def test_depth_and_valid_take_the_nearest_source_pixel() -> None:
    seq = _sequence()
    out = resize_sequence(seq, (20, 30))
    rows, cols = np.meshgrid(np.arange(20), np.arange(30), indexing="ij")
    src_v, src_u = np.floor((rows + 0.5) * 48 / 20).astype(int), np.floor((cols + 0.5) * 64 / 30).astype(int)
    np.testing.assert_array_equal(out.depth[0], 1.0 + src_u + 100.0 * src_v)
    np.testing.assert_array_equal(out.valid[0], src_v >= 10)


def test_intrinsics_project_a_point_to_where_its_source_pixel_moved() -> None:
    """Scaling by s maps pixel centre u to (u + 0.5)·s − 0.5 (corners to corners)."""
    seq = _sequence()
    out = resize_sequence(seq, (20, 30))
    point = np.array([0.3, -0.2, 2.0])
    before, after = seq.intrinsics[0] @ point, out.intrinsics[0] @ point
    before, after = before[:2] / before[2], after[:2] / after[2]
    np.testing.assert_allclose(after, (before + 0.5) * np.array([30 / 64, 20 / 48]) - 0.5, rtol=1e-12)


def test_images_resize_smoothly() -> None:
    seq = _sequence()
    out = resize_sequence(seq, (24, 32))
    np.testing.assert_allclose(out.images[0], 0.25, atol=1e-6)  # a constant image stays constant
    cols = (np.arange(32) + 0.5) * 2 - 0.5  # centres of the output columns in source pixels
    np.testing.assert_allclose(out.images[1, 0, 12, 4:-4], cols[4:-4] / 64, atol=2e-3)  # a ramp stays a ramp inside the borders
