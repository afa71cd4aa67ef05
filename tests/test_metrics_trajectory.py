import numpy as np
import pytest
from evo import main_ape, main_rpe
from evo.core.lie_algebra import LieAlgebraException
from evo.core.metrics import PoseRelation, Unit
from evo.core.trajectory import PoseTrajectory3D
from scipy.spatial.transform import Rotation

from metrics import METRICS
from metrics.geometry import camera_centres
from tests.metrics_scene import look_at, orbit_extrinsics, random_similarity, transform_world


def trajectory(pred_extrinsics, gt_extrinsics):
    return METRICS.get("trajectory")({"extrinsics": pred_extrinsics}, {"extrinsics": gt_extrinsics})


def noisy(extrinsics: np.ndarray, seed: int = 0) -> np.ndarray:
    """The same cameras with rotation noise (~2°) and centre noise (~5 cm)."""
    rng = np.random.default_rng(seed)
    result = extrinsics.copy()
    for frame, pose in enumerate(extrinsics):
        rotation = Rotation.from_rotvec(rng.normal(scale=0.03, size=3)).as_matrix() @ pose[:, :3]
        centre = -pose[:, :3].T @ pose[:, 3] + rng.normal(scale=0.05, size=3)
        result[frame] = np.concatenate([rotation, -(rotation @ centre)[:, None]], axis=1)
    return result


def evo_reference(pred_extrinsics: np.ndarray, gt_extrinsics: np.ndarray) -> dict[str, float]:
    """ATE / RPE computed by evo's command-line API (main_ape / main_rpe), trajectories built here."""

    def build():
        poses = []
        for pose in (pred_extrinsics, gt_extrinsics):
            world_to_camera = np.repeat(np.eye(4)[None], len(pose), axis=0)
            world_to_camera[:, :3] = pose
            camera_to_world = np.linalg.inv(world_to_camera)
            poses.append(PoseTrajectory3D(poses_se3=list(camera_to_world), timestamps=np.arange(len(pose), dtype=float)))
        return poses

    estimate, reference = build()
    ate = main_ape.ape(reference, estimate, PoseRelation.translation_part, align=True, correct_scale=True)
    row = {"ate": ate.stats["rmse"]}
    for key, relation in (("rpe_trans", PoseRelation.translation_part), ("rpe_rot", PoseRelation.rotation_angle_deg)):
        estimate, reference = build()
        rpe = main_rpe.rpe(reference, estimate, relation, delta=1, delta_unit=Unit.frames, all_pairs=True, align=True, correct_scale=True)
        row[key] = rpe.stats["rmse"]
    return row


def test_perfect_prediction_has_zero_error():
    gt = orbit_extrinsics(12)
    row = trajectory(gt.copy(), gt)
    for key in ("ate", "rpe_trans", "rpe_rot"):
        assert row[key] == pytest.approx(0.0, abs=1e-9), key
    assert row["trajectory_align"] == "sim3"
    assert "trajectory_note" not in row


def test_similarity_transformed_prediction_is_perfect_after_alignment_only():
    gt = orbit_extrinsics(12)
    pred = transform_world(gt, *random_similarity(3))
    row = trajectory(pred, gt)
    assert row["ate"] == pytest.approx(0.0, abs=1e-9)
    assert row["rpe_trans"] == pytest.approx(0.0, abs=1e-9)
    assert row["rpe_rot"] == pytest.approx(0.0, abs=1e-7)
    unaligned = np.sqrt(np.mean(np.sum((camera_centres(pred) - camera_centres(gt)) ** 2, axis=1)))
    assert unaligned > 0.1


def test_ate_and_rpe_equal_a_direct_evo_call():
    gt = orbit_extrinsics(20)
    pred = transform_world(noisy(gt), *random_similarity(5))
    row, expected = trajectory(pred, gt), evo_reference(pred, gt)
    assert row["ate"] > 0.01
    for key in ("ate", "rpe_trans", "rpe_rot"):
        assert row[key] == pytest.approx(expected[key], rel=1e-9), key


def test_float32_predictions_with_slightly_non_orthonormal_rotations_pass_evo_checks():
    gt = orbit_extrinsics(10)
    pred = (noisy(gt, seed=1) * (1 + 1e-4)).astype(np.float32)  # det(R) ≈ 1.0003
    with pytest.raises(LieAlgebraException):
        evo_reference(pred.astype(np.float64), gt)  # evo itself rejects these rotations
    row = trajectory(pred, gt)
    assert np.isfinite(row["ate"]) and row["ate"] > 0


@pytest.mark.parametrize(
    ("make_pred", "make_gt", "reason"),
    [
        (lambda gt: gt, lambda gt: gt[:2], "at least 3"),
        (lambda gt: np.where(np.arange(len(gt))[:, None, None] == 3, np.nan, gt), lambda gt: gt, "NaN"),
        (lambda gt: gt, lambda gt: np.stack([look_at(np.array([x, 0.0, 0.0]), np.array([x, 1.0, 0.0])) for x in range(len(gt))]), "collinear"),
        (lambda gt: np.stack([look_at(np.zeros(3), np.array([1.0, 0.0, 0.0]))] * len(gt)), lambda gt: gt, "coincident"),
    ],
    ids=["two frames", "nan pose", "collinear gt", "coincident prediction"],
)
def test_degenerate_trajectories_give_nan_and_a_reason(make_pred, make_gt, reason):
    gt = make_gt(orbit_extrinsics(8))
    row = trajectory(make_pred(gt), gt)
    assert all(np.isnan(row[key]) for key in ("ate", "rpe_trans", "rpe_rot"))
    assert reason in row["trajectory_note"]


def test_missing_prediction_is_noted():
    row = METRICS.get("trajectory")({}, {"extrinsics": orbit_extrinsics(5)})
    assert np.isnan(row["ate"]) and "extrinsics" in row["trajectory_note"]
