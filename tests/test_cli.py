"""The command line end to end on a tiny suite: run, report, compare, and the small commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import tiny_suite, write_suite

import bench.runner
from bench.cli import main
from bench.methods import METHODS, MethodNotApplicable
from bench.store import read_rows


@pytest.fixture
def suite_file(tmp_path, fake_metrics, frame_method):
    return write_suite(tmp_path, tiny_suite(methods=["dense", "t_frame"]))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_run_report_compare(tmp_path, suite_file):
    out = tmp_path / "results" / "tiny"
    result = invoke("run", suite_file, "--out", out)
    assert result.exit_code == 0, result.output
    assert "16 cells: 0 already done, recorded 16 ok" in result.output
    assert len((out / "cells.jsonl").read_text().splitlines()) == 16 and (out / "env.json").is_file()

    result = invoke("report", out, "--plot")
    assert result.exit_code == 0, result.output
    assert "## oracle (none) · synthetic · speedup vs dense by frame count" in result.output  # the sweep opens the report
    assert "## oracle (none) · synthetic · 3 frames" in result.output
    header = next(line for line in result.output.splitlines() if line.startswith("| method") and "scenes" in line)
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "method", "scenes", "t_pose.rot_err_max", "t_pose.centre_err_max", "t_depth.abs_rel", "time_s", "speedup", "note",
    ]  # fmt: skip
    for name in ("report.md", "rows.parquet", "plots/time_s_synthetic.png"):
        assert (out / name).is_file()
    assert not (tmp_path / "results" / "leaderboard.md").exists(), "report writes only inside its results folder"
    board = invoke("leaderboard", tmp_path / "results", "--include-cpu", "--out", tmp_path / "board.md")
    assert board.exit_code == 0 and "### synthetic · 3 frames · CPU (" in (tmp_path / "board.md").read_text()

    tolerances = tmp_path / "tol.yaml"
    tolerances.write_text("speedup: {rel: 100}\nmetrics:\n  t_pose: {rot_err_max: {abs: 0.01}, centre_err_max: {abs: 0.01}}\n  t_depth: {abs_rel: {abs: 0.01}}\n")
    same = invoke("compare", out, out, "--tolerances", tolerances)
    assert same.exit_code == 0 and "no differences in 16 matched cells" in same.output

    rows = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    rows[5]["t_depth.abs_rel"] += 0.5  # a planted accuracy regression
    planted = tmp_path / "planted.jsonl"
    planted.write_text("".join(json.dumps(r) + "\n" for r in rows))
    worse = invoke("compare", out, planted, "--tolerances", tolerances)
    assert worse.exit_code == 1
    assert f"| {rows[5]['cell']}" in worse.output and "REGRESSION" in worse.output and "1 regressions" in worse.output


def test_rerun_skips_and_fresh_measures_the_selection_again(tmp_path, suite_file, monkeypatch):
    out = tmp_path / "out"
    assert invoke("run", suite_file, "--out", out, "--only", "oracle/*/orbit/3").exit_code == 0
    dry = invoke("run", suite_file, "--out", out, "--dry-run")
    assert dry.exit_code == 0
    assert "done  oracle/dense/synthetic/orbit/3" in dry.output and "todo  oracle/dense/synthetic/orbit/6" in dry.output
    assert "16 cells, 2 already in" in dry.output
    written = {name: (out / name).read_bytes() for name in ("cells.jsonl", "env.json")}
    with monkeypatch.context() as patch:
        patch.setattr(bench.runner, "fingerprint", lambda device: {"git_commit": "a later commit", "device": device})
        again = invoke("run", suite_file, "--out", out, "--only", "oracle/*/orbit/3")
    assert "2 cells: 2 already done, recorded nothing new" in again.output
    assert {name: (out / name).read_bytes() for name in written} == written  # nothing to do: the folder is left as it was
    fresh = invoke("run", suite_file, "--out", out, "--only", "oracle/*/orbit/3", "--fresh")
    assert "recorded 2 ok" in fresh.output and len((out / "cells.jsonl").read_text().splitlines()) == 4
    assert len(read_rows(out)) == 2  # the newer rows supersede the older, which stay in the file


def test_interrupted_run_says_how_to_resume(tmp_path, suite_file, monkeypatch):
    import bench.runner

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench.runner, "measure", interrupt)
    result = invoke("run", suite_file, "--out", tmp_path / "out")
    assert result.exit_code == 130 and "Run the same command again to resume" in result.output


def test_errors_are_one_clear_message(tmp_path, suite_file):
    bad = write_suite(tmp_path, tiny_suite(methods=["dense", "avgt"]), name="bad.yaml")
    for command in ("run", "validate"):
        result = invoke(command, bad)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"Error: {bad}: methods[1].name: unknown method 'avgt'" in result.output
    assert "no cell id matches nothing/*" in invoke("run", suite_file, "--only", "nothing/*").output
    assert "unknown device 'tpu'" in invoke("run", suite_file, "--device", "tpu").output
    assert "no results here" in invoke("report", tmp_path).output


def test_validate_list_and_help(suite_file):
    result = invoke("validate", suite_file)
    assert result.exit_code == 0 and "valid; 16 cells from 2 models × 2 methods × 1 datasets" in result.output
    listed = invoke("list", "models").output
    assert "oracle" in listed and "ground truth" in listed
    assert "options: rotation_noise_deg=0.0, translation_noise=0.0, depth_noise=0.0, seed=0" in listed
    assert "options: seed=0, head_frames_per_chunk=8, token_chunk_frames=128, compile=False" in listed  # the suite `options:` a user can set
    assert "t_pose" in invoke("list", "metrics").output
    assert "synthetic" in invoke("list", "datasets").output
    for command in ("run", "report", "compare", "list", "validate"):
        assert invoke(command, "--help").exit_code == 0


def test_dry_run_says_which_methods_are_skipped(tmp_path, fake_metrics, register):
    def vggt_only(traits, **params):
        raise MethodNotApplicable(f"needs a VGGT model, not {traits.family}")

    register(METHODS, "t_vggt_only", vggt_only)
    suite = write_suite(tmp_path, tiny_suite(methods=["dense", "t_vggt_only"]))
    result = invoke("run", suite, "--out", tmp_path / "out", "--dry-run")
    assert result.exit_code == 0 and "oracle × t_vggt_only: skipped, needs a VGGT model, not oracle" in result.output
    assert "8 cells, 0 already in" in result.output and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_smoke_suite_scores_the_exact_oracle_perfectly(tmp_path):
    """The shipped smoke suite with the real pose and depth metrics, as the README runs it."""
    smoke = Path(__file__).resolve().parents[1] / "suites" / "smoke.yaml"
    out = tmp_path / "results" / "smoke"
    result = invoke("run", smoke, "--out", out)
    assert result.exit_code == 0 and "recorded 80 ok" in result.output, result.output
    rows = read_rows(out)
    assert {r["model"] for r in rows} == {"oracle", "oracle-noisy", "vggt-tiny", "pi3-tiny"}
    for r in rows:
        scores = [v for k, v in r.items() if k.startswith(("pose.rra", "pose.rta", "pose.auc"))]
        assert scores, sorted(r)
        if r["model"] == "oracle":  # no noise: every score perfect (percent), no depth error
            assert all(v == pytest.approx(100.0) for v in scores) and r["depth.abs_rel"] == pytest.approx(0.0, abs=1e-7)
        elif r["model"] == "oracle-noisy":
            assert min(scores) < 100.0 and r["depth.abs_rel"] > 0.01
        else:  # random weights: scored, flagged timing-only
            assert r["weights_random"] and r["plan"]["family"] in ("vggt", "pi3")
            if r["method"] == "sparse-vggt-50":  # at least the preset's half of the key blocks ran
                assert 0.5 <= r["plan"]["observed"]["key_blocks_kept"] <= 1.0
            else:
                assert "observed" not in r["plan"]
    report = invoke("report", out)
    header = next(line for line in report.output.splitlines() if line.startswith("| method") and "scenes" in line)
    assert report.exit_code == 0 and "speedup" in header


def test_run_leaves_cells_expected_to_overrun_for_the_next_run(tmp_path, suite_file):
    earlier, out = tmp_path / "earlier", tmp_path / "out"
    assert invoke("run", suite_file, "--out", earlier).exit_code == 0
    lonely = invoke("run", suite_file, "--out", out, "--expect-from", earlier)
    assert lonely.exit_code == 2 and "--expect-from only matters with --time-limit" in lonely.output
    lines = (earlier / "cells.jsonl").read_text().splitlines()
    slow = json.loads(lines[0])
    slow["time_median_s"] = 1e6
    (earlier / "cells.jsonl").write_text("\n".join([json.dumps(slow)] + lines[1:]) + "\n")
    result = invoke("run", suite_file, "--out", out, "--time-limit", 3600, "--expect-from", earlier)
    assert result.exit_code == 0 and "Time limit reached: 1 cells left" in result.output
    assert slow["id"] not in {r["id"] for r in read_rows(out)}
