"""Reports: speedup arithmetic against the dense row of the same inputs, tables, exports, plots."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.report import TIMING_ONLY, add_speedup, export_parquet, load_results, render, summary_rows, sweep_tables, tables
from bench.store import ResultStore


def row(method="dense", scene="s1", frames=8, time=2.0, status="ok", dense=None, name=None, model="m", weights_random=False, auc=0.9):
    ok = status == "ok"
    return {
        "id": f"{model}/{method}/{scene}/{frames}",
        "inputs_id": f"{model}/{scene}/{frames}",
        "cell": f"{model}/{method}/d/{scene}/{frames}",
        "status": status,
        "message": None if ok else "out of memory",
        "model": model,
        "weights": "random" if weights_random else "w.pt",
        "weights_random": weights_random,
        "method": method,
        "method_name": name or method,
        "method_dense": (method == "dense") if dense is None else dense,
        "dataset": "d",
        "scene": scene,
        "frames": frames,
        "metrics": ["pose"],
        **({"time_median_s": time, "peak_mem_gib": 1.5, "pose.auc30": auc} if ok else {}),
    }


def results(tmp_path, rows, name="set"):
    store = ResultStore(tmp_path / name)
    store.open()
    for r in rows:
        store.append(r)
    return store.directory


def test_speedup_is_dense_time_over_method_time_per_scene(tmp_path):
    df = load_results(results(tmp_path, [
        row("dense", "s1", time=2.0), row("fast", "s1", time=0.5),
        row("dense", "s2", time=3.0), row("fast", "s2", time=3.0),
        row("dense", "s1", frames=32, time=10.0), row("fast", "s1", frames=32, time=1.0),
    ]))  # fmt: skip
    assert df.set_index("id")["speedup"].to_dict() == {
        "m/dense/s1/8": 1.0, "m/fast/s1/8": 4.0, "m/dense/s2/8": 1.0, "m/fast/s2/8": 1.0, "m/dense/s1/32": 1.0, "m/fast/s1/32": 10.0,
    }  # fmt: skip
    summary = summary_rows(df).set_index(["frames", "method"])
    assert summary.loc[(8, "fast"), "speedup"] == pytest.approx(2.0)  # geometric mean of 4 and 1
    assert summary.loc[(8, "fast"), "time_s"] == pytest.approx(1.75)  # mean of the scenes' medians
    assert summary.loc[(32, "fast"), "speedup"] == pytest.approx(10.0)
    assert summary.loc[(8, "dense"), "scenes"] == "2/2" and summary.loc[(8, "fast"), "pose.auc30"] == pytest.approx(0.9)


def test_the_method_named_dense_is_the_baseline_among_dense_plans():
    df = add_speedup(pd.DataFrame([row("vggt", dense=True, time=4.0), row("dense", time=2.0), row("g2f", dense=False, time=1.0)]))
    assert df["speedup"].tolist() == [0.5, 1.0, 2.0]


def test_no_measured_dense_row_means_no_speedup():
    df = add_speedup(pd.DataFrame([row("dense", status="oom"), row("fast", time=1.0), row("fast", scene="s2", time=1.0)]))
    assert df["speedup"].isna().all()
    other_model = add_speedup(pd.DataFrame([row("dense", model="a", time=2.0), row("fast", model="b", time=1.0)]))
    assert math.isnan(other_model["speedup"].iloc[1])  # never against another model's dense row


def test_tables_per_group_with_a_speedup_column_and_notes(tmp_path):
    df = load_results(results(tmp_path, [
        row("dense", "s1", time=2.0), row("fast", "s1", time=1.0),
        row("dense", "s2", time=2.0), row("fast", "s2", status="oom"),
        row("dense", model="r", weights_random=True, time=1.0, auc=0.1),
    ]))  # fmt: skip
    titled = tables(df)
    assert [title for title, _ in titled] == ["m (w.pt) · d · 8 frames", "r (random) · d · 8 frames"]
    fast = titled[0][1].set_index("method").loc["fast"]
    assert fast["scenes"] == "1/2" and fast["speedup"] == 2.0 and fast["note"] == "oom in 1 of 2 scenes; not comparable with dense: averages 1 of its 2 scenes"
    random_row = titled[1][1].iloc[0]
    assert random_row["note"] == TIMING_ONLY and random_row["pose.auc30"] == pytest.approx(0.1)  # shown, marked
    md = render(df, "md")
    assert "## m (w.pt) · d · 8 frames" in md and "| method" in md and "speedup" in md and TIMING_ONLY in md
    assert "\\toprule" in render(df, "latex")
    csv = render(df, "csv").splitlines()
    assert csv[0].startswith("model,dataset,frames,method,weights,weights_random,scenes,pose.auc30,time_s,peak_gib,speedup,note")
    assert len(csv) == 4


def test_parquet_export_holds_every_row(tmp_path):
    rows = [row("dense", time=2.0), row("fast", time=1.0), row("fast", scene="s2", status="oom")]
    rows[0]["plan"] = {"operator": "dense"}
    rows[1]["plan"] = {"operator": "frame", "layers": [0, 1]}
    rows[2]["frames"] = "all"
    path = export_parquet(results(tmp_path, rows))
    back = pd.read_parquet(path)
    assert len(back) == 3 and back["speedup"].iloc[1] == 2.0
    assert back["plan"].iloc[1] == '{"layers": [0, 1], "operator": "frame"}'
    assert back["frames"].tolist() == ["8", "8", '"all"']  # a column of mixed types is stored as JSON text


def test_tables_keep_models_in_run_order_and_frame_counts_ascending(tmp_path):
    df = load_results(results(tmp_path, [
        row("dense", model="second", frames=100), row("dense", model="first", frames=800),
        row("dense", model="second", frames=2), row("dense", model="second", frames="all"),
        row("dense", model="first", frames=8), row("dense", model="second", frames=8),
    ]))  # fmt: skip
    titles = [title.split(" (")[0] + " " + title.split("· ")[-1] for title, _ in tables(df)]
    assert titles == ["second 2 frames", "second 8 frames", "second 100 frames", "second all frames", "first 8 frames", "first 800 frames"]


def test_sweep_tables_put_methods_against_frame_counts(tmp_path):
    df = load_results(results(tmp_path, [
        row("dense", frames=100, time=4.0), row("fast", frames=100, time=2.0),
        row("dense", frames=8, time=1.0), row("fast", frames=8, time=2.0), row("fast", frames=1000, time=9.0),
        row("dense", model="once", frames=8), row("dense", frames="all"),
    ]))  # fmt: skip
    swept = dict(sweep_tables(df))
    assert list(swept) == [f"m (w.pt) · d · {label} by frame count" for label in ("median time (s)", "speedup vs dense", "peak memory (GiB)")]
    speedup = swept["m (w.pt) · d · speedup vs dense by frame count"].set_index("method")
    assert list(speedup.columns) == ["8 frames", "100 frames", "1000 frames"]  # ascending; "all" is no frame count
    assert speedup.loc["fast", "8 frames"] == pytest.approx(0.5) and speedup.loc["fast", "100 frames"] == pytest.approx(2.0)
    assert math.isnan(speedup.loc["fast", "1000 frames"]) and math.isnan(speedup.loc["dense", "1000 frames"])  # no dense row there
    assert swept["m (w.pt) · d · median time (s) by frame count"].set_index("method").loc["fast", "1000 frames"] == pytest.approx(9.0)
    report = render(df)
    assert report.index("speedup vs dense by frame count") < report.index("## m (w.pt) · d · 8 frames")  # the sweep comes first
    assert "nan" not in report and "| dense    |" in report


def test_metric_keys_aggregate_over_scenes_as_their_metric_declares(tmp_path):
    rows = [dict(row("dense", s, auc=a), metrics=["pose"], **{"pose.pose_invalid_pairs": n}) for s, a, n in (("s1", 80.0, 2.0), ("s2", 90.0, 3.0))]
    summary = summary_rows(load_results(results(tmp_path, rows))).iloc[0]
    assert summary["pose.auc30"] == pytest.approx(85.0) and summary["pose.pose_invalid_pairs"] == 5.0  # a mean, a sum
