import inspect
import json
import math

import numpy as np
import pytest

from metrics import METRICS, column_key, direction, register_metric
from metrics.registry import Key, diagnostic, higher, raw
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


def test_rows_are_flat_json_and_every_key_is_declared(exact_oracle):
    pred, gt = exact_oracle
    for name in METRICS:
        metric = METRICS.get(name)
        row = metric(pred, gt)
        scalars = {key: value for key, value in row.items() if not isinstance(value, np.ndarray)}
        assert json.loads(json.dumps(scalars)) == scalars
        for key, value in row.items():
            declared = metric.key(key)
            assert declared is not None, (name, key)
            if isinstance(value, np.ndarray):
                assert declared.kind == "raw", (name, key)
            elif declared.kind == "value":
                assert isinstance(value, float) and declared.better in ("higher", "lower"), (name, key)
            elif declared.kind == "diagnostic":
                assert isinstance(value, float), (name, key)


def test_directions_are_read_from_the_declarations():
    assert direction("pose.auc30") == "higher" and direction("pose.auc3") == "higher" and direction("pose.rra10") == "higher"
    assert direction("trajectory.ate") == "lower" and direction("pointmap.chamfer") == "lower" and direction("pointmap.nc") == "higher"
    assert direction("depth.depth_align") is None and direction("pose.pose_note") is None
    assert direction("pointmap.pointmap_gt_voxels") is None  # a diagnostic: never compared
    assert column_key("pointmap.pointmap_gt_voxels").kind == "diagnostic"
    # Keys are anchored at their metric: no key matches by a prefix, nor under another metric.
    assert direction("pointmap.accuracy") is None and direction("pose.acc") is None and direction("pose.auc") is None
    assert column_key("nonesuch.acc") is None and column_key("acc") is None


def test_a_metric_that_returns_an_undeclared_key_fails():
    def sloppy(pred, gt):
        return {"score": 1.0, "extra": 2.0}

    register_metric("t_sloppy", keys=(higher("score"),))(sloppy)
    try:
        with pytest.raises(TypeError, match="undeclared keys \\['extra'\\]"):
            METRICS.get("t_sloppy")({}, {})
    finally:
        METRICS.unregister("t_sloppy")


def test_key_declarations():
    family = higher("rra{t}")
    assert family.matches("rra5") and family.matches("rra30") and not family.matches("rra") and not family.matches("rra5x")
    assert family.family == "rra" and diagnostic("count").kind == "diagnostic" and raw("errors").kind == "raw"
    with pytest.raises(ValueError, match="which way is better"):
        Key("score")  # a value without a direction
    with pytest.raises(ValueError, match="aggregate"):
        higher("score", aggregate="median")


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
