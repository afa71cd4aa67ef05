"""The runner end to end on CPU: metrics through the oracle, failures as rows, resume after Ctrl-C."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_suite, write_suite

from bench.models import MODELS
from bench.models.oracle import OracleModel
from bench.runner import RunError, expected_seconds, run
from bench.store import ResultStore, read_rows
from bench.suite import expand, load_suite

TRIGGER: dict = {}  # frames → exception the fake model raises on a sequence of that many frames


class Failing(OracleModel):
    """The oracle, except that it raises TRIGGER[num_frames] when that is set."""

    def run(self, images, plan=None, sequence=None):
        if sequence.num_frames in TRIGGER:
            raise TRIGGER[sequence.num_frames]
        return super().run(images, plan, sequence)


@pytest.fixture
def failing(register):
    register(MODELS, "t_failing", Failing)
    TRIGGER.clear()
    yield TRIGGER
    TRIGGER.clear()


def run_suite(tmp_path, data, out="out", **kwargs):
    expansion = expand(load_suite(write_suite(tmp_path, data)))
    store = ResultStore(tmp_path / out)
    return run(expansion, store, progress=False, **kwargs), store


def test_rows_carry_identity_configuration_timing_and_metrics(tmp_path, fake_metrics):
    expansion = expand(load_suite(write_suite(tmp_path, tiny_suite())))
    store = ResultStore(tmp_path / "out")
    summary = run(expansion, store, progress=False)
    assert summary.statuses == {"ok": 8} and not summary.interrupted
    rows = read_rows(store.directory)
    assert [r["cell"] for r in rows][:2] == ["oracle/dense/synthetic/orbit/3", "oracle/dense/synthetic/orbit/6"]
    row = rows[1]
    assert row["frames"] == row["frames_used"] == 6 and row["image_size"] == [48, 64]
    assert row["sampling_kind"] == "uniform" and row["frames_available"] == 12
    assert row["method_dense"] is True and row["plan"] == expansion.cells[1].plan.describe(6)
    assert row["weights"] == "none" and row["weights_random"] is False
    assert row["time_repeats"] == 2 and row["time_min_s"] <= row["time_median_s"] <= row["time_max_s"]
    assert row["metrics"] == ["t_pose", "t_depth"] and row["device"] == "cpu"
    env = json.loads(store.env.read_text())
    assert set(env) == {row["env_id"]} and env[row["env_id"]]["torch"] == torch.__version__


def test_exact_oracle_scores_perfectly_and_noise_shows(tmp_path, fake_metrics):
    _, store = run_suite(tmp_path, tiny_suite())
    for row in read_rows(store.directory):
        if row["model"] == "oracle":
            assert row["t_pose.rot_err_max"] == pytest.approx(0.0, abs=1e-5)
            assert row["t_pose.centre_err_max"] == pytest.approx(0.0, abs=1e-9)
            assert row["t_depth.abs_rel"] == 0.0
        else:
            assert row["t_pose.rot_err_max"] > 1.0 and row["t_depth.abs_rel"] > 0.05


def test_out_of_memory_becomes_a_row_and_the_run_goes_on(tmp_path, fake_metrics, failing):
    failing[3] = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
    summary, store = run_suite(tmp_path, tiny_suite(models=["t_failing"]))
    assert summary.statuses == {"oom": 2, "ok": 2}
    rows = {r["cell"]: r for r in read_rows(store.directory)}
    oom = rows["t_failing/dense/synthetic/orbit/3"]
    assert oom["status"] == "oom" and oom["message"].startswith("forward pass: OutOfMemoryError: CUDA out of memory")
    assert "OutOfMemoryError" in oom["traceback"] and "time_median_s" not in oom
    assert rows["t_failing/dense/synthetic/orbit/6"]["status"] == "ok"
    # out-of-memory is a result: a rerun keeps it instead of measuring it again
    failing.clear()
    summary, _ = run_suite(tmp_path, tiny_suite(models=["t_failing"]))
    assert summary.already_done == 4 and summary.recorded == 0


def test_errors_are_recorded_and_retried_by_the_next_run(tmp_path, fake_metrics, failing):
    failing[6] = RuntimeError("kernel exploded")
    summary, store = run_suite(tmp_path, tiny_suite(models=["t_failing"]))
    assert summary.statuses == {"error": 2, "ok": 2}
    assert {r["message"] for r in read_rows(store.directory) if r["status"] == "error"} == {"forward pass: RuntimeError: kernel exploded"}
    failing.clear()
    summary, store = run_suite(tmp_path, tiny_suite(models=["t_failing"]))
    assert summary.already_done == 2 and summary.statuses == {"ok": 2}
    assert [r["status"] for r in read_rows(store.directory)] == ["ok"] * 4


def test_data_that_cannot_be_loaded_is_an_error_row_for_each_of_its_cells(tmp_path, fake_metrics):
    data = tiny_suite(models=["oracle"])
    data["datasets"][0]["frames"] = [3, 50]  # the scenes have 12 frames
    summary, store = run_suite(tmp_path, data)
    assert summary.statuses == {"ok": 2, "error": 2}
    failed = [r for r in read_rows(store.directory) if r["status"] == "error"]
    assert [r["cell"] for r in failed] == ["oracle/dense/synthetic/orbit/50", "oracle/dense/synthetic/walk/50"]
    assert failed[0]["message"] == "loading data: DatasetError: synthetic/orbit: asked for 50 frames but the sequence has only 12"


def test_interrupted_run_resumes_without_duplicates_or_losses(tmp_path, fake_metrics, failing):
    data = tiny_suite(models=["oracle", "t_failing"])
    failing[6] = KeyboardInterrupt()  # Ctrl-C during the 2nd cell of t_failing (the 6th of 8)
    summary, store = run_suite(tmp_path, data)
    assert summary.interrupted and summary.recorded == 5
    before = store.cells.read_text()
    failing.clear()
    summary, store = run_suite(tmp_path, data)
    assert not summary.interrupted and summary.already_done == 5 and summary.recorded == 3
    after = store.cells.read_text()
    assert after.startswith(before)  # the finished rows are untouched
    ids = [json.loads(line)["id"] for line in after.splitlines()]
    cells = expand(load_suite(tmp_path / "suite.yaml")).cells
    assert sorted(ids) == sorted(c.identity for c in cells)  # every cell exactly once
    summary, _ = run_suite(tmp_path, data)
    assert summary.recorded == 0 and summary.already_done == 8


def test_only_selects_cells_by_glob(tmp_path, fake_metrics):
    summary, store = run_suite(tmp_path, tiny_suite(), only=["*/walk/*", "noisy/*/orbit/3"])
    assert summary.selected == 5
    assert [r["cell"] for r in read_rows(store.directory)] == [
        "oracle/dense/synthetic/walk/3", "oracle/dense/synthetic/walk/6",
        "noisy/dense/synthetic/orbit/3", "noisy/dense/synthetic/walk/3", "noisy/dense/synthetic/walk/6",
    ]  # fmt: skip


def test_cuda_without_cuda_is_refused_before_anything_runs(tmp_path, fake_metrics, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU build, also on a GPU machine
    expansion = expand(load_suite(write_suite(tmp_path, tiny_suite())), "cuda")
    with pytest.raises(RunError, match="use --device cpu"):
        run(expansion, ResultStore(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def test_time_limit_stops_between_cells_and_the_next_run_continues(tmp_path, fake_metrics, monkeypatch):
    clock = iter(range(0, 10_000, 10))  # every look at the clock is 10 s later
    monkeypatch.setattr("bench.runner.time.monotonic", lambda: next(clock))
    data = tiny_suite()
    summary, store = run_suite(tmp_path, data, time_limit=15)  # start at 0, first cell at 10, then 20 > 15
    assert summary.out_of_time and summary.recorded == 1
    summary, store = run_suite(tmp_path, data)
    assert not summary.out_of_time and summary.already_done == 1 and summary.recorded == summary.selected - 1


def test_a_cell_expected_to_end_after_the_limit_is_left_for_the_next_run(tmp_path, fake_metrics):
    """Expected time = an earlier run's median forward × this suite's forwards for the cell; a cell
    that would overrun the limit is skipped, the cells after it that fit still run."""
    data = tiny_suite()
    run_suite(tmp_path, data, out="earlier")
    earlier = read_rows(tmp_path / "earlier")
    slow = earlier[1]["id"]
    earlier[1]["time_median_s"] = 400.0
    expect = expected_seconds(earlier)
    cells = expand(load_suite(write_suite(tmp_path, data))).cells
    slow_cell = next(c for c in cells if c.identity == slow)
    assert expect(slow_cell) == pytest.approx(400.0 * 2)  # tiny suite: no warm-up, 2 repeats
    summary, store = run_suite(tmp_path, data, time_limit=500, expect=expect)
    assert summary.out_of_time and summary.recorded == summary.selected - 1
    assert slow not in {r["id"] for r in read_rows(store.directory)}
    summary, store = run_suite(tmp_path, data)
    assert summary.recorded == 1 and slow in {r["id"] for r in read_rows(store.directory)}


def test_expected_times_come_from_the_same_cell_of_an_earlier_run_whose_settings_differed(tmp_path, fake_metrics):
    """After an edit of the suite's settings the identities are new, but the cell ids still name
    the same work: the earlier times stand, until a row of the same identity exists."""
    data = tiny_suite()
    run_suite(tmp_path, data, out="earlier")
    earlier = read_rows(tmp_path / "earlier")
    cell = expand(load_suite(write_suite(tmp_path, data))).cells[0]
    edited = [dict(row, id="before-the-edit", time_median_s=7.0) for row in earlier if row["id"] == cell.identity]
    assert expected_seconds(edited)(cell) == pytest.approx(7.0 * 2)
    same = [dict(row, time_median_s=3.0) for row in earlier if row["id"] == cell.identity]
    assert expected_seconds(edited + same)(cell) == pytest.approx(3.0 * 2)
    assert expected_seconds([dict(row, cell="other/cell", id="x") for row in edited])(cell) is None


class Compiling(OracleModel):
    """The oracle, posing as a compiled model: records its prime and forward calls in order."""

    calls: list = []

    def __init__(self, **options):
        super().__init__(**options)
        self.compiled = True

    def prime(self, images, plan=None):
        Compiling.calls.append(("prime", tuple(images.shape[-2:]), plan is not None))

    def run(self, images, plan=None, sequence=None):
        Compiling.calls.append(("run", tuple(images.shape[-2:]), plan is not None))
        return super().run(images, plan, sequence)


def test_every_cell_is_primed_before_its_first_timed_forward(tmp_path, fake_metrics, register):
    """Compilation belongs outside the timed region even for cells without warm-up."""
    register(MODELS, "t_compiling", Compiling)
    Compiling.calls.clear()
    data = tiny_suite(models=["t_compiling"])
    data["timing"] = {"warmup": 0, "repeats": 1}
    summary, _ = run_suite(tmp_path, data)
    assert summary.statuses["ok"] == summary.selected
    assert Compiling.calls[0][0] == "prime" and all(plan for _, _, plan in Compiling.calls)
    assert [kind for kind, _, _ in Compiling.calls] == ["prime", "run"] * summary.selected
