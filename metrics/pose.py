"""Relative pose accuracy over all frame pairs: RRA, RTA and AUC (the CO3D / RealEstate10K protocols).

Relative poses are invariant to the world frame and scale, so no alignment is needed: a prediction
that differs from the ground truth by a similarity transform of the world scores perfectly.

Two ways of measuring a pair's errors, chosen by the `angles` option:

- ``quaternion`` (the published procedure of VGGT and π³): the relative rotations become unit
  quaternions (as given, no re-orthonormalisation) and e_R = arccos(1 − 2·max(1 − (q·q')², 1e-15));
  translations are normalised with a +1e-15 in the denominator and e_t = arccos(|û·û'|) with the
  same floor, a non-finite result becoming 1e6 rad. Relative poses come from a closed-form inverse
  and a batched matrix product in torch, in float64 or, as π³'s loaders hold poses, float32: the
  +1e-15 decides near-zero baselines, so the arithmetic is kept as published.
- ``matrix`` (this project's own, not a published protocol): rotations projected onto SO(3) by SVD,
  angles by atan2 (accurate near 0° and 180°), and undefined errors (non-finite poses, zero-length
  baselines) left NaN, so they count as failures and are counted in ``pose_invalid_pairs``.

Pair order: ``ij`` is T_i·T_j⁻¹ (VGGT's evaluation), ``ji`` is T_j·T_i⁻¹ (π³'s). RRA agrees between
the two; RTA and AUC do not, because the two orders measure different baselines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from metrics.geometry import nearest_rotation, rotation_angle_deg, vector_angle_deg
from metrics.inputs import MetricInputError, MetricRow, MetricUnavailable, check_choice, compute_or_note, num_frames, prediction
from metrics.registry import diagnostic, higher, option, raw, register_metric

DEFAULT_THRESHOLDS = (5, 15, 30)
PAIR_ORDERS = ("ij", "ji")
ANGLES = ("matrix", "quaternion")
PRECISIONS = {"float64": torch.float64, "float32": torch.float32}
FAILED_ANGLE_RAD = 1e6  # what the published procedure puts in place of a NaN / inf translation error
ANGLE_FLOOR = 1e-15  # the published floor under 1 − cos²: no angle is exactly 0


def pair_indices(frames: int, pair_order: str = "ij") -> tuple[np.ndarray, np.ndarray]:
    """(a, b) per pair (i, j), i < j in lexicographic order, such that the relative pose is T_a·T_b⁻¹."""
    first, second = np.triu_indices(frames, k=1)
    return (first, second) if pair_order == "ij" else (second, first)


def _relative_torch(extrinsics: torch.Tensor, a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """T_a·T_b⁻¹ for world-to-camera (S, 3, 4) tensors: homogeneous, closed-form inverse, one bmm."""
    frames = len(extrinsics)
    poses = torch.zeros((frames, 4, 4), dtype=extrinsics.dtype)
    poses[:, :3] = extrinsics
    poses[:, 3, 3] = 1
    rotation_t = poses[:, :3, :3].transpose(1, 2)
    inverse = torch.zeros_like(poses)
    inverse[:, :3, :3] = rotation_t
    inverse[:, :3, 3:] = -torch.bmm(rotation_t, poses[:, :3, 3:])
    inverse[:, 3, 3] = 1
    relative = torch.bmm(poses[torch.from_numpy(a)], inverse[torch.from_numpy(b)])
    return relative[:, :3, :3], relative[:, :3, 3]


def quaternion_xyzw(matrix: torch.Tensor) -> torch.Tensor:
    """Quaternions (…, 4), scalar last, of 3×3 matrices taken as given.

    Each of the four component magnitudes is computed from the diagonal; the candidate built around
    the largest (the best-conditioned division) is kept. A non-orthonormal matrix gives a
    non-unit quaternion, as in the published procedure.
    """
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    diagonal = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    magnitude = torch.sqrt(torch.clamp(diagonal, min=0))  # 2|w|, 2|x|, 2|y|, 2|z|
    candidates = torch.stack(
        [
            torch.stack([magnitude[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, magnitude[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, magnitude[..., 2] ** 2, m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, magnitude[..., 3] ** 2], dim=-1),
        ],
        dim=-2,
    )  # row k: (w, x, y, z) scaled by 2·magnitude[k]
    candidates = candidates / (2.0 * torch.clamp(magnitude[..., None], min=0.1))
    best = torch.argmax(magnitude, dim=-1)
    wxyz = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    return wxyz[..., [1, 2, 3, 0]]


def _quaternion_errors(pred: np.ndarray, gt: np.ndarray, pair_order: str, precision: str) -> tuple[np.ndarray, np.ndarray]:
    dtype = PRECISIONS[precision]
    a, b = pair_indices(len(gt), pair_order)
    pred_rotation, pred_translation = _relative_torch(torch.from_numpy(np.asarray(pred, dtype=np.float64)).to(dtype), a, b)
    gt_rotation, gt_translation = _relative_torch(torch.from_numpy(np.asarray(gt, dtype=np.float64)).to(dtype), a, b)
    cosine = torch.sum(quaternion_xyzw(pred_rotation) * quaternion_xyzw(gt_rotation), dim=-1)
    rotation_error = torch.rad2deg(torch.arccos(1 - 2 * torch.clamp(1 - cosine * cosine, min=ANGLE_FLOOR)))
    pred_unit = pred_translation / (torch.linalg.norm(pred_translation, dim=-1, keepdim=True) + 1e-15)
    gt_unit = gt_translation / (torch.linalg.norm(gt_translation, dim=-1, keepdim=True) + 1e-15)
    dot = torch.sum(pred_unit * gt_unit, dim=-1)
    translation_error = torch.arccos(torch.sqrt(1 - torch.clamp(1 - dot * dot, min=ANGLE_FLOOR)))
    translation_error = torch.rad2deg(torch.where(torch.isfinite(translation_error), translation_error, FAILED_ANGLE_RAD))
    translation_error = torch.minimum(translation_error, torch.abs(180 - translation_error))
    return rotation_error.numpy(), translation_error.numpy()


def _matrix_errors(pred: np.ndarray, gt: np.ndarray, pair_order: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = pair_indices(len(gt), pair_order)

    def relative(extrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rotation = nearest_rotation(extrinsics[:, :, :3])
        translation = np.asarray(extrinsics[:, :, 3], dtype=np.float64)
        rel_rotation = rotation[a] @ np.swapaxes(rotation[b], -1, -2)
        return rel_rotation, translation[a] - np.einsum("pij,pj->pi", rel_rotation, translation[b])

    pred_rotation, pred_translation = relative(pred)
    gt_rotation, gt_translation = relative(gt)
    rotation_error = rotation_angle_deg(pred_rotation @ np.swapaxes(gt_rotation, -1, -2))
    translation_error = vector_angle_deg(pred_translation, gt_translation)
    return rotation_error, np.minimum(translation_error, 180.0 - translation_error)


def relative_pose_errors(
    pred_extrinsics: np.ndarray, gt_extrinsics: np.ndarray, pair_order: str = "ij", angles: str = "matrix", precision: str = "float64"
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation angular errors in degrees, (P,) each, for all pairs i < j in
    lexicographic order (see the module doc for `pair_order`, `angles` and `precision`).

    The translation error is folded to min(e, 180° − e): the sign of a direction from a scale-free
    model is not trusted.
    """
    check_choice(pair_order, PAIR_ORDERS, "pair_order")
    check_choice(angles, ANGLES, "angles")
    check_choice(precision, PRECISIONS, "precision")
    if angles == "quaternion":
        return _quaternion_errors(pred_extrinsics, gt_extrinsics, pair_order, precision)
    if precision != "float64":
        raise MetricInputError("option precision=float32 belongs to the published (angles: quaternion) procedure")
    return _matrix_errors(pred_extrinsics, gt_extrinsics, pair_order)


