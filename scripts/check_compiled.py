"""Compiled stages against eager on the GPU: the same model, the same inputs, every output.

    python -m scripts.check_compiled --models vggt-1b,pi3 --methods dense,avggt --frames 8 --out results/speed-h200/compiled_check.json

Random weights, random 518×392 images, both runs under the model's own bf16 autocast, for each
method's plan (a plan may compile stages of its own, such as AVGGT's merge). The difference is
reported next to the output's scale (median |value|), so a reader can judge it against bf16's
resolution (2^-8 ≈ 0.4 % relative).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from bench.env import fingerprint
from bench.methods import resolve_plan
from bench.models import create_model


@click.command()
@click.option("--models", default="vggt-1b,pi3", show_default=True, help="comma-separated model names")
@click.option("--methods", default="dense,avggt", show_default=True, help="comma-separated method presets")
@click.option("--frames", default=8, show_default=True)
@click.option("--size", default="392x518", show_default=True, help="image H×W")
@click.option("--device", default="cuda", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def main(models: str, methods: str, frames: int, size: str, device: str, out: Path) -> None:
    height, width = (int(x) for x in size.lower().split("x"))
    images = torch.rand(frames, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    report = {}
    for name in models.split(","):
        model = create_model(name, weights="random").to(device).eval()
        plans = {method: resolve_plan(method, {}, model.traits) for method in methods.split(",")}
        with torch.inference_mode():
            eager = {method: {k: v.float() for k, v in model(images, plan).items()} for method, plan in plans.items()}
            model.compile_stages()
            fused = {method: {k: v.float() for k, v in model(images, plan).items()} for method, plan in plans.items()}
        report[name] = {
            method: {
                key: {
                    "max_abs_diff": (fused[method][key] - reference).abs().max().item(),
                    "median_abs_diff": (fused[method][key] - reference).abs().median().item(),
                    "median_abs_value": reference.abs().median().item(),
                }
                for key, reference in eager[method].items()
            }
            for method in plans
        }
        print(name, json.dumps(report[name], indent=1), flush=True)
        del model, eager, fused
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": fingerprint(device), "frames": frames, "size": [height, width], "methods": methods.split(","), "outputs": report}, indent=1) + "\n")


if __name__ == "__main__":
    main()
