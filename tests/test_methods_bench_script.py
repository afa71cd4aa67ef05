"""The operator micro-benchmark runs end to end on the CPU at toy size."""

from __future__ import annotations

import json

from click.testing import CliRunner

from scripts import bench_operators as script


def test_bench_operators_toy_run_on_cpu(tmp_path):
    args = ["--out", str(tmp_path), "--frames", "2,3", "--device", "cpu", "--heads", "2", "--head-dim", "32",
            "--grid", "9x11", "--warmup", "0", "--repeats", "1"]
    result = CliRunner().invoke(script.main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "operators.json").read_text())
    assert report["kernel"] in ("flash", "math") and report["config"]["tokens_per_frame"] == 104
    labels = [label for label, _, _ in script.CONFIGS]
    for frames in (2, 3):
        rows = [row for row in report["results"] if row["frames"] == frames]
        assert {row["operator"] for row in rows} == {"dense", *labels}
        assert all(row["status"] == "ok" and row["tokens"] == frames * 104 for row in rows)
        chosen = next(row for row in rows if row["operator"] == "dense" and row["kernel"] == report["kernel"])
        assert chosen["speedup_vs_dense"] == 1.0
        assert chosen["tflops"] == script.dense_flops(script.Layout(frames, 104, 5, (9, 11), 0), 2, 32) / chosen["median_s"] / 1e12
    assert all(check["ok"] for check in report["checks"]) and len(report["checks"]) == len(labels) + 1
    assert report["environment"]["git_commit"] and report["environment"]["device"] == "cpu"  # traceable like a results row
    table = (tmp_path / "operators.md").read_text()
    assert "Measured on CPU" in table and "commit" in table
    assert "| 3 | 312 | merge 0.9 |" in table and "blocks kept" in table


def test_dense_flops_count_two_products_per_head():
    layout = script.Layout(2, 10, 1, (3, 3), 0)
    assert script.dense_flops(layout, heads=4, head_dim=8) == 4 * 20**2 * 8 * 4