def _bin_counts(rotation_error: np.ndarray, translation_error: np.ndarray, max_threshold: int) -> tuple[np.ndarray, int]:
    """Pairs whose max(rotation, translation error) falls in each 1° bin [0, 1), [1, 2), …, [T−1, T]
    (numpy.histogram: the last bin is closed; NaN and errors above T fall in no bin), and the number
    of pairs."""
    worst = np.maximum(rotation_error, translation_error)
    counts, _ = np.histogram(worst[~np.isnan(worst)], bins=np.arange(max_threshold + 1))
    return counts, len(worst)


def error_histogram(rotation_error: np.ndarray, translation_error: np.ndarray, max_threshold: int) -> np.ndarray:
    """The share of all pairs in each 1° bin (see `_bin_counts`)."""
    counts, pairs = _bin_counts(rotation_error, translation_error, max_threshold)
    return counts / pairs


def pose_auc(rotation_error: np.ndarray, translation_error: np.ndarray, max_threshold: int) -> float:
    """AUC@T as a fraction, as in the VGGT/π³ evaluation code: the accumulated bin counts over the
    number of pairs are the fraction of pairs within each threshold 1°, …, T°; AUC@T is the mean of
    those T fractions."""
    counts, pairs = _bin_counts(rotation_error, translation_error, max_threshold)
    return float(np.mean(np.cumsum(counts) / pairs))


