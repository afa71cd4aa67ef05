"""Depth accuracy: AbsRel, δ < 1.25ᵏ and RMSE over valid pixels after a selectable alignment.

Alignments (the monocular and video-depth protocols of MonST3R / CUT3R / π³):

- ``median_frame``: each frame scaled by median(gt)/median(pred); metrics per frame, then averaged
  over frames (the single-image protocol);
- ``median_sequence``: one median-ratio scale for the whole sequence; metrics pooled over all
  valid pixels of the sequence (the default: a multi-view model predicts one consistent scale);
- ``scale_shift_sequence``: one least-squares scale and shift for the sequence, pooled;
- ``none``: metric depth, no alignment.

Valid pixels: GT valid and > 0 (and < `max_depth` when given), prediction finite and > 0, and,
optionally, the confidence filter. The fraction of GT-valid pixels lost to invalid predictions is
recorded as ``depth_pred_invalid`` so a model cannot look better by predicting NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from metrics.alignment import least_squares_scale_shift, median_scale
from metrics.confidence import ConfidenceFilter
from metrics.inputs import MetricRow, MetricUnavailable, check_choice, compute_or_note, ground_truth, num_frames, prediction, valid_depth

ALIGNMENTS = ("median_frame", "median_sequence", "scale_shift_sequence", "none")
KEYS = ("abs_rel", "delta_1_25", "delta_1_25_2", "delta_1_25_3", "depth_rmse", "depth_pred_invalid")


def depth_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Scores of aligned predicted depths against GT depths (1-D arrays of corresponding pixels).

    AbsRel = mean |p − g| / g; δ < τ = fraction with max(p/g, g/p) < τ (a non-positive p fails);
    RMSE = sqrt(mean (p − g)²).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pred > 0, np.maximum(pred / gt, gt / pred), np.inf)
    return {
        "abs_rel": float(np.mean(np.abs(pred - gt) / gt)),
        "delta_1_25": float(np.mean(ratio < 1.25)),
        "delta_1_25_2": float(np.mean(ratio < 1.25**2)),
        "delta_1_25_3": float(np.mean(ratio < 1.25**3)),
        "depth_rmse": float(np.sqrt(np.mean((pred - gt) ** 2))),
    }


def aligned_errors(pred_depth: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray, align: str) -> dict[str, float]:
    """Align the predicted depths (S, H, W) on the masked pixels as `align` says, then score them."""
    if align == "median_frame":
        per_frame = []
        for frame_pred, frame_gt, frame_mask in zip(pred_depth, gt_depth, mask):
            if frame_mask.any():
                pred, gt = frame_pred[frame_mask].astype(np.float64), frame_gt[frame_mask].astype(np.float64)
                per_frame.append(depth_errors(pred * median_scale(pred, gt), gt))
        return {key: float(np.mean([errors[key] for errors in per_frame])) for key in per_frame[0]}
    pred, gt = pred_depth[mask].astype(np.float64), gt_depth[mask].astype(np.float64)
    if align == "median_sequence":
        pred = pred * median_scale(pred, gt)
    elif align == "scale_shift_sequence":
        scale, shift = least_squares_scale_shift(pred, gt)
        pred = scale * pred + shift
    return depth_errors(pred, gt)


def depth_metrics(
    pred: Mapping[str, Any],
    gt: Mapping[str, Any],
    align: str = "median_sequence",
    max_depth: float | None = None,
    conf_top_percent: float | None = None,
    conf_threshold: float | None = None,
) -> MetricRow:
    """AbsRel, δ < 1.25 / 1.25² / 1.25³ (fractions) and RMSE of predicted depth; see the module doc."""
    check_choice(align, ALIGNMENTS, "align")
    confidence_filter = ConfidenceFilter(conf_top_percent, conf_threshold)
    frames = num_frames(gt)
    gt_depth = ground_truth(gt, "depth", (frames, None, None))
    size = gt_depth.shape

    def compute() -> dict[str, float]:
        pred_depth = prediction(pred, "depth", size)
        gt_valid = valid_depth(gt, gt_depth)
        if max_depth is not None:
            gt_valid &= gt_depth < max_depth
        with np.errstate(invalid="ignore"):
            pred_ok = np.isfinite(pred_depth) & (pred_depth > 0)
        usable = gt_valid & pred_ok
        if confidence_filter.active:
            usable = confidence_filter.keep(prediction(pred, "depth_conf", size), usable)
        if not usable.any():
            raise MetricUnavailable("no pixel is valid in both the ground truth and the prediction")
        row = aligned_errors(pred_depth, gt_depth, usable, align)
        row["depth_pred_invalid"] = float(1.0 - pred_ok[gt_valid].mean())
        return row

    options = {"depth_align": align, "depth_max_depth": max_depth, "depth_conf_filter": confidence_filter.label}
    return compute_or_note("depth", KEYS, compute) | options
