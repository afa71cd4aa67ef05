import inspect
import json
import math

import numpy as np
import pytest

from metrics import METRIC_DIRECTIONS, METRICS, direction
from tests.metrics_scene import box_room
from tests.test_metrics_pointmap import gt_world_points


@pytest.fixture(scope="module")
def exact_oracle():
    """A prediction equal to the ground truth of a synthetic scene, as the oracle model gives it."""
    gt = box_room(frames=8, height=24, width=32)
    pred = {
        "extrinsics": gt["extrinsics"].copy(),
        "intrinsics": gt["intrinsics"].copy(),
        "depth": gt["depth"].astype(np.float32),
        "depth_conf": np.ones(gt["depth"].shape, dtype=np.float32),
        "world_points": gt_world_points(gt).astype(np.float32),
        "world_points_conf": np.ones(gt["depth"].shape, dtype=np.float32),
    }
    return pred, gt


def test_the_four_metrics_are_registered_with_help():
    assert METRICS.names() == ["pose", "trajectory", "depth", "pointmap"]
    for name in METRICS:
        assert METRICS.help(name)
        assert list(inspect.signature(METRICS.get(name)).parameters)[:2] == ["pred", "gt"]


def test_exact_oracle_scores_perfectly_on_every_metric(exact_oracle):
    pred, gt = exact_oracle
    rows = {name: METRICS.get(name)(pred, gt) for name in METRICS}
    assert rows["pose"]["auc30"] == pytest.approx(100.0)
    assert rows["trajectory"]["ate"] == pytest.approx(0.0, abs=1e-9)
    assert rows["depth"]["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert rows["pointmap"]["acc"] == pytest.approx(0.0, abs=1e-6)
    assert rows["pointmap"]["comp"] == pytest.approx(0.0, abs=1e-6)
    assert rows["pointmap"]["nc"] == pytest.approx(1.0, abs=1e-9)
    assert not any(key.endswith("_note") for row in rows.values() for key in row)


def test_rows_are_flat_json_and_every_numeric_metric_has_a_direction(exact_oracle):
    pred, gt = exact_oracle
    options_and_counts = {"depth_max_depth", "pointmap_icp_threshold", "pointmap_voxel_size", "pointmap_max_points", "pointmap_pred_voxels", "pointmap_gt_voxels"}
    for name in METRICS:
        row = METRICS.get(name)(pred, gt)
        assert json.loads(json.dumps(row)) == row
        for key, value in row.items():
            assert value is None or isinstance(value, (int, float, str)), (name, key)
            if isinstance(value, (int, float)) and key not in options_and_counts:
                assert direction(key) in ("higher", "lower"), key


def test_directions():
    assert METRIC_DIRECTIONS["auc30"] == "higher" and METRIC_DIRECTIONS["ate"] == "lower"
    assert direction("auc3") == "higher" and direction("rra10") == "higher"
    assert direction("chamfer") == "lower" and direction("nc") == "higher"
    assert direction("depth_align") is None and direction("pose_note") is None


def test_noise_degrades_every_metric(exact_oracle):
    pred, gt = exact_oracle
    rng = np.random.default_rng(0)
    noisy = dict(pred)
    noisy["extrinsics"] = pred["extrinsics"] + rng.normal(scale=0.02, size=pred["extrinsics"].shape)
    noisy["depth"] = pred["depth"] * np.exp(rng.normal(scale=0.05, size=pred["depth"].shape))
    noisy["world_points"] = pred["world_points"] + rng.normal(scale=0.02, size=pred["world_points"].shape)
    rows = {name: METRICS.get(name)(noisy, gt) for name in METRICS}
    assert rows["pose"]["auc30"] < 100
    assert rows["trajectory"]["ate"] > 1e-3
    assert rows["depth"]["abs_rel"] > 1e-3
    assert rows["pointmap"]["acc"] > 1e-3 and rows["pointmap"]["nc"] < 1
    assert all(math.isfinite(value) for row in rows.values() for value in row.values() if isinstance(value, float))
