"""Camera and point geometry shared by the metrics, in the harness conventions.

Extrinsics are OpenCV world-to-camera ``[R|t]`` (…, 3, 4); a camera-to-world pose is the inverse.
Everything here is vectorised over leading axes so that metrics never loop over frames or pairs.
"""

from __future__ import annotations

import numpy as np


def invert_rigid(pose: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms ``[R|t]`` (…, 3, 4) as (…, 3, 4): ``[Rᵀ | −Rᵀt]``.

    The closed form is exact for rotations and avoids a general matrix inverse; it turns
    world-to-camera extrinsics into camera-to-world poses and back.
    """
    rotation, translation = pose[..., :3, :3], pose[..., :3, 3]
    rotation_t = np.swapaxes(rotation, -1, -2)
    return np.concatenate([rotation_t, -(rotation_t @ translation[..., None])], axis=-1)


def to_homogeneous(pose: np.ndarray) -> np.ndarray:
    """(…, 3, 4) → (…, 4, 4) with the bottom row ``[0, 0, 0, 1]``."""
    bottom = np.zeros(pose.shape[:-2] + (1, 4), dtype=pose.dtype)
    bottom[..., 0, 3] = 1
    return np.concatenate([pose, bottom], axis=-2)


def camera_centres(extrinsics: np.ndarray) -> np.ndarray:
    """World positions (…, 3) of the cameras of world-to-camera extrinsics (…, 3, 4): ``−Rᵀt``."""
    return invert_rigid(extrinsics)[..., :3, 3]


def nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The rotation closest (Frobenius) to each 3×3 matrix, by SVD with the determinant fixed to +1.

    Predicted and stored rotations carry float32 rounding; strict SO(3) checks (evo) reject them.
    Matrices with a non-finite entry give all-NaN results instead of failing the whole batch.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    finite = np.isfinite(matrix).all(axis=(-2, -1))
    result = np.full_like(matrix, np.nan)
    u, _, vt = np.linalg.svd(matrix[finite])
    u[..., :, 2] *= np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)[..., None]
    result[finite] = u @ vt
    return result


def rotation_angle_deg(rotation: np.ndarray) -> np.ndarray:
    """Rotation angle in degrees of rotation matrices (…, 3, 3).

    Uses ``atan2(sin θ, cos θ)`` from the antisymmetric part and the trace, which stays accurate
    near 0° and 180° where ``arccos((tr − 1)/2)`` loses half its digits.
    """
    cos = (np.trace(rotation, axis1=-2, axis2=-1) - 1.0) / 2.0
    axis = np.stack(
        [
            rotation[..., 2, 1] - rotation[..., 1, 2],
            rotation[..., 0, 2] - rotation[..., 2, 0],
            rotation[..., 1, 0] - rotation[..., 0, 1],
        ],
        axis=-1,
    )
    sin = np.linalg.norm(axis, axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))


def vector_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between vectors (…, 3); NaN where either vector has zero length."""
    norm = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    dot = np.sum(a * b, axis=-1)
    with np.errstate(invalid="ignore"):
        angle = np.degrees(np.arctan2(cross, dot))
    return np.where(norm > 0, angle, np.nan)


def transform_points(points: np.ndarray, linear: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """points (N, 3) ↦ points · Aᵀ + b.

    Computed as (A · pointsᵀ + b)ᵀ: with the long axis last, BLAS runs one efficient GEMM and the
    offset is added along contiguous rows, whereas ``points @ A.T`` (N×3 times 3×3) is many times
    slower on a multi-threaded OpenBLAS. The result is a transposed (Fortran-ordered) view.
    """
    moved = linear @ points.T
    return (moved if offset is None else moved + np.asarray(offset)[:, None]).T


def unproject_depth(
    depth: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray, mask: np.ndarray | None = None, camera_dtype: type | None = None
) -> np.ndarray:
    """World points (N, 3) of the masked pixels of z-depth maps (S, H, W), frame-major like ``array[mask]``;
    without a mask, the point map (S, H, W, 3) of every pixel (zero depth gives the camera centre).

    Cameras are pixel K (S, 3, 3) and world-to-camera [R|t] (S, 3, 4). A pixel at column u, row v
    (integer coordinates, as in the VGGT/π³ unprojection) has camera coordinates
    ((u − cx)·d/fx, (v − cy)·d/fy, d) and world coordinates Rᵀ·X_cam − Rᵀt, computed in float64.
    `camera_dtype=np.float32` rounds the camera coordinates to float32 first, as π³'s published
    evaluation does (about 1e-7 relative). Memory stays at one frame plus the output.
    """
    frames, height, width = depth.shape
    rows, cols = np.divmod(np.arange(height * width), width)
    cam_to_world = invert_rigid(np.asarray(extrinsics, dtype=np.float64))
    intrinsics = np.asarray(intrinsics, dtype=np.float64)
    points = [np.empty((0, 3))]
    for frame in range(frames):
        selected = slice(None) if mask is None else mask[frame].ravel()
        z = np.asarray(depth[frame], dtype=np.float64).ravel()[selected]
        k = intrinsics[frame]
        camera = np.stack([(cols[selected] - k[0, 2]) * z / k[0, 0], (rows[selected] - k[1, 2]) * z / k[1, 1], z])  # (3, N)
        if camera_dtype is not None:
            camera = camera.astype(camera_dtype).astype(np.float64)
        points.append((cam_to_world[frame, :, :3] @ camera + cam_to_world[frame, :, 3:]).T)
    points = np.concatenate(points, axis=0)
    return points if mask is not None else points.reshape(frames, height, width, 3)
