"""One suite run twice in one call, on one worker and on N workers (a local Dask cluster), to
measure what the distributed runner gains: wall time of each run, their ratio, and every cell's
time in both (which should agree within noise: each cell runs on one GPU either way).

    python -m scripts.compare_workers suites/speed.yaml OUT --workers 2 --only '*/avggt/*/*/100' [--expect-from RESULTS]

Writes OUT/workers-1/ and OUT/workers-N/ (results folders), and OUT/comparison.json and .md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from tabulate import tabulate

from bench.env import fingerprint
from bench.store import read_rows


def timed_run(suite: str, out: Path, workers: int, only: list[str], expect_from: str | None) -> float:
    command = [sys.executable, "-m", "bench.cli", "run", suite, "--out", str(out), "--workers", str(workers), *[a for glob in only for a in ("--only", glob)]]
    command += ["--expect-from", expect_from] if expect_from else []
    started = time.monotonic()
    subprocess.run(command, check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite")
    parser.add_argument("out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--expect-from", help="an earlier results folder of the suite: the order of the work, longest first")
    args = parser.parse_args()
    walls = {n: timed_run(args.suite, args.out / f"workers-{n}", n, args.only, args.expect_from) for n in (1, args.workers)}
    one, many = ({r["cell"]: r for r in read_rows(args.out / f"workers-{n}")} for n in (1, args.workers))
    cells = [
        {"cell": cell, "time_1_s": one[cell]["time_median_s"], f"time_{args.workers}_s": many[cell]["time_median_s"],
         "ratio": many[cell]["time_median_s"] / one[cell]["time_median_s"], "worker": many[cell].get("worker")}
        for cell in one if cell in many and one[cell]["status"] == many[cell]["status"] == "ok"
    ]  # fmt: skip
    summary = {
        "suite": args.suite, "only": args.only, "workers": args.workers, "env": fingerprint("cuda" if "cuda" in json.dumps(one) else "cpu"),
        "wall_s": {str(n): round(w, 1) for n, w in walls.items()}, "wall_ratio": round(walls[args.workers] / walls[1], 3),
        "cells": cells,
    }  # fmt: skip
    (args.out / "comparison.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    lines = [
        f"# {args.suite} on 1 and {args.workers} workers",
        "",
        f"Wall time: {walls[1]:.1f} s on 1 worker, {walls[args.workers]:.1f} s on {args.workers}: ratio {summary['wall_ratio']:.3f}.",
        "",
        tabulate(cells, headers="keys", tablefmt="github", floatfmt=".4g"),
        "",
    ]
    (args.out / "comparison.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
