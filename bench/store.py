"""A results folder: `cells.jsonl` (one JSON row per measured cell), `env.json` and `raw/`.

Rows are only ever appended, each flushed and fsynced, so a crash or Ctrl-C loses at most the
cell in flight. A row cut short by a kill (no final newline) is dropped when the folder is opened
again. When a cell is measured again (a retried error), its newest row is the one that counts.
`env.json` maps each env id to the fingerprint of the environment that wrote rows with it.
`raw/<cell identity>.npz` holds a row's raw arrays (per-pair and per-frame metric values, the frame
ids): written completely before the row that names it (field ``raw``), so a row never points at
a missing or partial file. Nothing here deletes a row: measuring a cell again appends a newer one.

One `run` writes a folder at a time: it holds an exclusive lock on `.lock` (flock), which the
operating system releases when the holder exits, however it exits, so a lock left by a killed
run is never stale.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import math
import os
import socket
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.env import env_id

CELLS_FILE = "cells.jsonl"
ENV_FILE = "env.json"
RAW_DIR = "raw"
LOCK_FILE = ".lock"
SCHEMA_VERSION = 2  # of a row: 2 added `raw`, `metric_versions` and the protocol fields
DONE_STATUSES = ("ok", "oom")  # rows that count as measured; `error` rows are retried by the next run


class ResultsError(ValueError):
    """A results folder that cannot be read; the message names the file and line."""


def _json_value(value: Any) -> Any:
    """NaN and infinities become null: strict JSON that every reader accepts."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def cells_path(location: str | Path) -> Path:
    """The cells file of a results folder, or `location` itself when it is the file."""
    path = Path(location)
    return path if path.suffix == ".jsonl" else path / CELLS_FILE


def read_rows(location: str | Path, allow_empty: bool = False) -> list[dict[str, Any]]:
    """The newest row of every cell in a results folder (or a cells.jsonl file), in first-run order;
    a folder without rows is a ResultsError unless `allow_empty`."""
    path = cells_path(location)
    if not path.is_file():
        raise ResultsError(f"{path}: no results here; run `avggt-bench run SUITE.yaml --out {path.parent}` first")
    newest: dict[str, dict[str, Any]] = {}
    text = path.read_text()
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # the last line, cut short by a kill: that cell runs again
                continue
            raise ResultsError(f"{path}: line {number} is not a JSON row; the file was edited or damaged") from None
        if not isinstance(row, dict) or "id" not in row:
            raise ResultsError(f"{path}: line {number} is not a result row (no `id` field)")
        newest[row["id"]] = row
    if not newest and not allow_empty:
        raise ResultsError(f"{path}: holds no rows yet; a run records a row as each cell ends")
    return list(newest.values())


def read_raw(location: str | Path, row: dict[str, Any]) -> dict[str, np.ndarray]:
    """The raw arrays of `row` from the results folder it belongs to ({} when it has none)."""
    if not row.get("raw"):
        return {}
    path = cells_path(location).parent / row["raw"]
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path}: cannot read the raw values of {row.get('cell', row['id'])} ({err})") from None


class ResultStore:
    """Appends rows to one results folder and says which cells it already holds."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.cells = self.directory / CELLS_FILE
        self.env = self.directory / ENV_FILE

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's write lock for the block; a second writer gets a ResultsError naming
        the holder (pid, host, since when)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / LOCK_FILE
        with path.open("a+") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise ResultsError(f"{self.directory} is being written by {holder}; wait for that run to end, or give this one another --out") from None
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()} since {dt.datetime.now().astimezone().isoformat(timespec='seconds')}\n")
            f.flush()
            try:
                yield
            finally:
                f.seek(0)
                f.truncate()
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def open(self) -> None:
        """Create the folder, and drop a final row that a kill cut short."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.cells.exists():
            return
        with self.cells.open("rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def rows(self) -> list[dict[str, Any]]:
        return read_rows(self.cells, allow_empty=True) if self.cells.exists() else []

    def done(self) -> set[str]:
        """Identities of cells measured already (status ok or oom)."""
        return {row["id"] for row in self.rows() if row.get("status") in DONE_STATUSES}

    def write_raw(self, identity: str, arrays: dict[str, np.ndarray]) -> str:
        """Save `arrays` as raw/<identity>.npz (complete before it is renamed into place) and return
        the path relative to the folder, for the row's ``raw`` field."""
        folder = self.directory / RAW_DIR
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{identity}.npz"
        partial = folder / f"{identity}.partial.npz"
        with partial.open("wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, target)
        return f"{RAW_DIR}/{target.name}"

    def path(self, name: str) -> Path:
        """Where a derived file of this folder lives (a report, a plot, an export), its folder made."""
        target = self.directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_text(self, name: str, text: str) -> Path:
        """Write a derived text file of this folder whole (a reader never sees half of it)."""
        return self.write_bytes(name, text.encode())

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write a derived file of this folder (a plot, a page) whole."""
        target = self.path(name)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        os.replace(partial, target)
        return target

    def start_from(self, other: str | Path, identities: dict[str, str] | None = None) -> int:
        """Take the rows (with their raw arrays) and environments of another results folder that this
        one lacks, to continue a sweep measured elsewhere; returns how many rows were taken.

        `identities` maps the cell ids of the suite being run to their identities: a row of one of
        those cells under another identity measured it with other settings (the suite changed
        since), and taking it would leave one cell with two identities here, so the whole start is
        refused before anything is taken."""
        source = ResultStore(other)
        rows = source.rows()
        stale = [row["cell"] for row in rows if identities and row.get("cell") in identities and row["id"] != identities[row["cell"]]]
        if stale:
            raise ResultsError(
                f"{source.cells}: {len(stale)} rows measure cells of this suite with other settings than it has now "
                f"(e.g. {stale[0]}: a model option, method parameter, dataset option or protocol changed); "
                "start a new results folder without --start-from, or start from a set measured with the suite as it is"
            )
        self.open()
        have = {row["id"] for row in self.rows()}
        taken = [row for row in rows if row["id"] not in have]
        for ident, env in source.environments().items():
            self._add_env(ident, env)
        for row in taken:
            if row.get("raw"):
                self.write_raw(row["id"], read_raw(source.directory, row))
            self.append(row)
        return len(taken)

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(_json_value(row), allow_nan=False, default=str)
        with self.cells.open("a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def record_env(self, env: dict[str, Any]) -> str:
        """Add `env` to env.json (once per distinct environment) and return its id."""
        ident = env_id(env)
        self._add_env(ident, env)
        return ident

    def environments(self) -> dict[str, Any]:
        """env.json: env id → the environment that wrote rows with it ({} before the first run)."""
        if not self.env.exists():
            return {}
        try:
            known = json.loads(self.env.read_text())
        except json.JSONDecodeError as err:
            raise ResultsError(f"{self.env}: not valid JSON ({err.msg} at line {err.lineno}); the file was edited or damaged") from None
        if not isinstance(known, dict):
            raise ResultsError(f"{self.env}: expected a mapping of env ids to environments, got {type(known).__name__}")
        return known

    def _add_env(self, ident: str, env: dict[str, Any]) -> None:
        known = self.environments()
        if ident not in known:
            known[ident] = env
            self.write_text(ENV_FILE, json.dumps(known, indent=2) + "\n")
