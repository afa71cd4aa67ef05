"""Runs on a local Dask cluster (CPU worker processes): the same cells and values as the serial run,
each once; a worker killed mid-group has its group run again; a group that keeps killing its
worker ends as error rows; Ctrl-C, the time limit and the folder lock behave as in a serial run."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import bench.distributed
from bench.cli import main
from bench.distributed import Group, Workers, _next_for, groups, worker_environments
from bench.store import ResultStore, read_rows
from bench.suite import expand, load_suite

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "results" / "baseline-smoke"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def lines(folder: Path) -> list[str]:
    return (folder / "cells.jsonl").read_text().splitlines()


def dying_suite(tmp_path: Path, die_once: str) -> Path:
    suite = {
        "name": "dying",
        "plugins": ["tests.plugins.dying_oracle"],
        "models": [{"name": "t-dying-oracle", "label": "dying", "weights": "none", "options": {"die_at": 6, "die_once": die_once}}, {"name": "oracle", "weights": "none"}],
        "methods": ["dense", "vggt"],
        "datasets": [{"name": "synthetic", "options": {"length": 8, "height": 48, "width": 64}, "frames": [3, 6]}],
        "timing": {"warmup": 0, "repeats": 1},
        "metrics": ["pose"],
    }
    path = tmp_path / "dying.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_groups_hold_every_method_of_one_input_longest_first(tmp_path):
    expansion = expand(load_suite(REPO / "suites" / "smoke.yaml"))
    made = groups(expansion.cells, expect=lambda cell: float(cell.frames))
    assert sum(len(g.cells) for g in made) == len(expansion.cells) == 80 and len(made) == 16
    assert all(len({(c.model.label, c.dataset.label, c.scene, c.frames) for c in g.cells}) == 1 for g in made)
    assert [g.seconds for g in made] == sorted((g.seconds for g in made), reverse=True)
    vggt = [c for c in expansion.cells if c.model.label == "vggt-tiny"][:1]
    pi3 = [c for c in expansion.cells if c.model.label == "pi3-tiny"][:1]
    long_vggt, long_pi3, short_pi3, short_vggt = Group(vggt, 10.0), Group(pi3, 6.0), Group(pi3, 4.0), Group(vggt, 3.0)
    alive = ("a", "b")

    def holding(**holds):
        return Workers(holds=dict(holds))

    assert _next_for([long_vggt, long_pi3], "a", holding(a="pi3-tiny"), alive, 0.0) is long_pi3  # keep the loaded model
    assert _next_for([long_vggt, short_pi3], "a", holding(a="pi3-tiny", b="vggt-tiny"), alive, 0.0) is short_pi3  # even for a short group
    assert _next_for([long_vggt, long_pi3], "a", holding(b="vggt-tiny"), alive, 0.0) is long_pi3  # a fresh worker takes a model no one holds
    assert _next_for([long_vggt, long_pi3], "a", holding(), alive, 0.0) is long_vggt
    assert _next_for([long_vggt], "a", holding(b="vggt-tiny"), ("a",), 0.0) is long_vggt  # its holder is gone
    # Before a model's load time is known: another holder's model only while more groups are left than holders.
    assert _next_for([short_vggt], "a", holding(a="pi3-tiny", b="vggt-tiny"), alive, 0.0) is None  # its holder takes it: no second compile
    assert _next_for([long_vggt, short_vggt], "a", holding(a="pi3-tiny", b="vggt-tiny"), alive, 0.0) is long_vggt  # more left than holders


def test_a_free_worker_takes_another_models_group_only_when_it_would_finish_it_sooner():
    expansion = expand(load_suite(REPO / "suites" / "smoke.yaml"))
    vggt = [c for c in expansion.cells if c.model.label == "vggt-tiny"][:1]
    v200, v100 = Group(vggt, 44.0), Group(vggt, 19.0)
    alive = ("a", "b")
    # b holds vggt-tiny and should be busy for 37 s more; the load takes a free worker 10 s: a takes
    # the last group (done at 29 s from now) rather than leave it to b (done at 56 s).
    busy = Workers(holds={"a": "pi3-tiny", "b": "vggt-tiny"}, free_at={"b": 137.0}, load_s={"vggt-tiny": 10.0})
    assert _next_for([v100], "a", busy, alive, 100.0) is v100
    # With a load of 40 s it would finish at 59 s: b is sooner.
    slow_load = Workers(holds=busy.holds, free_at=busy.free_at, load_s={"vggt-tiny": 40.0})
    assert _next_for([v100], "a", slow_load, alive, 100.0) is None
    # Two left: b would run v200 (to 181 s) then v100 (to 200 s); a takes the one b would end last.
    assert _next_for([v200, v100], "a", busy, alive, 100.0) is v100
    # b running late (its expected end has passed): counted as free now, so a waits.
    assert _next_for([v100], "a", Workers(holds=busy.holds, free_at={"b": 90.0}, load_s=busy.load_s), alive, 100.0) is None


def test_the_client_learns_a_models_load_time_from_the_group_that_loaded_it():
    expansion = expand(load_suite(REPO / "suites" / "smoke.yaml"))
    group = Group([c for c in expansion.cells if c.model.label == "vggt-tiny"][:1], 5.0)
    workers = Workers()
    assert workers.start("a", group, now=0.0) is True and workers.free_at["a"] == 5.0  # load unknown: not counted yet
    workers.finish("a", group, loaded=True, overhead_s=12.5)
    assert workers.load_s == {"vggt-tiny": 12.5} and "a" not in workers.free_at
    assert workers.start("a", group, now=20.0) is False and workers.free_at["a"] == 25.0  # holds it: no load
    assert workers.start("b", group, now=20.0) is True and workers.free_at["b"] == 37.5  # loads it
    workers.finish("a", group, loaded=False, overhead_s=0.3)  # a group that loaded nothing leaves the estimate
    assert workers.load_s == {"vggt-tiny": 12.5}


def test_local_workers_share_the_hosts_cores_and_each_sees_its_own_gpu(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)
    first, second = worker_environments(2, "cuda", ["3", "5"], cores=16)
    assert first == {"AVGGT_BENCH_WORKER": "worker 0 (GPU 3)", "CUDA_VISIBLE_DEVICES": "3", "OMP_NUM_THREADS": "8", "TORCHINDUCTOR_COMPILE_THREADS": "8"}
    assert second["CUDA_VISIBLE_DEVICES"] == "5" and second["TORCHINDUCTOR_COMPILE_THREADS"] == "8"
    assert [env["OMP_NUM_THREADS"] for env in worker_environments(3, "cpu", [], cores=2)] == ["1"] * 3  # never none
    monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "1")  # the user's choice stays
    assert all(env["TORCHINDUCTOR_COMPILE_THREADS"] == "1" and "CUDA_VISIBLE_DEVICES" not in env for env in worker_environments(2, "cpu", [], cores=16))


def test_two_workers_give_the_serial_cells_and_values_each_once(tmp_path):
    out = tmp_path / "out"
    result = invoke("run", REPO / "suites" / "smoke.yaml", "--out", out, "--workers", "2")
    assert result.exit_code == 0 and "80 cells: 0 already done, recorded 80 ok" in result.output, result.output
    assert len(lines(out)) == 80
    serial = {row["id"]: row for row in read_rows(BASELINE)}  # the serial run of the same suite
    rows = {row["id"]: row for row in read_rows(out)}
    assert rows.keys() == serial.keys()
    values = [c for c in serial[next(iter(serial))] if c.startswith(("pose.", "depth.")) and isinstance(serial[next(iter(serial))][c], float)]
    for ident, row in rows.items():
        for column in values:
            want, got = serial[ident].get(column), row.get(column)
            assert (want is None and got is None) or math.isclose(want, got, rel_tol=1e-6, abs_tol=1e-9), (row["cell"], column, want, got)
    assert {row["worker"] for row in rows.values()} == {"worker 0", "worker 1"}
    for worker in ("worker 0", "worker 1"):  # rows arrive in the order each worker ran them
        loads = [label for label, _ in itertools.groupby(row["cell"].split("/")[0] for row in rows.values() if row["worker"] == worker)]
        assert len(loads) == len(set(loads)), (worker, loads)  # no worker loads a model a second time
    assert all(len({rows[c.identity]["worker"] for c in g.cells}) == 1 for g in groups(expand(load_suite(REPO / "suites" / "smoke.yaml")).cells))


@pytest.mark.slow
def test_a_group_goes_to_the_worker_holding_its_model_even_with_another_worker_idle(tmp_path):
    """The oracle's worker runs out of its own groups and waits; vggt-tiny's last group must not
    go to it (on a GPU that would be a second load and compile of the model)."""
    suite = {
        "name": "affinity",
        "models": [{"name": "vggt-tiny", "weights": "random"}, {"name": "oracle", "weights": "none"}],
        "methods": ["dense", "avggt"],
        "datasets": [{"name": "synthetic", "options": {"length": 8, "height": 56, "width": 70}, "scenes": ["orbit"], "frames": [4, 8]}],
        "timing": {"warmup": 0, "repeats": 1},
        "metrics": ["pose"],
    }
    path = tmp_path / "affinity.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    result = invoke("run", path, "--out", tmp_path / "out", "--workers", "2")
    assert result.exit_code == 0, result.output
    by_model = {model: {row["worker"] for row in read_rows(tmp_path / "out") if row["model"] == model} for model in ("vggt-tiny", "oracle")}
    assert len(by_model["vggt-tiny"]) == 1 and by_model["vggt-tiny"] != by_model["oracle"], by_model


def test_a_worker_killed_mid_group_has_its_group_run_again(tmp_path):
    out = tmp_path / "out"
    mark = tmp_path / "died"
    result = invoke("run", dying_suite(tmp_path, str(mark)), "--out", out, "--workers", "2")
    assert mark.exists(), "the worker never died: the test proves nothing"
    assert result.exit_code == 0 and "recorded 16 ok" in result.output, result.output
    written = Counter(line.split('"id": "')[1].split('"')[0] for line in lines(out))
    assert len(written) == 16 and set(written.values()) == {1}  # every cell once, none lost, none twice


@pytest.mark.slow
def test_a_group_that_keeps_killing_its_worker_ends_as_error_rows(tmp_path):
    out = tmp_path / "out"
    result = invoke("run", dying_suite(tmp_path, ""), "--out", out, "--workers", "2")
    assert result.exit_code == 1 and "4 of 16 cells ended in error" in result.output, result.output
    failed = [row for row in read_rows(out) if row["status"] == "error"]
    assert {row["cell"].split("/")[0] for row in failed} == {"dying"} and {row["frames"] for row in failed} == {6}
    assert all("the worker running this group died" in row["message"] for row in failed)
    assert len(lines(out)) == 16


def test_ctrl_c_time_limit_and_lock_behave_as_in_a_serial_run(tmp_path, monkeypatch):
    suite = dying_suite(tmp_path, str(tmp_path / "never"))
    out = tmp_path / "out"
    with ResultStore(out).locked():
        refused = invoke("run", suite, "--out", out, "--workers", "1")
    assert refused.exit_code == 1 and "is being written by pid" in refused.output

    none = invoke("run", suite, "--out", out, "--workers", "1", "--time-limit", "0")
    assert none.exit_code == 0 and "Time limit reached: 16 cells left" in none.output

    recorded = bench.distributed.record

    def stop_after_one_group(store, row, arrays, summary, echo):
        recorded(store, row, arrays, summary, echo)
        if summary.recorded == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(bench.distributed, "record", stop_after_one_group)
    stopped = invoke("run", suite, "--out", out, "--workers", "1")
    assert stopped.exit_code == 130 and "Run the same command again to resume" in stopped.output, stopped.output
    assert len(lines(out)) == 2
    monkeypatch.setattr(bench.distributed, "record", recorded)
    resumed = invoke("run", suite, "--out", out, "--workers", "1")
    assert resumed.exit_code == 0 and "16 cells: 2 already done, recorded 14 ok" in resumed.output
