"""The results store: durable appends, resume bookkeeping, damaged files, env.json."""

from __future__ import annotations

import json

import pytest

from bench.env import env_id, fingerprint
from bench.store import ResultsError, ResultStore, read_rows


def test_rows_append_and_newest_row_per_cell_wins(tmp_path):
    store = ResultStore(tmp_path / "out")
    store.open()
    store.append({"id": "a", "status": "ok", "x": 1.0})
    store.append({"id": "b", "status": "error", "x": float("nan")})
    store.append({"id": "c", "status": "oom"})
    store.append({"id": "b", "status": "ok", "x": 2.0})
    lines = store.cells.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[1])["x"] is None  # NaN is written as null (strict JSON)
    assert [(r["id"], r["status"]) for r in store.rows()] == [("a", "ok"), ("b", "ok"), ("c", "oom")]
    assert store.done() == {"a", "b", "c"}


def test_error_rows_are_not_done(tmp_path):
    store = ResultStore(tmp_path)
    store.open()
    store.append({"id": "a", "status": "error"})
    store.append({"id": "b", "status": "oom"})
    assert store.done() == {"b"}


def test_a_row_cut_short_by_a_kill_is_dropped(tmp_path):
    store = ResultStore(tmp_path)
    store.open()
    store.append({"id": "a", "status": "ok"})
    with store.cells.open("a") as f:
        f.write('{"id": "b", "stat')  # killed while writing
    assert [r["id"] for r in read_rows(tmp_path)] == ["a"]
    store.open()  # the next run trims the partial line before appending
    store.append({"id": "b", "status": "ok"})
    assert [r["id"] for r in read_rows(tmp_path)] == ["a", "b"]
    assert store.cells.read_text().count("\n") == 2


def test_damaged_rows_are_a_clear_error(tmp_path):
    (tmp_path / "cells.jsonl").write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ResultsError, match="cells.jsonl: line 2 is not a JSON row"):
        read_rows(tmp_path)
    with pytest.raises(ResultsError, match="no results here"):
        read_rows(tmp_path / "elsewhere")


def test_env_json_keeps_one_entry_per_environment(tmp_path):
    store = ResultStore(tmp_path)
    store.open()
    env = fingerprint("cpu")
    for key in ("git_commit", "python", "torch", "cuda", "cudnn", "gpu", "gpu_memory_gib", "cpu", "hostname", "time"):
        assert key in env
    first = store.record_env(env)
    assert store.record_env({**env, "time": "later"}) == first  # the time is not part of the id
    other = store.record_env({**env, "git_commit": "0" * 40})
    assert other != first
    assert set(json.loads(store.env.read_text())) == {first, other}
    assert env_id(env) == first


def test_a_named_commit_wins_over_the_git_folder(monkeypatch):
    """A tree shipped to a GPU machine may carry a git folder at an older commit: the commit the
    sweep names is the one recorded, and the dirty flag against the wrong commit is unknown."""
    monkeypatch.setenv("AVGGT_BENCH_GIT_COMMIT", "abc1234")
    env = fingerprint("cpu")
    assert env["git_commit"] == "abc1234" and env["git_dirty"] is None
    monkeypatch.delenv("AVGGT_BENCH_GIT_COMMIT")
    assert fingerprint("cpu")["git_commit"] != "abc1234"


def test_rows_written_into_the_results_folder_leave_the_code_clean(tmp_path, monkeypatch):
    import subprocess

    import bench.env

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True, capture_output=True)

    (tmp_path / "results" / "speed").mkdir(parents=True)
    (tmp_path / "results" / "speed" / "cells.jsonl").write_text("{}\n")
    (tmp_path / "model.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    monkeypatch.setattr(bench.env, "PROJECT_ROOT", tmp_path)
    monkeypatch.delenv("AVGGT_BENCH_GIT_COMMIT", raising=False)
    assert fingerprint("cpu")["git_dirty"] is False
    (tmp_path / "results" / "speed" / "cells.jsonl").write_text("{}\n{}\n")  # a run appended a row
    assert fingerprint("cpu")["git_dirty"] is False
    (tmp_path / "model.py").write_text("x = 2\n")  # the code changed
    assert fingerprint("cpu")["git_dirty"] is True


def test_raw_arrays_are_written_whole_before_their_row(tmp_path):
    import numpy as np

    from bench.store import read_raw

    store = ResultStore(tmp_path)
    store.open()
    name = store.write_raw("abc", {"pose.rot_err_deg": np.arange(3.0), "frame_ids": np.array(["1", "2"])})
    store.append({"id": "abc", "status": "ok", "raw": name})
    [row] = store.rows()
    raw = read_raw(tmp_path, row)
    assert name == "raw/abc.npz" and list(raw["pose.rot_err_deg"]) == [0.0, 1.0, 2.0] and list(raw["frame_ids"]) == ["1", "2"]
    assert not list((tmp_path / "raw").glob("*partial*")) and read_raw(tmp_path, {"id": "x"}) == {}
    (tmp_path / "raw/abc.npz").write_bytes(b"damaged")
    with pytest.raises(ResultsError, match="raw/abc.npz: cannot read the raw values"):
        read_raw(tmp_path, row)


def test_start_from_takes_the_rows_environments_and_raw_arrays_another_folder_has(tmp_path):
    import numpy as np

    from bench.store import read_raw

    earlier = ResultStore(tmp_path / "earlier")
    earlier.open()
    ident = earlier.record_env(fingerprint("cpu"))
    earlier.append({"id": "a", "status": "ok", "env_id": ident, "raw": earlier.write_raw("a", {"x": np.ones(2)})})
    earlier.append({"id": "b", "status": "ok", "env_id": ident})
    here = ResultStore(tmp_path / "here")
    here.open()
    here.append({"id": "b", "status": "ok", "x": 5.0})  # measured here already: kept as it is
    assert here.start_from(earlier.directory) == 1 and here.start_from(earlier.directory) == 0
    rows = {r["id"]: r for r in here.rows()}
    assert set(rows) == {"a", "b"} and rows["b"]["x"] == 5.0
    assert list(read_raw(here.directory, rows["a"])["x"]) == [1.0, 1.0] and ident in json.loads(here.env.read_text())


def test_start_from_refuses_rows_of_this_suites_cells_measured_with_other_settings(tmp_path):
    earlier = ResultStore(tmp_path / "earlier")
    earlier.open()
    earlier.append({"id": "old-identity", "cell": "m/dense/d/s/8", "status": "ok"})
    earlier.append({"id": "other-suite", "cell": "x/dense/d/s/8", "status": "ok"})
    here = ResultStore(tmp_path / "here")
    with pytest.raises(ResultsError, match=r"1 rows measure cells of this suite with other settings .*m/dense/d/s/8"):
        here.start_from(earlier.directory, {"m/dense/d/s/8": "new-identity"})
    assert not here.cells.exists(), "nothing is taken when the start is refused"
    assert here.start_from(earlier.directory, {"m/dense/d/s/8": "old-identity"}) == 2
