"""Trajectory accuracy with evo: ATE after Sim(3) Umeyama alignment, RPE over consecutive frames.

The protocol of MonST3R / CUT3R / π³ on ScanNet and 7-Scenes: camera-to-world poses, the estimate
aligned to the reference with scale correction, then the RMSE of the APE translation part (ATE) and
of the RPE translation part and rotation angle in degrees over frame pairs (i, i + 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from evo.core import metrics as evo_metrics
from evo.core.geometry import GeometryException
from evo.core.trajectory import PoseTrajectory3D

from metrics.alignment import DegenerateAlignmentError, umeyama
from metrics.geometry import camera_centres, invert_rigid, nearest_rotation, to_homogeneous
from metrics.inputs import MetricRow, MetricUnavailable, compute_or_note, num_frames, prediction

KEYS = ("ate", "rpe_trans", "rpe_rot")


def evo_trajectory(extrinsics: np.ndarray) -> PoseTrajectory3D:
    """An evo trajectory of camera-to-world poses from world-to-camera extrinsics (S, 3, 4).

    float64 with rotations projected onto SO(3), so that evo's strict checks pass; timestamps are
    the frame indices (the RPE step is one frame).
    """
    cam_to_world = invert_rigid(np.asarray(extrinsics, dtype=np.float64))
    cam_to_world[:, :, :3] = nearest_rotation(cam_to_world[:, :, :3])
    poses = list(to_homogeneous(cam_to_world))
    return PoseTrajectory3D(poses_se3=poses, timestamps=np.arange(len(poses), dtype=np.float64))


def check_alignable(extrinsics: np.ndarray, who: str) -> None:
    """Refuse trajectories that Sim(3) alignment cannot handle, with the reason as the note."""
    if not np.isfinite(extrinsics).all():
        raise MetricUnavailable(f"{who} poses contain NaN or infinite values")
    centres = camera_centres(np.asarray(extrinsics, dtype=np.float64))
    try:
        umeyama(centres, centres)
    except DegenerateAlignmentError as reason:
        raise MetricUnavailable(f"{who} camera centres: {reason}") from None


def trajectory_errors(pred_extrinsics: np.ndarray, gt_extrinsics: np.ndarray) -> dict[str, float]:
    """ATE, RPE translation (RMSE, GT units) and RPE rotation (RMSE, degrees) via evo's own classes."""
    reference = evo_trajectory(gt_extrinsics)
    estimate = evo_trajectory(pred_extrinsics)
    try:
        estimate.align(reference, correct_scale=True)
    except GeometryException as reason:  # evo's own rank test (absolute, so also tiny trajectories)
        raise MetricUnavailable(f"evo could not align the trajectories: {reason}") from None
    rmse = evo_metrics.StatisticsType.rmse
    ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
    ape.process_data((reference, estimate))
    row = {"ate": ape.get_statistic(rmse)}
    for key, relation in (("rpe_trans", evo_metrics.PoseRelation.translation_part), ("rpe_rot", evo_metrics.PoseRelation.rotation_angle_deg)):
        rpe = evo_metrics.RPE(relation, delta=1, delta_unit=evo_metrics.Unit.frames, all_pairs=True)
        rpe.process_data((reference, estimate))
        row[key] = rpe.get_statistic(rmse)
    return {key: float(value) for key, value in row.items()}


def trajectory_metrics(pred: Mapping[str, Any], gt: Mapping[str, Any]) -> MetricRow:
    """ATE and RPE (Δ = 1 frame) after Sim(3) alignment of the predicted to the GT trajectory.

    Fewer than 3 frames, non-finite poses, or collinear/coincident camera centres give NaN and a
    ``trajectory_note`` (the alignment is undetermined), never an exception.
    """
    frames = num_frames(gt)
    gt_extrinsics = np.asarray(gt["extrinsics"])

    def compute() -> dict[str, float]:
        if frames < 3:
            raise MetricUnavailable(f"{frames} frame(s); Sim(3) trajectory alignment needs at least 3")
        pred_extrinsics = prediction(pred, "extrinsics", (frames, 3, 4))
        check_alignable(gt_extrinsics, "ground-truth")
        check_alignable(pred_extrinsics, "predicted")
        return trajectory_errors(pred_extrinsics, gt_extrinsics)

    return compute_or_note("trajectory", KEYS, compute) | {"trajectory_align": "sim3"}
