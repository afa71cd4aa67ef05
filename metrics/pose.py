"""Relative pose accuracy over all frame pairs: RRA, RTA and AUC (the CO3D protocol of VGGT and π³).

Relative poses are invariant to the world frame and scale, so no alignment is needed: a prediction
that differs from the ground truth by a similarity transform of the world scores perfectly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metrics.geometry import nearest_rotation, rotation_angle_deg, vector_angle_deg
from metrics.inputs import MetricInputError, MetricRow, MetricUnavailable, compute_or_note, num_frames, prediction

DEFAULT_THRESHOLDS = (5, 15, 30)


def relative_pose_errors(pred_extrinsics: np.ndarray, gt_extrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation angular errors in degrees, (P,) each, for all pairs i < j.

    For world-to-camera [R|t], the pose of camera j relative to camera i is
    R_ij = R_i R_jᵀ, t_ij = t_i − R_ij t_j. The rotation error is the angle of R_ij,pred R_ij,gtᵀ;
    the translation error is the angle between t_ij,pred and t_ij,gt folded to min(e, 180° − e)
    (the sign of a direction from a scale-free model is not trusted). Undefined errors (non-finite
    poses, a zero-length relative translation) are NaN; the scores count them as failures.
    Pairs are enumerated as numpy.triu_indices(S, 1): (0,1), (0,2), …, (S−2, S−1).
    """
    first, second = np.triu_indices(len(gt_extrinsics), k=1)

    def relative(extrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rotation = nearest_rotation(extrinsics[:, :, :3])
        translation = np.asarray(extrinsics[:, :, 3], dtype=np.float64)
        rel_rotation = rotation[first] @ np.swapaxes(rotation[second], -1, -2)
        rel_translation = translation[first] - np.einsum("pij,pj->pi", rel_rotation, translation[second])
        return rel_rotation, rel_translation

    pred_rotation, pred_translation = relative(pred_extrinsics)
    gt_rotation, gt_translation = relative(gt_extrinsics)
    rotation_error = rotation_angle_deg(pred_rotation @ np.swapaxes(gt_rotation, -1, -2))
    translation_error = vector_angle_deg(pred_translation, gt_translation)
    return rotation_error, np.minimum(translation_error, 180.0 - translation_error)


def pose_auc(rotation_error: np.ndarray, translation_error: np.ndarray, max_threshold: int) -> float:
    """AUC@T in percent, as in the VGGT/π³ evaluation code.

    e = max(rotation error, translation error) per pair (NaN → ∞, a failure); a histogram of e over
    1° bins [0, 1), [1, 2), …, [T−1, T] (numpy.histogram: the last bin is closed), normalised by
    the number of pairs and accumulated, gives the fraction of pairs within each threshold
    1°, …, T°; AUC@T is the mean of those T fractions, × 100.
    """
    worst = np.maximum(rotation_error, translation_error)
    worst = np.where(np.isnan(worst), np.inf, worst)
    histogram, _ = np.histogram(worst, bins=np.arange(max_threshold + 1))
    return float(100.0 * np.mean(np.cumsum(histogram) / len(worst)))


def accuracy_below(error: np.ndarray, threshold: float) -> float:
    """Percentage of errors strictly below `threshold` (NaN counts as above)."""
    with np.errstate(invalid="ignore"):
        return float(100.0 * np.mean(error < threshold))


def score_keys(thresholds: Sequence[int]) -> list[str]:
    return [f"{name}{t}" for name in ("rra", "rta", "auc") for t in thresholds] + ["pose_invalid_pairs"]


def pose_metrics(pred: Mapping[str, Any], gt: Mapping[str, Any], thresholds: Sequence[int] = DEFAULT_THRESHOLDS) -> MetricRow:
    """RRA@τ, RTA@τ, AUC@τ (percent) for τ in `thresholds` over all frame pairs, and the number of
    pairs whose error is undefined (counted as failures)."""
    thresholds = tuple(thresholds)
    if not thresholds or any(not float(t).is_integer() or t <= 0 for t in thresholds):
        raise MetricInputError(f"pose thresholds must be positive whole degrees (AUC uses 1° bins), got {list(thresholds)}")
    thresholds = tuple(int(t) for t in thresholds)
    frames = num_frames(gt)

    def compute() -> dict[str, float]:
        if frames < 2:
            raise MetricUnavailable(f"{frames} frame(s); relative pose needs at least 2")
        pred_extrinsics = prediction(pred, "extrinsics", (frames, 3, 4))
        rotation_error, translation_error = relative_pose_errors(pred_extrinsics, np.asarray(gt["extrinsics"]))
        row = {f"rra{t}": accuracy_below(rotation_error, t) for t in thresholds}
        row |= {f"rta{t}": accuracy_below(translation_error, t) for t in thresholds}
        row |= {f"auc{t}": pose_auc(rotation_error, translation_error, t) for t in thresholds}
        row["pose_invalid_pairs"] = float(np.count_nonzero(np.isnan(rotation_error) | np.isnan(translation_error)))
        return row

    return compute_or_note("pose", score_keys(thresholds), compute)
