"""One suite run on one worker and on N workers (a local Dask cluster), to measure what the
distributed runner gains: wall time of each run, their ratio, and every cell's time in both (which
should agree within noise: each cell runs on one GPU either way).

    python -m scripts.compare_workers suites/speed.yaml OUT --workers 2 --only '*/avggt/*/*/100' [--expect-from RESULTS]
    python -m scripts.compare_workers suites/speed.yaml OUT --workers 2 --side 1   # only the one-worker run
    python -m scripts.compare_workers suites/speed.yaml OUT --workers 2 --side 2   # then the N-worker run

Each run compiles from cold into a compile cache of its own, which its workers share, as the
workers of one node share theirs; so neither run profits from the other's kernels. The sides can
run in separate calls (a GPU call has a time limit): each writes OUT/workers-N/ (a results
folder) and its wall time to OUT/walls.json, and once both are there OUT/comparison.json and .md
are written.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from bench.store import ResultStore, read_rows


def timed_run(suite: str, out: Path, workers: int, only: list[str], expect_from: str | None) -> float:
    command = [sys.executable, "-m", "bench.cli", "run", suite, "--out", str(out), "--workers", str(workers), *[a for glob in only for a in ("--only", glob)]]
    command += ["--expect-from", expect_from] if expect_from else []
    with tempfile.TemporaryDirectory(prefix="compile-cache-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": str(Path(cache) / "triton")}
        started = time.monotonic()
        subprocess.run(command, check=True, env=env)
        return time.monotonic() - started


def compare(suite: str, only: list[str], out: Path, workers: int, walls: dict[str, float]) -> None:
    one, many = ({r["cell"]: r for r in read_rows(out / f"workers-{n}")} for n in (1, workers))
    cells = [
        {"cell": cell, "time_1_s": one[cell]["time_median_s"], f"time_{workers}_s": many[cell]["time_median_s"],
         "ratio": many[cell]["time_median_s"] / one[cell]["time_median_s"], "worker": many[cell].get("worker")}
        for cell in one if cell in many and one[cell]["status"] == many[cell]["status"] == "ok"
    ]  # fmt: skip
    ratio = walls[str(workers)] / walls["1"]
    summary = {
        "suite": suite, "only": only, "workers": workers, "env": {f"workers-{n}": ResultStore(out / f"workers-{n}").environments() for n in (1, workers)},
        "wall_s": walls, "wall_ratio": round(ratio, 3), "cells": cells,
    }  # fmt: skip
    (out / "comparison.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    lines = [
        f"# {suite} on 1 and {workers} workers",
        "",
        f"Wall time: {walls['1']:.1f} s on 1 worker, {walls[str(workers)]:.1f} s on {workers}: ratio {ratio:.3f}.",
        "",
        tabulate(cells, headers="keys", tablefmt="github", floatfmt=".4g"),
        "",
    ]
    (out / "comparison.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite")
    parser.add_argument("out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--side", type=int, action="append", help="run only this side (1 or the --workers count); default both")
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--expect-from", help="an earlier results folder of the suite: the order of the work, longest first")
    args = parser.parse_args()
    sides = args.side or [1, args.workers]
    if not set(sides) <= {1, args.workers}:
        parser.error(f"--side takes 1 or {args.workers} (the --workers count), not {sides}")
    args.out.mkdir(parents=True, exist_ok=True)
    walls_file = args.out / "walls.json"
    walls = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    for n in sides:
        walls[str(n)] = round(timed_run(args.suite, args.out / f"workers-{n}", n, args.only, args.expect_from), 1)
        walls_file.write_text(json.dumps(walls, indent=1) + "\n")
        print(f"workers {n}: {walls[str(n)]:.1f} s of wall time", flush=True)
    if {"1", str(args.workers)} <= walls.keys():
        compare(args.suite, args.only, args.out, args.workers, walls)


if __name__ == "__main__":
    main()
