"""The CI regression gate: the committed smoke baseline passes against itself, and the gate fails
on a planted accuracy regression and on a baseline cell missing from the new run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner

from bench.cli import main
from bench.store import read_rows

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "results" / "baseline-smoke"


def gate(new: Path):
    return CliRunner().invoke(main, ["compare", str(BASELINE), str(new), "--format", "markdown"], catch_exceptions=False)


def copy_of_baseline(tmp_path: Path) -> tuple[Path, list[dict]]:
    new = tmp_path / "new"
    shutil.copytree(BASELINE, new)
    return new, [json.loads(line) for line in (new / "cells.jsonl").read_text().splitlines()]


def rewrite(folder: Path, rows: list[dict]) -> None:
    (folder / "cells.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_baseline_is_the_smoke_suite_and_passes_against_itself(tmp_path):
    rows = read_rows(BASELINE)
    assert {r["suite"] for r in rows} == {"smoke"} and len(rows) == 80 and all(r["status"] == "ok" for r in rows)
    assert any(not r["weights_random"] for r in rows), "the oracle rows are the ones whose accuracy the gate checks"
    result = gate(BASELINE)
    assert result.exit_code == 0 and "avggt-bench compare: ✅ pass" in result.output, result.output


def test_a_planted_accuracy_regression_fails_the_gate(tmp_path):
    new, rows = copy_of_baseline(tmp_path)
    victim = next(r for r in rows if r["model"] == "oracle-noisy")
    victim["pose.auc30"] -= 5.0
    rewrite(new, rows)
    result = gate(new)
    assert result.exit_code == 1 and "❌ FAIL" in result.output and "#### Regressions" in result.output
    assert f"| {victim['cell']} | pose.auc30" in result.output.replace("  ", " ")


def test_a_missing_baseline_cell_fails_the_gate(tmp_path):
    new, rows = copy_of_baseline(tmp_path)
    rewrite(new, rows[1:])
    result = gate(new)
    assert result.exit_code == 1 and "1 baseline cells are missing from the new results" in result.output
    assert rows[0]["cell"] in result.output


def test_ci_and_the_example_workflow_run_the_gate():
    ci = (REPO / ".ci" / "run").read_text()
    assert "avggt-bench run suites/smoke.yaml" in ci and "avggt-bench compare results/baseline-smoke" in ci
    workflow = yaml.safe_load((REPO / "examples" / "ci" / "regression-gate.yml").read_text())
    steps = " ".join(step.get("run", "") for step in workflow["jobs"]["gate"]["steps"])
    assert "python -m pytest -q" in steps and "avggt-bench compare results/baseline-smoke" in steps and "--format markdown" in steps
