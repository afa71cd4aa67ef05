"""Trajectory accuracy with evo: ATE after Sim(3) Umeyama alignment, RPE over consecutive frames.

The protocol of MonST3R / CUT3R / π³ on ScanNet, TUM and Sintel: camera-to-world poses, the
estimate aligned to the reference with scale correction, then the RMSE of the APE translation part
(ATE) and of the RPE translation part and rotation angle in degrees over frame pairs (i, i + 1).

evo's SO(3) checks are strict, so rotations that carry float32 rounding must become rotations
first. `rotations` ``quaternion`` is the published route (π³ hands evo a position and the
quaternion scipy's ``Rotation.from_matrix`` gives, no SVD); ``nearest`` (this project's default)
projects each rotation onto SO(3) by SVD. They differ by about 5.7e-4 relative in RPE rotation at
1e-4 non-orthonormality and agree on exact rotations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from evo.core import metrics as evo_metrics
from evo.core.geometry import GeometryException
from evo.core.trajectory import PoseTrajectory3D
from scipy.spatial.transform import Rotation

from metrics.alignment import DegenerateAlignmentError, umeyama
from metrics.geometry import camera_centres, invert_rigid, nearest_rotation, to_homogeneous
from metrics.inputs import MetricRow, MetricUnavailable, check_choice, compute_or_note, num_frames, prediction
from metrics.registry import lower, option, register_metric

KEYS = ("ate", "rpe_trans", "rpe_rot")
ROTATIONS = ("nearest", "quaternion")


def evo_trajectory(extrinsics: np.ndarray, rotations: str = "nearest") -> PoseTrajectory3D:
    """An evo trajectory of camera-to-world poses from world-to-camera extrinsics (S, 3, 4), in
    float64, rotations made valid as `rotations` says (module doc); timestamps are the frame
    indices (the RPE step is one frame)."""
    cam_to_world = invert_rigid(np.asarray(extrinsics, dtype=np.float64))
    timestamps = np.arange(len(cam_to_world), dtype=np.float64)
    if rotations == "quaternion":
        xyzw = Rotation.from_matrix(cam_to_world[:, :, :3]).as_quat()
        return PoseTrajectory3D(positions_xyz=cam_to_world[:, :, 3], orientations_quat_wxyz=xyzw[:, [3, 0, 1, 2]], timestamps=timestamps)
    cam_to_world[:, :, :3] = nearest_rotation(cam_to_world[:, :, :3])
    return PoseTrajectory3D(poses_se3=list(to_homogeneous(cam_to_world)), timestamps=timestamps)


def check_alignable(extrinsics: np.ndarray, who: str) -> None:
    """Refuse trajectories that Sim(3) alignment cannot handle, with the reason as the note."""
    if not np.isfinite(extrinsics).all():
        raise MetricUnavailable(f"{who} poses contain NaN or infinite values")
    centres = camera_centres(np.asarray(extrinsics, dtype=np.float64))
    try:
        umeyama(centres, centres)
    except DegenerateAlignmentError as reason:
        raise MetricUnavailable(f"{who} camera centres: {reason}") from None


def trajectory_errors(pred_extrinsics: np.ndarray, gt_extrinsics: np.ndarray, rotations: str = "nearest") -> dict[str, float]:
    """ATE, RPE translation (RMSE, GT units) and RPE rotation (RMSE, degrees) via evo's own classes."""
    reference = evo_trajectory(gt_extrinsics, rotations)
    estimate = evo_trajectory(pred_extrinsics, rotations)
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


@register_metric(
    "trajectory",
    version=2,
    keys=(
        lower("ate", "absolute trajectory error: RMSE of camera positions after Sim(3) alignment, GT units"),
        lower("rpe_trans", "relative pose error over consecutive frames, translation RMSE, GT units"),
        lower("rpe_rot", "relative pose error over consecutive frames, rotation RMSE, degrees"),
        option("trajectory_align"),
        option("trajectory_rotations"),
    ),
    help="ATE and RPE (Δ = 1 frame) after Sim(3) alignment, via evo",
)
def trajectory_metrics(pred: Mapping[str, Any], gt: Mapping[str, Any], rotations: str = "nearest") -> MetricRow:
    """ATE and RPE (Δ = 1 frame) after Sim(3) alignment of the predicted to the GT trajectory.

    Fewer than 3 frames, non-finite poses (the published protocol skips a sequence whose GT has
    one), or collinear/coincident camera centres give NaN and a ``trajectory_note`` (the alignment
    is undetermined), never an exception.
    """
    check_choice(rotations, ROTATIONS, "rotations")
    frames = num_frames(gt)
    gt_extrinsics = np.asarray(gt["extrinsics"])

    def compute() -> dict[str, float]:
        if frames < 3:
            raise MetricUnavailable(f"{frames} frame(s); Sim(3) trajectory alignment needs at least 3")
        pred_extrinsics = prediction(pred, "extrinsics", (frames, 3, 4))
        check_alignable(gt_extrinsics, "ground-truth")
        check_alignable(pred_extrinsics, "predicted")
        return trajectory_errors(pred_extrinsics, gt_extrinsics, rotations)

    return compute_or_note("trajectory", KEYS, compute) | {"trajectory_align": "sim3", "trajectory_rotations": rotations}