def accuracy_below(error: np.ndarray, threshold: float) -> float:
    """Fraction of errors strictly below `threshold` (NaN counts as above)."""
    with np.errstate(invalid="ignore"):
        return float(np.mean(error < threshold))


def pose_scores(rotation_error: np.ndarray, translation_error: np.ndarray, thresholds: Sequence[int]) -> dict[str, float]:
    """RRA@τ, RTA@τ and AUC@τ as fractions for pairs whose errors are given (one scene or pooled)."""
    scores = {f"rra{t}": accuracy_below(rotation_error, t) for t in thresholds}
    scores |= {f"rta{t}": accuracy_below(translation_error, t) for t in thresholds}
    return scores | {f"auc{t}": pose_auc(rotation_error, translation_error, t) for t in thresholds}


def score_keys(thresholds: Sequence[int]) -> list[str]:
    return [f"{name}{t}" for name in ("rra", "rta", "auc") for t in thresholds] + ["pose_invalid_pairs"]


@register_metric(
    "pose",
    version=2,
    keys=(
        higher("rra{t}", "relative rotation accuracy: % of pairs with rotation error below τ°"),
        higher("rta{t}", "relative translation accuracy: % of pairs with direction error below τ°"),
        higher("auc{t}", "area under the accuracy curve of max(rotation, translation error) up to τ°, %"),
        diagnostic("pose_invalid_pairs", "pairs whose error is undefined (counted as failures)", aggregate="sum"),
        option("pose_pair_order"),
        option("pose_angles"),
        option("pose_precision"),
        raw("rot_err_deg", "rotation error of every pair (i, j), i < j, in lexicographic order"),
        raw("trans_err_deg", "translation direction error of every pair, same order"),
    ),
    help="relative pose over all pairs: RRA@τ, RTA@τ, AUC@τ (percent)",
)
def pose_metrics(
    pred: Mapping[str, Any],
    gt: Mapping[str, Any],
    thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
    pair_order: str = "ij",
    angles: str = "matrix",
    precision: str = "float64",
) -> MetricRow:
    """RRA@τ, RTA@τ, AUC@τ (percent) for τ in `thresholds` over all frame pairs, the number of pairs
    whose error is undefined, and the per-pair errors as raw arrays."""
    thresholds = tuple(thresholds)
    if not thresholds or any(not float(t).is_integer() or t <= 0 for t in thresholds):
        raise MetricInputError(f"pose thresholds must be positive whole degrees (AUC uses 1° bins), got {list(thresholds)}")
    thresholds = tuple(int(t) for t in thresholds)
    check_choice(pair_order, PAIR_ORDERS, "pair_order")
    check_choice(angles, ANGLES, "angles")
    check_choice(precision, PRECISIONS, "precision")
    frames = num_frames(gt)

    def compute() -> dict[str, Any]:
        if frames < 2:
            raise MetricUnavailable(f"{frames} frame(s); relative pose needs at least 2")
        pred_extrinsics = prediction(pred, "extrinsics", (frames, 3, 4))
        rotation_error, translation_error = relative_pose_errors(pred_extrinsics, np.asarray(gt["extrinsics"]), pair_order, angles, precision)
        row: dict[str, Any] = {key: 100.0 * value for key, value in pose_scores(rotation_error, translation_error, thresholds).items()}
        worst = np.maximum(rotation_error, translation_error)
        row["pose_invalid_pairs"] = float(np.count_nonzero(~np.isfinite(worst) | (worst >= np.degrees(FAILED_ANGLE_RAD) - 180)))
        return row | {"rot_err_deg": rotation_error, "trans_err_deg": translation_error}

    options = {"pose_pair_order": pair_order, "pose_angles": angles, "pose_precision": precision}
    return compute_or_note("pose", score_keys(thresholds), compute) | options
