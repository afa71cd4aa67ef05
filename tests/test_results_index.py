"""The results index: sets, what supersedes what, archiving, and the committed INDEX.md and README
speed table kept in step with the committed results."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import tiny_suite, write_suite

from bench.cli import main
from bench.results_index import ARCHIVE, BEGIN, END, discover, render_index, rewrite_readme, speed_tables
from bench.store import ResultsError

REPO = Path(__file__).resolve().parent.parent


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_a_newer_set_supersedes_the_cells_it_measures_again(tmp_path, fake_metrics):
    suite = write_suite(tmp_path, tiny_suite())
    root = tmp_path / "results"
    assert invoke("run", suite, "--out", root / "first").exit_code == 0
    time.sleep(1.1)  # rows record the second they were measured in: the second set is the newer
    assert invoke("run", suite, "--out", root / "second", "--only", "oracle/*").exit_code == 0
    status = {s.name: s.status for s in discover(root)}
    assert status == {"first": "partly current: 4 of 8 cells measured again in second (4)", "second": "current"}
    assert invoke("run", suite, "--out", root / "second").exit_code == 0
    assert {s.name: s.status for s in discover(root)}["first"] == "superseded by second (8)"

    result = invoke("index", root, "--archive")
    assert result.exit_code == 0 and f"archived first → {root / ARCHIVE / 'first'}" in result.output
    assert not (root / "first").exists() and (root / ARCHIVE / "first" / "cells.jsonl").is_file()
    index = (root / "INDEX.md").read_text()
    assert "archived" in next(line for line in index.splitlines() if "[first](archive/first/)" in line)
    row = next(line for line in index.splitlines() if "[second](second/)" in line)
    assert "current" in row and "tiny" in row and "CPU (" in row and "oracle, noisy × dense on synthetic, 3–6 frames; 8 cells" in row


def test_cells_measured_again_by_two_newer_sets_count_once(tmp_path, fake_metrics):
    suite = write_suite(tmp_path, tiny_suite())
    root = tmp_path / "results"
    assert invoke("run", suite, "--out", root / "first").exit_code == 0
    for name in ("second", "third"):  # each measures the same half again: the other half stays current
        time.sleep(1.1)
        assert invoke("run", suite, "--out", root / name, "--only", "oracle/*").exit_code == 0
    status = {s.name: s.status for s in discover(root)}["first"]
    assert status == "partly current: 4 of 8 cells measured again in second (4), third (4)"
    assert invoke("index", root, "--archive").exit_code == 0 and (root / "first").is_dir()


def index_row_of_script_outputs(tmp_path, name: str, about: dict) -> str:
    """The index row of a folder holding one table and `about.json`."""
    outputs = tmp_path / "results" / name
    outputs.mkdir(parents=True)
    (outputs / "table.md").write_text("| a |\n|---|\n| 1 |\n")
    (outputs / "about.json").write_text(json.dumps(about))
    return next(line for line in render_index(tmp_path / "results").splitlines() if f"[{name}]" in line)


def test_script_outputs_are_described_by_about_json(tmp_path):
    row = index_row_of_script_outputs(tmp_path, "profile-x", {"title": "Forward profile", "env": {"gpu": "NVIDIA H200", "git_commit": "abcdef123456"}})
    assert "Forward profile" in row and "NVIDIA H200" in row and "abcdef1" in row and "(script outputs)" in row


def test_about_json_may_list_one_environment_per_run(tmp_path):
    runs = [{"gpu": "NVIDIA H200", "git_commit": "1111111aaaa"}, {"gpu": "NVIDIA H200", "git_commit": "2222222bbbb"}]
    row = index_row_of_script_outputs(tmp_path, "workers-x", {"title": "Two runs", "env": runs})
    assert "| NVIDIA H200 " in row and "1111111, 2222222" in row


def test_a_folder_that_is_no_set_is_a_clear_error(tmp_path):
    (tmp_path / "results" / "notes").mkdir(parents=True)
    with pytest.raises(ResultsError, match="notes: neither a run's folder"):
        discover(tmp_path / "results")


def test_speed_rows_come_from_one_set_each_newest_first(tmp_path, fake_metrics, frame_method):
    data = tiny_suite(name="speed", methods=["dense", frame_method])
    suite = write_suite(tmp_path, data)
    root = tmp_path / "results"
    assert invoke("run", suite, "--out", root / "old").exit_code == 0
    time.sleep(1.1)
    assert invoke("run", suite, "--out", root / "new", "--only", "oracle/*/*/*/3").exit_code == 0
    table = speed_tables(root)
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    frames = [cell.strip() for cell in header.split("|")[3:-2]]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table.splitlines() if line.startswith("| oracle")]
    # per method: the new set's row (its one frame count), then the old set's row for the other
    assert [(row[1], row[-1].split(" ")[0]) for row in rows] == [("dense", "new"), ("dense", "old"), ("t_frame", "new"), ("t_frame", "old")]
    for method_rows in (rows[:2], rows[2:]):
        filled = [[frames[i] for i, cell in enumerate(row[2:-1]) if cell] for row in method_rows]
        assert filled[0] == ["3"] and filled[1] and "3" not in filled[1]


def committed_results(tmp_path: Path) -> Path:
    """A results root holding only the sets git tracks (a local smoke run is not committed)."""
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "results"], capture_output=True, text=True, check=True).stdout.split()
    root = tmp_path / "results"
    (root / ARCHIVE).mkdir(parents=True)
    for name in sorted({Path(p).parts[1] for p in tracked if len(Path(p).parts) > 2}):
        if name == ARCHIVE:
            for archived in sorted({Path(p).parts[2] for p in tracked if Path(p).parts[1] == ARCHIVE}):
                (root / ARCHIVE / archived).symlink_to(REPO / "results" / ARCHIVE / archived)
        else:
            (root / name).symlink_to(REPO / "results" / name)
    return root


def test_the_committed_index_lists_every_committed_set_and_is_up_to_date(tmp_path):
    root = committed_results(tmp_path)
    committed = (REPO / "results" / "INDEX.md").read_text()
    assert committed == render_index(root), "results/INDEX.md is stale: run `avggt-bench index results --readme README.md`"
    for s in discover(root):
        assert f"[{s.name}]({ARCHIVE + '/' if s.archived else ''}{s.name}/)" in committed


def test_the_readme_speed_table_is_generated_from_the_results(tmp_path):
    root = committed_results(tmp_path)
    readme = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", readme)
    assert BEGIN in readme.read_text() and END in readme.read_text()
    assert not rewrite_readme(readme, root), "the README speed table is stale: run `avggt-bench index results --readme README.md`"
