"""Closed-form checks of pi3's geometry: intrinsics recovered from local points, and the
projection of the camera head's 3×3 output onto the rotations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from bench.models.heads.pi3_camera_head import nearest_rotation
from bench.models.intrinsics import intrinsics_from_local_points

HEIGHT, WIDTH = 30, 40


def _point_map(fx: float, fy: float, cx: float, cy: float, frames: int = 2, seed: int = 0) -> torch.Tensor:
    """Camera-frame points of a pinhole camera K at random positive depths, pixel centres at integers."""
    depth = torch.rand(frames, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 5 + 0.5
    v, u = torch.meshgrid(torch.arange(HEIGHT, dtype=torch.float64), torch.arange(WIDTH, dtype=torch.float64), indexing="ij")
    return torch.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], dim=-1)


def test_a_centred_pinhole_camera_is_recovered_exactly() -> None:
    cx, cy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    points = _point_map(50.0, 65.0, cx, cy)
    k = intrinsics_from_local_points(points, torch.ones(2, HEIGHT, WIDTH)).numpy()
    expected = np.array([[50.0, 0, cx], [0, 65.0, cy], [0, 0, 1]])
    np.testing.assert_allclose(k, np.stack([expected, expected]), rtol=1e-12, atol=1e-12)


def test_focal_is_the_weighted_least_squares_solution_with_the_centre_fixed() -> None:
    """An off-centre camera and uneven weights: fx minimises Σ w (u − cx − fx·x/z)² with cx the image centre."""
    points = _point_map(50.0, 65.0, 23.0, 11.0, frames=1)
    weights = torch.rand(1, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    k = intrinsics_from_local_points(points, weights).numpy()[0]
    sqrt_w = np.sqrt(weights[0].numpy()).ravel()
    u = np.broadcast_to(np.arange(WIDTH) - (WIDTH - 1) / 2, (HEIGHT, WIDTH)).ravel()
    a = (points[0, ..., 0] / points[0, ..., 2]).numpy().ravel()
    fx = np.linalg.lstsq((sqrt_w * a)[:, None], sqrt_w * u, rcond=None)[0][0]
    v = np.broadcast_to((np.arange(HEIGHT) - (HEIGHT - 1) / 2)[:, None], (HEIGHT, WIDTH)).ravel()
    b = (points[0, ..., 1] / points[0, ..., 2]).numpy().ravel()
    fy = np.linalg.lstsq((sqrt_w * b)[:, None], sqrt_w * v, rcond=None)[0][0]
    np.testing.assert_allclose([k[0, 0], k[1, 1]], [fx, fy], rtol=1e-10)


def test_unusable_pixels_carry_no_weight() -> None:
    cx, cy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    points = _point_map(50.0, 65.0, cx, cy, frames=1).float()
    weights = torch.ones(1, HEIGHT, WIDTH)
    points[0, :5, :, :2] *= 7.0  # wrong rays, but weight 0
    weights[0, :5] = 0.0
    points[0, 5, :, 2] = -1.0  # behind the camera
    points[0, 6, :3] = float("nan")
    points[0, 7, :3, 2] = float("inf")
    k = intrinsics_from_local_points(points, weights).numpy()[0]
    np.testing.assert_allclose([k[0, 0], k[1, 1]], [50.0, 65.0], rtol=1e-5)


def test_a_frame_without_usable_pixels_gets_nan_focals() -> None:
    points = _point_map(50.0, 65.0, 20.0, 15.0)
    weights = torch.ones(2, HEIGHT, WIDTH)
    weights[1] = 0.0
    k = intrinsics_from_local_points(points, weights).numpy()
    assert np.isfinite(k[0]).all() and np.isnan(k[1, 0, 0]) and np.isnan(k[1, 1, 1])


def test_nearest_rotation_keeps_rotations_and_is_closest_to_others() -> None:
    rotations = torch.from_numpy(Rotation.random(20, random_state=0).as_matrix())
    torch.testing.assert_close(nearest_rotation(rotations * torch.linspace(0.5, 3.0, 20)[:, None, None]), rotations)

    matrices = torch.randn(50, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    matrices[:25, 0] *= -1  # both signs of the determinant
    result = nearest_rotation(matrices)
    eye = torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    torch.testing.assert_close(result @ result.transpose(1, 2), eye)
    torch.testing.assert_close(torch.det(result), torch.ones(50, dtype=torch.float64))
    normalized = torch.nn.functional.normalize(matrices, dim=-1)
    ours = ((result - normalized) ** 2).sum((1, 2))
    candidates = torch.from_numpy(Rotation.random(2000, random_state=1).as_matrix())
    others = ((candidates[None] - normalized[:, None]) ** 2).sum((2, 3))
    assert (ours[:, None] <= others + 1e-12).all()


@pytest.mark.parametrize("seed", range(3))
def test_nearest_rotation_beats_every_small_perturbation(seed: int) -> None:
    """A local optimality check: turning the result by any small rotation moves it away from the input."""
    matrix = torch.randn(1, 3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    normalized = torch.nn.functional.normalize(matrix, dim=-1)
    result = nearest_rotation(matrix)
    turns = torch.from_numpy(Rotation.from_rotvec(np.random.default_rng(seed).normal(size=(500, 3)) * 1e-3).as_matrix())
    base = ((result - normalized) ** 2).sum()
    assert (((turns @ result - normalized) ** 2).sum((1, 2)) >= base).all()
