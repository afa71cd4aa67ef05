"""Wall time and peak memory of the attention analysis (`avggt-bench analyze`'s statistics pass) on a GPU.

    python -m scripts.time_analysis --out results/analysis-timing/timing.json        # VGGT-1B, 100 frames, 518×392, CUDA
    python -m scripts.time_analysis --model vggt-tiny --frames 4 --size 84x112 --device cpu --out /tmp/t.json   # toy run

Random weights (the statistics cost the same whatever the weights); the synthetic scene `orbit`,
rendered at the model's input size (exact depth and cameras, which the correspondences need).
Times, after one untimed dense forward (kernels warm): one dense forward, then one forward under
the `AttentionRecorder` (every global layer's statistics for --queries sampled queries), each with
CUDA's peak allocated memory. Writes the numbers, the per-layer results and the environment to --out
as JSON, and prints them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch

from bench.attention_stats import AttentionRecorder
from bench.env import fingerprint, summary
from bench.methods import DensePlan
from bench.models import create_model
from bench.timing import time_forward
from datasets_adapters.synthetic import SyntheticScenes


@click.command()
@click.option("--model", "model_name", default="vggt-1b", show_default=True)
@click.option("--frames", default=100, show_default=True)
@click.option("--size", default="392x518", show_default=True, help="image H×W (multiples of 14)")
@click.option("--queries", default=256, show_default=True, help="sampled query patches (the suite's analysis.queries)")
@click.option("--radius", default=1, show_default=True)
@click.option("--device", default="cuda", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def main(model_name: str, frames: int, size: str, queries: int, radius: int, device: str, out: Path) -> None:
    height, width = (int(side) for side in size.lower().split("x"))
    begin = time.perf_counter()
    scenes = SyntheticScenes(length=frames, height=height, width=width)
    sequence = scenes.load_frames("orbit", scenes.frame_ids("orbit"))
    render_s = time.perf_counter() - begin
    model = create_model(model_name, "random").to(device).eval()
    images = torch.from_numpy(sequence.images).to(device)

    dense = DensePlan()
    time_forward(lambda: model.run(images, dense, sequence), device, warmup=0, repeats=1)  # warm the kernels
    _, dense_timing = time_forward(lambda: model.run(images, dense, sequence), device, warmup=0, repeats=1)
    recorder = AttentionRecorder(queries, radius, seed=0)
    recorder.prepare(sequence)
    _, analysis_timing = time_forward(lambda: model.run(images, recorder, sequence), device, warmup=0, repeats=1)
    row, _ = recorder.result()

    result = {
        "model": model_name,
        "weights": "random",
        "frames": frames,
        "image_size": [height, width],
        "queries": row["attention.queries"],
        "correspondence_pairs": row["attention.pairs"],
        "render_s": render_s,
        "dense_forward_s": dense_timing.median_s,
        "dense_peak_gib": dense_timing.peak_mem_gib,
        "analysis_forward_s": analysis_timing.median_s,
        "analysis_peak_gib": analysis_timing.peak_mem_gib,
        "layers": {name: row[f"attention.{name}"] for name in ("hit", "mass", "other", "entropy")} | {"chance": row["attention.chance_hit"]},
        "environment": fingerprint(device),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)) + "\n")
    peak = "" if analysis_timing.peak_mem_gib is None else f", peak {analysis_timing.peak_mem_gib:.2f} GiB (dense forward {dense_timing.peak_mem_gib:.2f} GiB)"
    click.echo(
        f"{model_name}, {frames} frames of {height}×{width}, {row['attention.queries']} queries: analysis forward "
        f"{analysis_timing.median_s:.2f} s (dense forward {dense_timing.median_s:.2f} s){peak}; on {summary(result['environment'])}"
    )
    click.echo(f"wrote {out}", err=True)


if __name__ == "__main__":
    main()
