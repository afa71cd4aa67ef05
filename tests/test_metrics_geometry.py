import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from metrics.geometry import (
    camera_centres,
    invert_rigid,
    nearest_rotation,
    rotation_angle_deg,
    to_homogeneous,
    transform_points,
    unproject_depth,
    vector_angle_deg,
)
from tests.metrics_scene import box_room


def random_extrinsics(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rotations = Rotation.random(count, random_state=seed).as_matrix()
    return np.concatenate([rotations, rng.normal(size=(count, 3, 1))], axis=2)


def test_invert_rigid_matches_the_matrix_inverse():
    extrinsics = random_extrinsics(5)
    inverse = to_homogeneous(invert_rigid(extrinsics))
    np.testing.assert_allclose(inverse, np.linalg.inv(to_homogeneous(extrinsics)), atol=1e-12)
    np.testing.assert_allclose(invert_rigid(invert_rigid(extrinsics)), extrinsics, atol=1e-12)


def test_camera_centre_maps_to_the_camera_origin():
    extrinsics = random_extrinsics(4)
    centres = camera_centres(extrinsics)
    in_camera = np.einsum("sij,sj->si", extrinsics[:, :, :3], centres) + extrinsics[:, :, 3]
    np.testing.assert_allclose(in_camera, 0, atol=1e-12)


def test_nearest_rotation_repairs_noise_and_reflections():
    rotations = Rotation.random(6, random_state=3).as_matrix()
    noisy = rotations + 1e-4 * np.random.default_rng(0).normal(size=rotations.shape)
    repaired = nearest_rotation(noisy.astype(np.float32))
    np.testing.assert_allclose(repaired @ np.swapaxes(repaired, 1, 2), np.broadcast_to(np.eye(3), (6, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(repaired), 1, atol=1e-12)
    np.testing.assert_allclose(repaired, rotations, atol=1e-3)
    reflected = nearest_rotation(rotations[0] * np.array([1.0, 1.0, -1.0]))
    assert np.linalg.det(reflected) == pytest.approx(1.0)


def test_nearest_rotation_gives_nan_for_non_finite_matrices_only():
    matrices = np.stack([np.eye(3), np.full((3, 3), np.nan)])
    repaired = nearest_rotation(matrices)
    np.testing.assert_allclose(repaired[0], np.eye(3))
    assert np.isnan(repaired[1]).all()


@pytest.mark.parametrize("degrees", [0.0, 1e-6, 0.5, 37.0, 90.0, 179.0, 180.0])
def test_rotation_angle_of_a_known_axis_angle(degrees):
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    rotation = Rotation.from_rotvec(np.radians(degrees) * axis).as_matrix()
    assert rotation_angle_deg(rotation) == pytest.approx(degrees, abs=1e-9)


def test_vector_angle_and_zero_vectors():
    assert vector_angle_deg(np.array([1.0, 0, 0]), np.array([1.0, 1.0, 0])) == pytest.approx(45.0)
    assert vector_angle_deg(np.array([1.0, 0, 0]), np.array([-2.0, 0, 0])) == pytest.approx(180.0)
    assert np.isnan(vector_angle_deg(np.zeros(3), np.array([1.0, 0, 0])))


def test_transform_points_is_points_times_transpose_plus_offset():
    rng = np.random.default_rng(0)
    points, linear, offset = rng.normal(size=(50, 3)), rng.normal(size=(3, 3)), rng.normal(size=3)
    np.testing.assert_allclose(transform_points(points, linear, offset), points @ linear.T + offset, atol=1e-12)
    np.testing.assert_allclose(transform_points(points, linear), points @ linear.T, atol=1e-12)


def test_unprojected_points_project_back_to_their_pixels_and_depths():
    gt = box_room(frames=3, height=10, width=14)
    mask = np.zeros(gt["depth"].shape, dtype=bool)
    mask[:, 2:8:3, 1:13:4] = True
    mask[1, 0, 0] = False
    points = unproject_depth(gt["depth"], gt["intrinsics"], gt["extrinsics"], mask)
    frames, rows, cols = np.nonzero(mask)  # the same frame-major order as array[mask]
    assert points.shape == (mask.sum(), 3)
    camera = np.einsum("nij,nj->ni", gt["extrinsics"][frames, :, :3], points) + gt["extrinsics"][frames, :, 3]
    np.testing.assert_allclose(camera[:, 2], gt["depth"][frames, rows, cols], rtol=1e-12)
    projected = np.einsum("nij,nj->ni", gt["intrinsics"][frames], camera / camera[:, 2:])
    np.testing.assert_allclose(projected[:, 0], cols, atol=1e-9)
    np.testing.assert_allclose(projected[:, 1], rows, atol=1e-9)


def test_box_room_depth_puts_every_pixel_on_a_wall():
    gt = box_room(frames=4, height=12, width=16)
    points = unproject_depth(gt["depth"], gt["intrinsics"], gt["extrinsics"], gt["valid"])
    assert gt["valid"].all()
    np.testing.assert_allclose(np.max(np.abs(points) / np.array([2.0, 1.5, 1.2]), axis=1), 1.0, atol=1e-12)
