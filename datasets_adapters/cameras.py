"""Camera conversions every adapter needs: native poses to OpenCV world-to-camera, and K under resizing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from datasets_adapters.base import DatasetError

_RIGID_TOLERANCE = 1e-3  # poses are stored as decimal text with ~7 significant digits


def is_finite_pose(c2w: np.ndarray) -> bool:
    """False for the -inf / NaN poses that ScanNet and 7-Scenes use to mark tracking failures."""
    return bool(np.isfinite(c2w).all())


def check_rigid(pose: np.ndarray, source: Path | str) -> None:
    """A finite 4×4 pose must be a rigid transform; anything else is a malformed file, reported with its `source`."""
    if not np.allclose(pose[3], [0.0, 0.0, 0.0, 1.0], atol=_RIGID_TOLERANCE):
        raise DatasetError(f"{source}: malformed pose, last row is {pose[3].tolist()} instead of [0, 0, 0, 1]")
    rot = pose[:3, :3]
    deviation = np.abs(rot.T @ rot - np.eye(3)).max()
    if deviation > _RIGID_TOLERANCE or np.linalg.det(rot) < 0:
        raise DatasetError(f"{source}: malformed pose, the 3x3 block is not a rotation (|RᵀR - I| = {deviation:.2g})")


def w2c_from_c2w(c2w: np.ndarray, source: Path | str) -> np.ndarray:
    """The 3×4 world-to-camera [R|t] of a finite rigid 4×4 camera-to-world matrix (OpenCV axes on both sides)."""
    check_rigid(c2w, source)
    rot, centre = c2w[:3, :3], c2w[:3, 3]
    return np.concatenate([rot.T, (-rot.T @ centre)[:, None]], axis=1)


def scale_intrinsics(k: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """K for an image resized from `from_hw` to `to_hw` (corners to corners, as PIL resizes).

    Pixel centres sit at integer coordinates, so a centre u maps to (u + 0.5)·s − 0.5.
    """
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    out = np.array(k, dtype=np.float64)
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[1, 1] *= sy
    out[0, 2] = (out[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (out[1, 2] + 0.5) * sy - 0.5
    return out


def rotation_from_quaternion(quaternion: np.ndarray, scalar_first: bool) -> np.ndarray:
    """The 3×3 rotation of a finite, non-zero Hamilton quaternion (normalised here). Formats differ
    in where the scalar goes: TUM writes (x, y, z, w), COLMAP (w, x, y, z)."""
    q = np.asarray(quaternion, dtype=np.float64)
    return Rotation.from_quat(np.roll(q, -1) if scalar_first else q).as_matrix()
