"""The absT_quaR_FoV pose encoding against scipy's rotations and closed-form pinhole geometry."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from bench.models.pose_encoding import extri_intri_to_pose_encoding, matrix_to_quaternion, pose_encoding_to_extri_intri, quaternion_to_matrix


def _random_rotations(n: int, seed: int = 0) -> Rotation:
    return Rotation.random(n, random_state=seed)


def test_quaternion_to_matrix_matches_scipy_and_ignores_the_norm():
    rotations = _random_rotations(16)
    quat = torch.from_numpy(rotations.as_quat())  # scipy: xyzw, like VGGT
    scale = torch.linspace(0.3, 3.0, 16, dtype=torch.float64)[:, None]
    np.testing.assert_allclose(quaternion_to_matrix(quat * scale).numpy(), rotations.as_matrix(), atol=1e-12)


def test_matrix_to_quaternion_matches_scipy_with_nonnegative_w():
    rotations = _random_rotations(64, seed=1)
    expected = rotations.as_quat()
    expected *= np.where(expected[:, 3:] < 0, -1.0, 1.0)
    ours = matrix_to_quaternion(torch.from_numpy(rotations.as_matrix())).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_matrix_to_quaternion_handles_half_turns():
    half_turns = Rotation.from_rotvec(np.pi * np.eye(3)).as_matrix()  # w = 0: the other branches decide
    quat = matrix_to_quaternion(torch.from_numpy(half_turns))
    np.testing.assert_allclose(quaternion_to_matrix(quat).numpy(), half_turns, atol=1e-12)


def test_encoding_round_trip_and_pinhole_geometry():
    height, width = 294, 518
    rotations = _random_rotations(5, seed=2).as_matrix()
    t = np.random.default_rng(0).normal(size=(5, 3))
    extrinsics = torch.from_numpy(np.concatenate([rotations, t[..., None]], axis=-1))
    focal = torch.tensor([300.0, 450.0, 600.0, 800.0, 1200.0], dtype=torch.float64)
    intrinsics = torch.zeros(5, 3, 3, dtype=torch.float64)
    intrinsics[:, 0, 0], intrinsics[:, 1, 1] = focal, focal * 1.1
    intrinsics[:, 0, 2], intrinsics[:, 1, 2], intrinsics[:, 2, 2] = width / 2, height / 2, 1.0

    encoding = extri_intri_to_pose_encoding(extrinsics, intrinsics, (height, width))
    np.testing.assert_allclose(encoding[:, 7].numpy(), 2 * np.arctan(height / 2 / (focal.numpy() * 1.1)))
    np.testing.assert_allclose(encoding[:, 8].numpy(), 2 * np.arctan(width / 2 / focal.numpy()))
    back_extrinsics, back_intrinsics = pose_encoding_to_extri_intri(encoding, (height, width))
    np.testing.assert_allclose(back_extrinsics.numpy(), extrinsics.numpy(), atol=1e-12)
    np.testing.assert_allclose(back_intrinsics.numpy(), intrinsics.numpy(), rtol=1e-12)


def test_decoding_keeps_leading_dimensions():
    extrinsics, intrinsics = pose_encoding_to_extri_intri(torch.rand(2, 3, 9) + 0.5, (28, 42))
    assert extrinsics.shape == (2, 3, 3, 4) and intrinsics.shape == (2, 3, 3, 3)
