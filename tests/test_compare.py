"""Regression checks: identical results pass, a planted regression fails, tolerances hold."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_report import row

from bench.compare import CHANGED, IMPROVED, REGRESSION, UNCHECKED, WITHIN, Tolerance, ToleranceError, compare, load_tolerances


def frame(*rows):
    return pd.DataFrame(list(rows))


BASELINE = [row("dense", time=2.0, auc=80.0), row("fast", time=0.5, auc=78.0)]  # fast: 4× speedup; AUC in percent


def with_changes(index, **changes):
    rows = [dict(r) for r in BASELINE]
    rows[index].update(changes)
    return frame(*rows)


def test_identical_results_pass():
    result = compare(frame(*BASELINE), frame(*BASELINE), load_tolerances())
    assert result.failures() == [] and result.matched == 2 and len(result.diffs) == 0


def test_accuracy_drop_beyond_tolerance_is_a_regression():
    result = compare(frame(*BASELINE), with_changes(1, **{"pose.auc30": 70.0}), load_tolerances())
    assert result.failures() != [] and result.regressions == 1
    diff = result.diffs.iloc[0]
    assert (diff["cell"], diff["quantity"], diff["verdict"]) == ("m/fast/d/s1/8", "pose.auc30", REGRESSION)
    assert diff["change"] == pytest.approx(-8.0) and diff["allowed"] == pytest.approx(0.78)  # max(0.1, 1 % of 78)


def test_small_moves_and_improvements_pass():
    within = compare(frame(*BASELINE), with_changes(1, **{"pose.auc30": 77.5}), load_tolerances())
    assert within.failures() == [] and within.diffs["verdict"].tolist() == [WITHIN]
    better = compare(frame(*BASELINE), with_changes(1, **{"pose.auc30": 95.0}), load_tolerances())
    assert better.failures() == [] and better.diffs["verdict"].tolist() == [IMPROVED]


def test_lower_is_better_metrics_regress_upwards():
    tol = load_tolerances().for_metric("depth.abs_rel")
    assert tol == Tolerance("lower", 0.001, 0.02)
    base, new = dict(BASELINE[1], **{"depth.abs_rel": 0.050}), dict(BASELINE[1], **{"depth.abs_rel": 0.060})
    base["metrics"] = new["metrics"] = ["pose", "depth"]
    assert compare(frame(BASELINE[0], base), frame(BASELINE[0], new), load_tolerances()).failures() != []
    assert compare(frame(BASELINE[0], new), frame(BASELINE[0], base), load_tolerances()).failures() == []


def test_speedup_drop_beyond_tolerance_is_a_regression():
    slower = compare(frame(*BASELINE), with_changes(1, time_median_s=0.6), load_tolerances())  # 4× → 3.33×
    assert slower.failures() != [] and slower.diffs.set_index("quantity").loc["speedup", "verdict"] == REGRESSION
    jitter = compare(frame(*BASELINE), with_changes(1, time_median_s=0.52), load_tolerances())  # 4× → 3.85×
    assert jitter.failures() == []


def test_a_cell_that_now_fails_or_loses_a_metric_is_a_regression():
    oom = with_changes(1, status="oom")
    assert compare(frame(*BASELINE), oom, load_tolerances()).diffs["verdict"].tolist() == [REGRESSION]
    assert compare(oom, frame(*BASELINE), load_tolerances()).diffs["verdict"].tolist() == [IMPROVED]
    error = with_changes(1, status="error")
    assert compare(oom, error, load_tolerances()).diffs["verdict"].tolist() == [CHANGED]  # not measured before either
    nan = compare(frame(*BASELINE), with_changes(1, **{"pose.auc30": float("nan")}), load_tolerances())
    assert nan.failures() != []


def test_random_weight_accuracy_is_not_checked_and_unknown_metrics_are_listed():
    base = [dict(r, weights_random=True) for r in BASELINE]
    new = [dict(r) for r in base]
    new[1]["pose.auc30"] = 10.0
    assert compare(frame(*base), frame(*new), load_tolerances()).failures() == []
    base = [dict(r, metrics=["mystery"], **{"mystery.score": 1.0}) for r in BASELINE]
    new = [dict(r) for r in base]
    new[1]["mystery.score"] = 5.0
    result = compare(frame(*base), frame(*new), load_tolerances())
    assert result.failures() == [] and result.unchecked == ["mystery.score"] and result.diffs["verdict"].tolist() == [UNCHECKED]


def test_missing_and_new_cells_are_reported():
    result = compare(frame(*BASELINE), frame(BASELINE[0], row("other", time=1.0)), load_tolerances())
    assert result.missing == ["m/fast/d/s1/8"] and result.added == ["m/other/d/s1/8"]
    assert result.failures() == ["1 baseline cells are missing from the new results (--allow-missing accepts a partial run)"]
    assert result.failures(allow_missing=True) == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("metrics: {mystery: {x: {better: up}}}", "metrics.mystery.x.better: 'up'; allowed: higher, lower"),
        ("metrics: {mystery: {x: {abs: 0.1}}}", "metrics.mystery.x.better: None; allowed: higher, lower"),
        ("metrics: {pose: {auc: {better: higher}}}", "metrics.pose.auc: expected a mapping with keys abs, rel"),
        ("metrics: {pointmap: {accuracy: {abs: 0.1}}}", "metrics.pointmap.accuracy: pointmap key 'accuracy' is not one of its values; allowed: acc,"),
        ("metrics: {pointmap: {pointmap_gt_voxels: {abs: 1}}}", "key 'pointmap_gt_voxels' is a diagnostic, never compared"),
        ("metrics: [{match: '*.acc*'}]", "metrics: expected a mapping of metric names"),
        ("speedup: {rel: -1}", "speedup.rel: -1; allowed: a number >= 0"),
        ("speed: {rel: 0.1}", "expected a mapping with keys metrics, speedup"),
    ],
)
def test_bad_tolerance_files(tmp_path, text, message):
    path = tmp_path / "tol.yaml"
    path.write_text(text)
    with pytest.raises(ToleranceError, match=re.escape(message)):
        load_tolerances(path)


def test_tolerances_are_anchored_at_the_metric_and_its_declared_keys():
    shipped = load_tolerances()
    assert shipped.for_metric("pose.auc30").better == "higher" and shipped.for_metric("depth.abs_rel").better == "lower"
    assert shipped.for_metric("pose.rra3") == Tolerance("higher", 0.1, 0.01)  # the rra family, any threshold
    assert shipped.for_metric("pointmap.accuracy") is None  # no prefix match: not a declared key
    assert shipped.for_metric("pointmap.pointmap_gt_voxels") is None  # diagnostics are never compared
    assert shipped.for_metric("depth.acc") is None  # a key of another metric


def test_a_plug_in_metric_says_which_way_is_better(tmp_path):
    base = [dict(r, metrics=["mystery"], **{"mystery.score": 1.0}) for r in BASELINE]
    new = [dict(r) for r in base]
    new[1]["mystery.score"] = 0.5
    said = tmp_path / "said.yaml"
    said.write_text("metrics: {mystery: {score: {better: higher, abs: 0.1}}}")
    assert compare(frame(*base), frame(*new), load_tolerances(said)).diffs["verdict"].tolist() == [REGRESSION]


def test_speedups_measured_on_a_cpu_are_not_compared():
    base = [dict(r, device="cpu") for r in BASELINE]
    slower = [dict(r) for r in base]
    slower[1] = dict(slower[1], time_median_s=2.0)  # 4× → 1×: noise on a busy CPU, a regression on a GPU
    result = compare(frame(*base), frame(*slower), load_tolerances())
    assert result.failures() == [] and result.cpu_timings == 2 and len(result.diffs) == 0
    on_gpu = compare(frame(*[dict(r, device="cuda") for r in base]), frame(*[dict(r, device="cuda") for r in slower]), load_tolerances())
    assert on_gpu.failures() != [] and on_gpu.cpu_timings == 0
