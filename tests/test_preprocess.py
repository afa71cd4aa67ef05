"""Preprocessing modes crop and pad: sizes and pixels as the official VGGT loader makes them, and
ground truth (intrinsics, depth, validity) that still describes the same 3D points."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.preprocess import PREPROCESS, FrameTransform, ResizeMode, preprocess, resize_image
from bench.registry import UnknownNameError
from datasets_adapters.sequence import Sequence


def _sequence(images: np.ndarray, intrinsics: np.ndarray | None = None, depth: np.ndarray | None = None) -> Sequence:
    s, _, h, w = images.shape
    if intrinsics is None:
        intrinsics = np.array([[0.8 * w, 0, w / 2 - 3], [0, 0.8 * w, h / 2 + 2], [0, 0, 1.0]])
    return Sequence("test", "scene", images.astype(np.float32), np.tile(np.eye(4)[:3], (s, 1, 1)), np.tile(intrinsics, (s, 1, 1)), depth=depth)


def _random_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "mode, size, expected",
    [
        ("crop", (480, 640), (392, 518)),
        ("crop", (968, 1296), (392, 518)),
        ("crop", (1000, 500), (518, 518)),  # 1036 tall after resizing, centre-cropped
        ("pad", (480, 640), (518, 518)),
        ("pad", (1000, 500), (518, 518)),
    ],
)
def test_output_sizes(mode, size, expected):
    out = PREPROCESS.get(mode)(_sequence(np.zeros((1, 3, *size))))
    assert out.images.shape == (1, 3, *expected)


def _official(photo: np.ndarray, mode: str) -> np.ndarray:
    """The official loader's steps, spelled out: PIL bicubic on 8-bit RGB, then crop or white padding."""
    h, w = photo.shape[:2]
    if mode == "crop" or w >= h:
        new_w, new_h = 518, round(h * (518 / w) / 14) * 14
    else:
        new_w, new_h = round(w * (518 / h) / 14) * 14, 518
    img = np.asarray(Image.fromarray(photo).resize((new_w, new_h), Image.Resampling.BICUBIC), dtype=np.float32).transpose(2, 0, 1) / 255.0
    if mode == "crop" and new_h > 518:
        start = (new_h - 518) // 2
        return img[:, start : start + 518]
    if mode == "pad":
        top, left = (518 - new_h) // 2, (518 - new_w) // 2
        return np.pad(img, ((0, 0), (top, 518 - new_h - top), (left, 518 - new_w - left)), constant_values=1.0)
    return img


@pytest.mark.parametrize("mode", ["crop", "pad"])
@pytest.mark.parametrize("size", [(480, 640), (1000, 500), (300, 517)])
def test_pixels_are_those_of_the_official_loader(mode, size):
    photo = _random_photo(*size)
    ours = PREPROCESS.get(mode)(_sequence(photo.transpose(2, 0, 1)[None] / 255.0)).images[0]
    np.testing.assert_array_equal(ours, _official(photo, mode))


def test_images_518_wide_pass_crop_unchanged():
    images = np.random.default_rng(1).random((2, 3, 392, 518)).astype(np.float32)
    seq = _sequence(images, depth=np.ones((2, 392, 518), np.float32))
    out = preprocess(seq, "crop")
    np.testing.assert_array_equal(out.images, images)
    np.testing.assert_array_equal(out.intrinsics, seq.intrinsics)
    np.testing.assert_array_equal(out.depth, seq.depth)


def _unproject(K: np.ndarray, u: np.ndarray, v: np.ndarray, depth: np.ndarray) -> np.ndarray:
    return np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], axis=-1)


@pytest.mark.parametrize("mode, size", [("crop", (480, 640)), ("crop", (1000, 500)), ("pad", (1000, 500)), ("pad", (300, 640))])
def test_a_pixel_shows_the_same_3d_point_after_preprocessing(mode, size):
    """A textured plane at depth 2: the colour is a linear ramp of the 3D point's x, which bicubic
    resampling reproduces exactly, so every output pixel's colour, depth and intrinsics must agree."""
    h, w = size
    K = np.array([[0.9 * w, 0, w / 2 + 5], [0, 0.85 * w, h / 2 - 4], [0, 0, 1.0]])
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    x_world = _unproject(K, u, v, np.full((h, w), 2.0))[..., 0]
    colour = 0.5 + 0.2 * x_world / np.abs(x_world).max()  # in [0.3, 0.7], not 8-bit: resized in float
    seq = _sequence(np.repeat(colour[None, None], 3, axis=1), K, depth=np.full((1, h, w), 2.0, np.float32))
    out = preprocess(seq, mode)

    oh, ow = out.image_size
    uo, vo = np.meshgrid(np.arange(ow, dtype=np.float64), np.arange(oh, dtype=np.float64))
    points = _unproject(out.intrinsics[0], uo, vo, out.depth[0].astype(np.float64))
    valid = out.valid[0]
    interior = valid & (np.abs(points[..., 0]) < 0.9 * np.abs(x_world).max())  # away from borders
    expected_colour = 0.5 + 0.2 * points[..., 0] / np.abs(x_world).max()
    np.testing.assert_allclose(out.images[0, 0][interior], expected_colour[interior], atol=2e-5)
    assert interior.sum() > 0.5 * valid.sum()
    if mode == "pad":
        assert not valid.all() and (out.images[0][:, ~valid] == 1.0).all() and (out.depth[0][~valid] == 0).all()


