"""A `run` killed with SIGKILL at random points, again and again, and resumed each time: the final
results folder holds every cell exactly once, every line parses, and every raw file a row names
loads. The kills land anywhere: while Python starts, between cells, inside a cell, inside an
append or a raw-file write."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.store import read_raw
from bench.suite import expand, load_suite

REPO = Path(__file__).resolve().parent.parent
KILLS = 20

SUITE = """
name: killed
models:
  - {name: oracle, weights: none}
  - {name: oracle, label: noisy, weights: none, options: {rotation_noise_deg: 2.0, depth_noise: 0.05}}
methods: [dense, vggt, pi3]
datasets:
  - name: synthetic
    options: {length: 12, height: 48, width: 64}
    frames: [2, 3, 4, 5, 6, 7, 8, 9]
timing: {warmup: 1, repeats: 3}
metrics: [pose, depth]
"""


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_keeps_every_cell_exactly_once(tmp_path):
    suite = tmp_path / "killed.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    cells_file = out / "cells.jsonl"
    command = [sys.executable, "-m", "bench.cli", "run", str(suite), "--out", str(out)]
    expected = {cell.identity for cell in expand(load_suite(suite)).cells}
    rng = np.random.default_rng(0)
    kills = 0
    while kills < KILLS:
        target = lines(cells_file) + int(rng.integers(0, 3))  # kill after 0, 1 or 2 more rows ...
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and lines(cells_file) < target:
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0, 0.05)))  # ... and a little way into whatever comes next
        if process.poll() is not None:
            break  # finished before this kill: too few cells left to kill it again
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    assert kills == KILLS, f"the run finished after {kills} kills; give the suite more cells"
    assert lines(cells_file) < len(expected), "every cell finished before the last kill; the kills came too late"
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]

    text = cells_file.read_text()
    assert text.endswith("\n")
    rows = [json.loads(line) for line in text.splitlines()]  # every line parses
    assert Counter(row["id"] for row in rows) == Counter(expected)  # every cell exactly once
    assert all(row["status"] == "ok" for row in rows)
    for row in rows:  # every raw file a row names is whole
        assert {"frame_ids", "pose.rot_err_deg", "pose.trans_err_deg"} <= set(read_raw(out, row)), row["cell"]
