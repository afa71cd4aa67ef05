import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from metrics import METRICS, MetricInputError
from metrics.pose import pose_auc, relative_pose_errors
from tests.metrics_scene import look_at, orbit_extrinsics, random_similarity, transform_world


def camera(centre, rotation) -> np.ndarray:
    """World-to-camera [R | −R c]."""
    rotation = np.asarray(rotation, dtype=np.float64)
    return np.concatenate([rotation, -(rotation @ np.asarray(centre, dtype=np.float64))[:, None]], axis=1)


def pose(pred_extrinsics, gt_extrinsics, **options):
    return METRICS.get("pose")({"extrinsics": pred_extrinsics}, {"extrinsics": gt_extrinsics}, **options)


def test_perfect_prediction_scores_100():
    gt = orbit_extrinsics(10)
    row = pose(gt.copy(), gt)
    for key in ("rra5", "rra15", "rra30", "rta5", "rta15", "rta30", "auc5", "auc15", "auc30"):
        assert row[key] == pytest.approx(100.0), key
    assert row["pose_invalid_pairs"] == 0


def test_a_similarity_transform_of_the_world_changes_nothing():
    gt = orbit_extrinsics(8)
    pred = transform_world(gt, *random_similarity(2))
    rotation_error, translation_error = relative_pose_errors(pred, gt)
    np.testing.assert_allclose(rotation_error, 0, atol=1e-6)
    np.testing.assert_allclose(translation_error, 0, atol=1e-6)
    assert pose(pred, gt)["auc30"] == pytest.approx(100.0)


def test_rotating_the_second_camera_in_place_gives_exactly_that_rotation_error():
    rotation_0 = Rotation.random(random_state=1).as_matrix()
    rotation_1 = Rotation.random(random_state=2).as_matrix()
    gt = np.stack([camera([0, 0, 0], rotation_0), camera([1, 0.5, 0], rotation_1)])
    turn = Rotation.from_rotvec(np.radians(7.0) * np.array([0.6, 0.0, 0.8])).as_matrix()
    pred = np.stack([gt[0], camera([1, 0.5, 0], turn @ rotation_1)])
    rotation_error, translation_error = relative_pose_errors(pred, gt)
    assert rotation_error[0] == pytest.approx(7.0, abs=1e-9)
    # t_01 = R_0 (c_1 − c_0) does not depend on camera 1's rotation.
    assert translation_error[0] == pytest.approx(0.0, abs=1e-9)


def test_moving_a_camera_centre_gives_the_angle_of_the_baseline_change():
    rotation = Rotation.random(random_state=3).as_matrix()
    gt = np.stack([camera([0, 0, 0], rotation), camera([1, 0, 0], rotation), camera([0, 0, 2], rotation)])
    angle = np.radians(12.0)
    pred = gt.copy()
    pred[1] = camera([np.cos(angle), np.sin(angle), 0], rotation)  # baseline 0→1 turned by 12°
    rotation_error, translation_error = relative_pose_errors(pred, gt)
    np.testing.assert_allclose(rotation_error, 0, atol=1e-9)
    # Pairs (0,1), (0,2), (1,2): the baseline 1→2 turns by the angle between (−1, 0, 2) and (−cos, −sin, 2).
    direction_gt, direction_pred = np.array([-1.0, 0, 2]), np.array([-np.cos(angle), -np.sin(angle), 2])
    expected_12 = np.degrees(np.arccos(direction_gt @ direction_pred / np.linalg.norm(direction_gt) / np.linalg.norm(direction_pred)))
    np.testing.assert_allclose(translation_error, [12.0, 0.0, expected_12], atol=1e-9)


def test_translation_error_is_folded_for_an_opposite_direction():
    rotation = np.eye(3)
    gt = np.stack([camera([0, 0, 0], rotation), camera([1, 0, 0], rotation)])
    pred = np.stack([camera([0, 0, 0], rotation), camera([-1, 0.1, 0], rotation)])
    _, translation_error = relative_pose_errors(pred, gt)
    assert translation_error[0] == pytest.approx(np.degrees(np.arctan(0.1)), abs=1e-9)  # 180° − 174.3° = 5.7°


