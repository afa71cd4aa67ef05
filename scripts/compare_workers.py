"""One suite run on one worker and on N workers (a local Dask cluster), to measure what the
distributed runner gains: wall time of each run, their ratio, and every cell's time in both (which
should agree within noise: each cell runs on one GPU either way).

    python -m scripts.compare_workers suites/speed.yaml OUT --workers 2 --only '*/avggt/*/*/100' [--expect-from RESULTS]
    python -m scripts.compare_workers suites/speed.yaml OUT --workers 2 --side 1   # only the one-worker run
    python -m scripts.compare_workers suites/speed.yaml OUT --workers 2 --side 2   # then the N-worker run

By default each run compiles from cold into a compile cache of its own, which its workers share,
as the workers of one node share theirs; so neither run profits from the other's kernels. With
`--compile-cache DIR` both runs share DIR instead, warmed beforehand by an untimed run of the cells
`--warm-only` selects (OUT/warm/): then both start as a second run of the suite on that machine
does, and the ratio shows the scheduling alone, not a cold compile that one worker pays in both.
The cache holds Python's bytecode too (`environment_caching_in`), written even where the environment says not
to: an installed machine has it, and without it every process compiles torch's source anew.

    python -m scripts.compare_workers suites/speed.yaml OUT --compile-cache /tmp/cc --warm-only '*/*/*/*/100'   # the warm-up alone
    python -m scripts.compare_workers suites/speed.yaml OUT --compile-cache /tmp/cc --side 1
    python -m scripts.compare_workers suites/speed.yaml OUT --compile-cache /tmp/cc --side 2

The sides can run in separate calls (a GPU call has a time limit): each writes OUT/workers-N/ (a
results folder) and its wall time to OUT/walls.json, and once both are there OUT/comparison.json
and .md are written.
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


WARMED = "warmed.json"  # in a shared compile cache: which cells filled it


def timed_run(suite: str, out: Path, workers: int, only: list[str], expect_from: str | None, cache: Path | None) -> float:
    """Wall seconds of one `avggt-bench run` of the slice, compiling into `cache` (None: a fresh one)."""
    command = [sys.executable, "-m", "bench.cli", "run", suite, "--out", str(out), "--workers", str(workers), *[a for glob in only for a in ("--only", glob)]]
    command += ["--expect-from", expect_from] if expect_from else []
    with tempfile.TemporaryDirectory(prefix="compile-cache-") as fresh:
        where = cache or Path(fresh)
        env = environment_caching_in(where)
        started = time.monotonic()
        if subprocess.run(command, env=env).returncode:
            sys.exit(f"compare_workers: the run into {out} failed (its error is above); nothing was compared")
        return time.monotonic() - started


def environment_caching_in(where: Path) -> dict[str, str]:
    """This process's environment, set to keep a run's compiled code in `where`: the compiler's
    kernels and graphs, and Python's bytecode, written even where PYTHONDONTWRITEBYTECODE says not
    to. A machine without bytecode (that setting, packages installed without it) compiles the source
    of torch and its compiler in every process it starts (about 14 s a process on the GPU machines
    used here), which no installed machine does."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "TORCHINDUCTOR_CACHE_DIR": str(where), "TRITON_CACHE_DIR": str(where / "triton"), "PYTHONPYCACHEPREFIX": str(where / "bytecode")}


def cache_state(cache: Path | None) -> str:
    """How the compared runs compiled, in words, for the comparison."""
    if cache is None:
        return "cold: each run compiled into a fresh cache of its own, shared by its workers"
    warmed = json.loads((cache / WARMED).read_text())
    return f"warm: both runs shared one cache, filled first by an untimed run of {' '.join(warmed['only'])} ({warmed['wall_s']:.0f} s)"


def compare(suite: str, only: list[str], out: Path, workers: int, walls: dict[str, float], compiling: str) -> None:
    one, many = ({r["cell"]: r for r in read_rows(out / f"workers-{n}")} for n in (1, workers))
    cells = [
        {"cell": cell, "time_1_s": one[cell]["time_median_s"], f"time_{workers}_s": many[cell]["time_median_s"],
         "ratio": many[cell]["time_median_s"] / one[cell]["time_median_s"], "worker": many[cell].get("worker")}
        for cell in one if cell in many and one[cell]["status"] == many[cell]["status"] == "ok"
    ]  # fmt: skip
    ratio = walls[str(workers)] / walls["1"]
    summary = {
        "suite": suite, "only": only, "workers": workers, "env": {f"workers-{n}": ResultStore(out / f"workers-{n}").environments() for n in (1, workers)},
        "compile_cache": compiling, "wall_s": walls, "wall_ratio": round(ratio, 3), "cells": cells,
    }  # fmt: skip
    (out / "comparison.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    lines = [
        f"# {suite} on 1 and {workers} workers",
        "",
        f"Wall time: {walls['1']:.1f} s on 1 worker, {walls[str(workers)]:.1f} s on {workers}: ratio {ratio:.3f}.",
        f"Compile cache: {compiling}.",
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
    parser.add_argument("--side", type=int, action="append", help="run only this side (1 or the --workers count); default both, or none after --warm-only")
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--expect-from", help="an earlier results folder of the suite: the order of the work, longest first")
    parser.add_argument("--compile-cache", type=Path, help="a compile cache both runs share, warmed first (--warm-only); default: each run compiles from cold")
    parser.add_argument("--warm-only", action="append", default=[], help="with --compile-cache: first fill it by an untimed run of these cells (into OUT/warm)")
    args = parser.parse_args()
    sides = args.side or ([] if args.warm_only else [1, args.workers])
    if not set(sides) <= {1, args.workers}:
        parser.error(f"--side takes 1 or {args.workers} (the --workers count), not {sides}")
    if args.warm_only and not args.compile_cache:
        parser.error("--warm-only fills the cache that --compile-cache names; give both")
    args.out.mkdir(parents=True, exist_ok=True)
    walls_file = args.out / "walls.json"
    walls = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    if args.warm_only:
        args.compile_cache.mkdir(parents=True, exist_ok=True)
        wall = timed_run(args.suite, args.out / "warm", 1, args.warm_only, args.expect_from, args.compile_cache)
        (args.compile_cache / WARMED).write_text(json.dumps({"only": args.warm_only, "wall_s": round(wall, 1)}) + "\n")
        print(f"warm-up: {wall:.1f} s of wall time", flush=True)
    elif args.compile_cache and not (args.compile_cache / WARMED).exists():
        parser.error(f"--compile-cache {args.compile_cache} has not been warmed (no {WARMED}): give --warm-only in the first call")
    for n in sides:
        walls[str(n)] = round(timed_run(args.suite, args.out / f"workers-{n}", n, args.only, args.expect_from, args.compile_cache), 1)
        walls_file.write_text(json.dumps(walls, indent=1) + "\n")
        print(f"workers {n}: {walls[str(n)]:.1f} s of wall time", flush=True)
    if {"1", str(args.workers)} <= walls.keys():
        compare(args.suite, args.only, args.out, args.workers, walls, cache_state(args.compile_cache))


if __name__ == "__main__":
    main()
