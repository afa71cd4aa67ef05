"""The leaderboard across results sets: one table per benchmark and GPU, newest result per model
and method, CPU rows only on request, random weights only in the timing section, the Pareto
front marked; Markdown, LaTeX and a self-contained HTML page; and the plots it embeds."""

from __future__ import annotations

import json
import re

import pandas as pd
from click.testing import CliRunner
from test_report import row

from bench.cli import main
from bench.leaderboard import BLOCK_SPARSE_NOTE, PARETO, board_rows, pareto, render, result_sets, write_leaderboard
from bench.plots import write_plots
from bench.store import ResultStore


def gpu_set(root, name, gpu, rows, when="2026-11-29T10:00:00+00:00", commit="abc1234def"):
    """A results set measured on `gpu` (None: a CPU) at `when`."""
    store = ResultStore(root / name)
    store.open()
    env = {"gpu": gpu, "cpu": "Test CPU", "git_commit": commit, "git_dirty": False}
    (store.env).write_text(json.dumps({"e1": env}))
    for r in rows:
        store.append({"suite": "t", "env_id": "e1", "recorded_at": when, **r})
    return store.directory


def test_one_table_per_benchmark_and_gpu_newest_result_wins(tmp_path):
    gpu_set(tmp_path, "old", "H200", [row("dense", time=2.0), row("fast", time=1.0, auc=0.5)], when="2026-11-28T10:00:00+00:00")
    gpu_set(tmp_path, "new", "H200", [row("dense", time=2.0), row("fast", time=0.5, auc=0.8)])
    gpu_set(tmp_path, "h100", "H100", [row("dense", time=3.0), row("fast", time=1.0)])
    gpu_set(tmp_path, "laptop", None, [row("dense", time=30.0), row("fast", time=1.0)])
    board = board_rows(result_sets([tmp_path]))
    assert sorted(set(zip(board["gpu"], board["set"]))) == [("H100", "h100"), ("H200", "new")]  # old superseded, CPU left out
    text = render(board, "md")
    assert "### d · 8 frames · H200" in text and "### d · 8 frames · H100" in text and "CPU" not in text
    h200 = text.split("### d · 8 frames · H200")[1].split("###")[0]
    assert "| new " in h200 and "| old " not in h200 and "| h100 " not in h200  # never ranked across GPUs
    assert "CPU (Test CPU)" in render(board_rows(result_sets([tmp_path]), include_cpu=True), "md")


def test_random_weights_are_timing_only_and_block_sparse_rows_say_why(tmp_path):
    sparse = {**row("sparse", time=1.0, weights_random=True), "plan": {"layers": [{"layers": "0-23", "operator": "block_sparse"}]}}
    gpu_set(tmp_path, "rand", "H200", [row("dense", time=2.0, weights_random=True), sparse])
    text = render(board_rows(result_sets([tmp_path])), "md")
    assert "## Accuracy and speed" not in text and "## Timing only (random weights)" in text
    timing = text.split("## Timing only (random weights)")[1]
    assert "pose.auc30" not in timing and BLOCK_SPARSE_NOTE in timing


def test_the_pareto_front_is_marked():
    times = pd.Series([1.0, 2.0, 3.0, 0.5, float("nan")])
    accuracy = pd.Series([0.8, 0.9, 0.85, 0.1, 0.99])
    assert pareto(times, accuracy, "higher").tolist() == [True, True, False, True, False]
    assert pareto(times, accuracy, "lower").tolist() == [False, False, False, True, False]
    assert pareto(times, accuracy, None).tolist() == [False] * 5  # no direction, no front


def test_formats_latex_booktabs_and_a_self_contained_page(tmp_path):
    gpu_set(tmp_path, "set", "H200", [row("dense", frames=f, time=f / 4) for f in (8, 32)] + [row("fast", frames=f, time=f / 16, auc=0.8) for f in (8, 32)])
    board = board_rows(result_sets([tmp_path]))
    text = render(board, "md")
    assert PARETO in text.split("### d · 8 frames · H200")[1].split("\n| m ")[1]  # the fast row: faster, and only it
    latex = render(board, "latex")
    assert latex.count("\\begin{table}") == 2 and "\\toprule" in latex and "\\caption{d -- 8 frames -- H200}" in latex
    page = render(board, "html")
    assert page.startswith("<!doctype html>") and "Content-Security-Policy" in page and "default-src 'none'" in page
    assert page.count("<table") == 2 and page.count("data:image/png;base64,") >= 3  # time, speedup, accuracy vs time
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page) and "@import" not in page and "fetch(" not in page


def test_the_command_writes_each_format_and_refuses_a_missing_out(tmp_path):
    directory = gpu_set(tmp_path, "set", "H200", [row("dense", time=2.0), row("fast", time=1.0)])
    runner = CliRunner()
    for fmt, suffix in (("md", "md"), ("latex", "tex"), ("html", "html")):
        result = runner.invoke(main, ["leaderboard", str(tmp_path), "--format", fmt])
        assert result.exit_code == 0 and (tmp_path / f"leaderboard.{suffix}").is_file(), result.output
    result = runner.invoke(main, ["leaderboard", str(directory)])
    assert result.exit_code == 1 and "give --out" in result.output
    assert not (tmp_path / "report.md").exists()


def test_plots_have_a_grid_and_skip_random_weight_accuracy(tmp_path):
    rows = [row(m, frames=f, time=f / k, model=model, weights_random=model == "r") for model in ("m", "r") for m, k in (("dense", 4), ("fast", 16)) for f in (8, 32)]
    directory = gpu_set(tmp_path, "set", "H200", rows)
    written = write_plots(directory)
    assert sorted(p.name for p in written) == ["accuracy_vs_time_m_d.png", "speedup_d.png", "time_s_d.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_a_report_says_where_when_and_with_which_weights(tmp_path):
    from bench.report import write_report

    directory = gpu_set(tmp_path, "set", "H200", [row("dense", time=2.0), row("fast", time=1.0, model="r", weights_random=True)])
    text, _ = write_report(directory)
    assert text.splitlines()[0] == "Measured on H200 at commit abc1234, 2026-11-29 – 2026-11-29; random weights for r (timing only)."