def test_errors_match_a_pair_by_pair_float64_reference():
    gt = orbit_extrinsics(7)
    rng = np.random.default_rng(0)
    pred = gt.copy()
    for frame in range(7):
        noise = Rotation.from_rotvec(rng.normal(scale=0.1, size=3)).as_matrix()
        pred[frame] = camera(-gt[frame, :, :3].T @ gt[frame, :, 3] + rng.normal(scale=0.2, size=3), noise @ gt[frame, :, :3])
    rotation_error, translation_error = relative_pose_errors(pred, gt)
    pair = 0
    for i in range(7):
        for j in range(i + 1, 7):
            def relative(extrinsics):
                world_to_i, world_to_j = np.eye(4), np.eye(4)
                world_to_i[:3], world_to_j[:3] = extrinsics[i], extrinsics[j]
                return world_to_i @ np.linalg.inv(world_to_j)

            rel_pred, rel_gt = relative(pred), relative(gt)
            expected_rotation = Rotation.from_matrix(rel_pred[:3, :3] @ rel_gt[:3, :3].T).magnitude()
            cosine = rel_pred[:3, 3] @ rel_gt[:3, 3] / np.linalg.norm(rel_pred[:3, 3]) / np.linalg.norm(rel_gt[:3, 3])
            expected_translation = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
            assert rotation_error[pair] == pytest.approx(np.degrees(expected_rotation), abs=1e-7)
            assert translation_error[pair] == pytest.approx(min(expected_translation, 180 - expected_translation), abs=1e-7)
            pair += 1


def test_auc_by_hand():
    # max errors 0.5, 2.5, 40: fractions below 1..5° are 1/3, 1/3, 2/3, 2/3, 2/3 → mean 8/15.
    rotation_error = np.array([0.5, 0.1, 40.0])
    translation_error = np.array([0.2, 2.5, 3.0])
    assert pose_auc(rotation_error, translation_error, 5) == pytest.approx(8 / 15)
    # An error of exactly T falls in the last, closed bin (as numpy.histogram counts it).
    assert pose_auc(np.array([3.0]), np.array([0.0]), 3) == pytest.approx(1 / 3)
    assert pose_auc(np.array([np.nan, 0.0]), np.array([0.0, 0.0]), 3) == pytest.approx(0.5)


def test_rra_rta_thresholds_and_options():
    gt = np.stack([camera([0, 0, 0], np.eye(3)), camera([1, 0, 0], np.eye(3))])
    turn = Rotation.from_rotvec(np.radians(10.5) * np.array([0, 0, 1.0])).as_matrix()
    pred = np.stack([gt[0], camera([1, 0, 0], turn)])
    row = pose(pred, gt, thresholds=(5, 15))
    assert (row["rra5"], row["rra15"], row["rta5"]) == (0.0, 100.0, 100.0)
    assert row["auc15"] == pytest.approx(100 * 5 / 15)  # below 11°, …, 15°: 5 of 15 thresholds
    assert "auc30" not in row
    with pytest.raises(MetricInputError, match="thresholds"):
        pose(pred, gt, thresholds=(2.5,))


def test_nan_frames_fail_their_pairs_without_crashing():
    gt = orbit_extrinsics(5)
    pred = gt.copy()
    pred[2] = np.nan
    row = pose(pred, gt)
    assert row["pose_invalid_pairs"] == 4
    assert row["rra30"] == pytest.approx(100 * 6 / 10)
    assert row["auc30"] == pytest.approx(100 * 6 / 10)
    all_nan = pose(np.full_like(gt, np.nan), gt)
    assert all_nan["auc30"] == 0 and all_nan["rra5"] == 0


def test_coincident_cameras_count_as_failures():
    gt = np.stack([camera([0, 0, 0], np.eye(3)), camera([1, 0, 0], np.eye(3))])
    pred = np.stack([camera([0, 0, 0], np.eye(3)), camera([0, 0, 0], np.eye(3))])
    row = pose(pred, gt)
    assert row["pose_invalid_pairs"] == 1 and row["auc30"] == 0


def test_missing_or_malformed_input():
    gt = orbit_extrinsics(4)
    missing = METRICS.get("pose")({}, {"extrinsics": gt})
    assert np.isnan(missing["auc30"]) and "extrinsics" in missing["pose_note"]
    single = pose(gt[:1], gt[:1])
    assert np.isnan(single["rra5"]) and "at least 2" in single["pose_note"]
    with pytest.raises(MetricInputError, match=r"pred\['extrinsics'\]"):
        pose(gt[:3], gt)
    with pytest.raises(MetricInputError, match=r"gt\['extrinsics'\]"):
        pose(gt, gt[:, :, :3])


def test_a_thousand_frames_are_scored_in_one_vectorised_pass():
    gt = orbit_extrinsics(1000)
    rng = np.random.default_rng(0)
    pred = gt + rng.normal(scale=1e-3, size=gt.shape)
    row = pose(pred, gt)
    assert row["pose_invalid_pairs"] == 0
    assert 0 < row["auc30"] < 100


def test_look_at_builds_an_opencv_camera():
    extrinsics = look_at(np.zeros(3), np.array([1.0, 0, 0]))
    np.testing.assert_allclose(extrinsics[:, :3] @ np.array([1.0, 0, 0]), [0, 0, 1], atol=1e-12)  # forward is +z
    np.testing.assert_allclose(extrinsics[:, :3] @ np.array([0, 0, 1.0]), [0, -1, 0], atol=1e-12)  # world up is −y