def test_depth_is_resized_by_nearest_neighbour_without_blending_edges():
    h, w = 240, 320
    depth = np.where(np.arange(w)[None, :] < 101, 1.0, 5.0) * np.ones((h, 1))
    depth[:10] = 0.0  # an invalid band
    seq = _sequence(np.zeros((1, 3, h, w)), depth=depth[None].astype(np.float32))
    out = preprocess(seq, "pad")
    assert set(np.unique(out.depth)) == {0.0, 1.0, 5.0}
    np.testing.assert_array_equal(out.valid, out.depth > 0)
    row = out.depth[0, out.image_size[0] // 2]
    first_far = np.argmax(row == 5.0)
    assert abs((first_far + 0.5) * w / 518 - 101) <= 1  # the edge stays where it was


def test_mixed_image_sizes_are_padded_alike_with_white():
    images = [np.zeros((3, 480, 640), np.float32), np.zeros((3, 640, 480), np.float32)]
    out = PREPROCESS.get("crop").images(images)
    assert out.shape == (2, 3, 518, 518)  # 392 tall and 518 tall (cropped from 690): both padded to 518
    assert (out[0, :, :63] == 1.0).all() and (out[0, :, 63 : 63 + 392] == 0.0).all() and (out[0, :, 455:] == 1.0).all()
    assert (out[1] == 0.0).all()


def test_resize_float_images_stay_in_range():
    image = np.random.default_rng(2).random((3, 50, 70)).astype(np.float32) * 0.999
    out = resize_image(image, (30, 41))
    assert out.shape == (3, 30, 41) and out.min() >= 0.0 and out.max() <= 1.0


def test_unknown_mode_and_none():
    seq = _sequence(np.zeros((1, 3, 28, 28)))
    assert preprocess(seq, None) is seq and PREPROCESS.get("none")(seq) is seq
    with pytest.raises(UnknownNameError, match="unknown preprocess mode 'square'; known: none, crop, pad"):
        preprocess(seq, "square")


def test_extremely_elongated_images_are_refused():
    with pytest.raises(ValueError, match="extremely elongated"):
        preprocess(_sequence(np.zeros((1, 3, 4, 2000))), "crop")


def test_a_new_mode_is_a_size_rule_and_a_filter():
    photo = _random_photo(100, 150, seed=3)
    halve = ResizeMode(lambda h, w: FrameTransform((h // 2, w // 2), (h // 2, w // 2)), Image.Resampling.LANCZOS)
    out = halve(_sequence(photo.transpose(2, 0, 1)[None] / 255.0))
    expected = np.asarray(Image.fromarray(photo).resize((75, 50), Image.Resampling.LANCZOS), dtype=np.float32).transpose(2, 0, 1) / 255.0
    np.testing.assert_array_equal(out.images[0], expected)
    np.testing.assert_allclose(out.intrinsics[0, :2, :2], _sequence(np.zeros((1, 3, 100, 150))).intrinsics[0, :2, :2] / 2)


def test_mv_recon_mode_scales_k_by_the_larger_factor_as_pi3_does():
    k = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])
    seq = _sequence(np.zeros((1, 3, 480, 640)), intrinsics=k, depth=np.ones((1, 480, 640), dtype=np.float32))
    out = preprocess(seq, "mv-recon")
    assert out.images.shape == (1, 3, 392, 518) and out.depth.shape == (1, 392, 518)
    s = max(518 / 640, 392 / 480)  # 0.8167: both axes, so K is ~1 % off the resized width
    expected = np.array([[525.0 * s, 0.0, (320.0 + 0.5) * s - 0.5], [0.0, 525.0 * s, (240.0 + 0.5) * s - 0.5], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(out.intrinsics[0], expected)
