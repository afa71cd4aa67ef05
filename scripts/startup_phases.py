"""Where a run's first forward waits: the phases a fresh process goes through before each selected
cell's timed forwards (imports, CUDA start, the model built, its data, the compile prime and the
first forward at the cell's size against the second), and how long a local Dask cluster takes to
hand a worker its first group. Each pass is a fresh process; the first pass compiles into the
compile cache (kernels, graphs and Python's bytecode, as `scripts.compare_workers` keeps them),
later passes find it warm.

    python -m scripts.startup_phases suites/speed.yaml OUT --only 'vggt-1b/*/*/*/100' --passes 2

Writes OUT/startup_phases.json and OUT/startup_phases.md.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # before the imports below: they are the first phase

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402


def child(suite: str, only: list[str], device: str) -> list[dict]:
    """In a fresh process: the phases of each selected cell, in seconds."""
    import torch
    import torch._dynamo.utils as dynamo_utils
    import yaml

    from bench import runner
    from bench.suite import expand, parse_suite

    phases: list[dict] = [{"cell": "(process)", "import_s": time.monotonic() - STARTED}]
    tick = time.monotonic()
    if device.startswith("cuda"):
        torch.zeros(1, device=device)
        torch.cuda.synchronize()
    phases[0]["device_start_s"] = time.monotonic() - tick
    expansion = expand(parse_suite(yaml.safe_load(Path(suite).read_text()), suite), device)
    models, sequences = runner.cell_caches(expansion, device)

    def timed(call) -> float:
        start = time.monotonic()
        call()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.monotonic() - start

    for cell in runner.select(expansion.cells, only):
        row: dict = {"cell": cell.cell_id}
        row["model_s"] = timed(lambda: models.get((cell.model, cell.device)))
        row["data_s"] = timed(lambda: sequences.get((cell.dataset, cell.scene, cell.frames, cell.preprocess)))
        model, seq = models.get((cell.model, cell.device)), sequences.get((cell.dataset, cell.scene, cell.frames, cell.preprocess))
        images = torch.from_numpy(seq.images).to(device)
        before = dict(dynamo_utils.calculate_time_spent())
        row["prime_s"] = timed(lambda: model.prime(images, cell.plan))
        spent = {k: v - before.get(k, 0.0) for k, v in dynamo_utils.calculate_time_spent().items()}
        row["prime_inductor_s"] = spent.get("backend_compile", 0.0)  # graphs compiled or loaded from the cache
        row["prime_dynamo_s"] = spent.get("entire_frame_compile", 0.0) - row["prime_inductor_s"]  # tracing the Python code
        with torch.inference_mode():
            row["first_forward_s"] = timed(lambda: model.run(images, cell.plan, seq))
            row["second_forward_s"] = timed(lambda: model.run(images, cell.plan, seq))
        phases.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return phases


def cluster_start(device: str) -> dict:
    """Seconds from nothing to a one-worker local cluster whose worker has imported the runner."""
    from distributed import Client

    from bench.distributed import local_cluster

    start = time.monotonic()
    with local_cluster(1, device) as cluster, Client(cluster) as client:
        ready = time.monotonic()
        client.submit(_import_runner).result()
        return {"cluster_s": ready - start, "worker_import_s": time.monotonic() - ready}


def _import_runner() -> None:
    import bench.runner  # noqa: F401  (the import is what is timed)


def main() -> None:
    from scripts.compare_workers import environment_caching_in

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite")
    parser.add_argument("out", type=Path)
    parser.add_argument("--only", action="append", required=True, help="cells to start, in the suite's order (globs of cell ids)")
    parser.add_argument("--passes", type=int, default=2, help="fresh processes, one after another, on one compile cache")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile-cache", type=Path, help="default: a fresh one, so the first pass is cold")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"phases": child(args.suite, args.only, args.device), "dask": cluster_start(args.device)}))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    passes = []
    with tempfile.TemporaryDirectory(prefix="compile-cache-") as fresh:
        cache = args.compile_cache or Path(fresh)
        cache.mkdir(parents=True, exist_ok=True)
        cold = not any(cache.iterdir())
        env = environment_caching_in(cache)
        for number in range(args.passes):
            command = [sys.executable, "-m", "scripts.startup_phases", args.suite, str(args.out), "--child", "--device", args.device, *[a for g in args.only for a in ("--only", g)]]
            start = time.monotonic()
            done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
            if done.returncode:
                sys.exit(f"startup_phases: pass {number + 1} failed (its error is above)")
            passes.append({"pass": number + 1, "process_s": time.monotonic() - start, **json.loads(done.stdout.strip().splitlines()[-1])})
    from bench.env import fingerprint

    (args.out / "startup_phases.json").write_text(json.dumps({"suite": args.suite, "only": args.only, "env": fingerprint(args.device), "passes": passes}, indent=1) + "\n")
    lines = [f"# Start-up phases: {args.suite}, {' '.join(args.only)}", ""]
    for p in passes:
        lines += [f"## Pass {p['pass']} ({'cold' if p['pass'] == 1 and cold else 'warm'} compile cache): {p['process_s']:.1f} s in all", ""]
        lines += [f"- Dask: a one-worker cluster in {p['dask']['cluster_s']:.1f} s, its worker's imports {p['dask']['worker_import_s']:.1f} s"]
        for row in p["phases"]:
            lines.append("- " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        lines.append("")
    (args.out / "startup_phases.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
