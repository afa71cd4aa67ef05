"""VGGT's 9-d camera encoding `absT_quaR_FoV` ↔ OpenCV world-to-camera extrinsics and pixel intrinsics.

encoding = [t (3), quaternion xyzw (4), fov_h, fov_w]; extrinsic = [R(q) | t]; the principal point
is the image centre (W/2, H/2) and the focal lengths follow from the fields of view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def quaternion_to_matrix(quat: torch.Tensor) -> torch.Tensor:
    """(..., 4) xyzw → (..., 3, 3). The quaternion need not be unit: R uses 2/|q|²."""
    x, y, z, w = quat.unbind(-1)
    two_s = 2.0 / (quat * quat).sum(-1).clamp(min=torch.finfo(quat.dtype).eps)
    matrix = torch.stack(
        [
            1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
            two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
            two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return matrix.unflatten(-1, (3, 3))


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation → (..., 4) unit xyzw quaternion with w ≥ 0.

    Of the four algebraically equal solutions (each divides by one of 4w², 4x², 4y², 4z²),
    take the one with the largest divisor, the best conditioned.
    """
    m = matrix.flatten(-2)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)
    squares = torch.stack(
        [1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22, 1 + m00 + m11 + m22], dim=-1
    )  # 4x², 4y², 4z², 4w²
    roots = squares.clamp(min=0).sqrt()
    candidates = torch.stack(
        [
            torch.stack([squares[..., 0], m01 + m10, m02 + m20, m21 - m12], dim=-1),
            torch.stack([m01 + m10, squares[..., 1], m12 + m21, m02 - m20], dim=-1),
            torch.stack([m02 + m20, m12 + m21, squares[..., 2], m10 - m01], dim=-1),
            torch.stack([m21 - m12, m02 - m20, m10 - m01, squares[..., 3]], dim=-1),
        ],
        dim=-2,
    ) / (2 * roots.clamp(min=0.1))[..., None]
    best = roots.argmax(dim=-1, keepdim=True)[..., None].expand(*roots.shape[:-1], 1, 4)
    quat = candidates.gather(-2, best).squeeze(-2)
    quat = torch.where(quat[..., 3:] < 0, -quat, quat)
    return F.normalize(quat, dim=-1)


def pose_encoding_to_extri_intri(encoding: torch.Tensor, image_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 9) → extrinsics (..., 3, 4) world-to-camera and intrinsics (..., 3, 3) for an H×W image."""
    height, width = image_hw
    t, quat, fov_h, fov_w = encoding[..., :3], encoding[..., 3:7], encoding[..., 7], encoding[..., 8]
    extrinsics = torch.cat([quaternion_to_matrix(quat), t[..., None]], dim=-1)
    intrinsics = encoding.new_zeros(*encoding.shape[:-1], 3, 3)
    intrinsics[..., 0, 0] = (width / 2.0) / torch.tan(fov_w / 2.0)
    intrinsics[..., 1, 1] = (height / 2.0) / torch.tan(fov_h / 2.0)
    intrinsics[..., 0, 2] = width / 2
    intrinsics[..., 1, 2] = height / 2
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics


def extri_intri_to_pose_encoding(extrinsics: torch.Tensor, intrinsics: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Extrinsics (..., 3, 4) world-to-camera and intrinsics (..., 3, 3) → (..., 9) for an H×W image."""
    height, width = image_hw
    fov_h = 2 * torch.atan((height / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2) / intrinsics[..., 0, 0])
    quat = matrix_to_quaternion(extrinsics[..., :3, :3])
    return torch.cat([extrinsics[..., :3, 3], quat, fov_h[..., None], fov_w[..., None]], dim=-1)
