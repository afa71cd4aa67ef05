"""Small frame counts with and without CUDA graphs, in one process on one GPU: each method's
forward time as a plain call of the compiled model and as a replayed graph (model option
`cuda_graph_frames`), the speedups over dense both ways, and how far the graph's outputs are from
the plain call's.

    python -m scripts.graph_speed --models vggt-1b,pi3 --methods avggt --frames 2,8,32 --out results/graphs-h200

Random weights, random 518×392 images. Writes OUT/graph_speed.json and OUT/graph_speed.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch
from tabulate import tabulate

from bench.env import fingerprint
from bench.methods import resolve_plan
from bench.models import create_model
from bench.timing import time_forward


@click.command()
@click.option("--models", default="vggt-1b,pi3", show_default=True, help="comma-separated model names")
@click.option("--methods", default="avggt", show_default=True, help="comma-separated method presets (dense is always timed)")
@click.option("--frames", default="2,8,32", show_default=True, help="comma-separated frame counts")
@click.option("--repeats", default=20, show_default=True)
@click.option("--size", default="392x518", show_default=True, help="image H×W")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(models: str, methods: str, frames: str, repeats: int, size: str, out: Path) -> None:
    height, width = (int(x) for x in size.lower().split("x"))
    counts = [int(n) for n in frames.split(",")]
    rows = []
    for name in models.split(","):
        model = create_model(name, weights="random", compile=True, cuda_graph_frames=max(counts)).to("cuda").eval()
        for count in counts:
            images = torch.rand(count, 3, height, width, generator=torch.Generator().manual_seed(count)).to("cuda")
            for method in dict.fromkeys(["dense", *methods.split(",")]):
                plan = resolve_plan(method, {}, model.traits)
                model.prime(images, plan)  # compiles, then captures
                plain, plain_time = time_forward(lambda: model(images, plan=plan), "cuda", warmup=2, repeats=repeats)
                plain = {k: v.float() for k, v in plain.items()}
                graphed, graph_time = time_forward(lambda: model.run(images, plan), "cuda", warmup=2, repeats=repeats)
                diff = max(((graphed[k].float() - v).abs().max() / v.abs().median().clamp_min(1e-12)).item() for k, v in plain.items())
                rows.append({"model": name, "method": method, "frames": count, "plain_s": plain_time.median_s, "graph_s": graph_time.median_s, "max_rel_diff": diff})
                print(rows[-1], flush=True)
        del model
        torch.cuda.empty_cache()
    write(rows, fingerprint("cuda"), (height, width), repeats, out)


def write(rows: list[dict], environment: dict, size: tuple[int, int], repeats: int, out: Path) -> None:
    """Each row's speedup over dense (plain and graphed) and gain from the graph; OUT/graph_speed.json and .md."""
    dense = {(r["model"], r["frames"]): r for r in rows if r["method"] == "dense"}
    for row in rows:
        base = dense[(row["model"], row["frames"])]
        row.update(plain_speedup=base["plain_s"] / row["plain_s"], graph_speedup=base["graph_s"] / row["graph_s"], graph_gain=row["plain_s"] / row["graph_s"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "graph_speed.json").write_text(json.dumps({"environment": environment, "size": list(size), "repeats": repeats, "rows": rows}, indent=1) + "\n")
    table = tabulate(rows, headers="keys", tablefmt="github", floatfmt=".4g")
    (out / "graph_speed.md").write_text(f"# Forward time with and without CUDA graphs ({size[0]}×{size[1]}, median of {repeats})\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
