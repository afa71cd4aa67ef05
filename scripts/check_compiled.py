"""Compiled stages against eager on the GPU: the same model, the same inputs, every output.

    python scripts/check_compiled.py --models vggt-1b,pi3 --frames 8 --out results/speed-h200/compiled_check.json

Random weights, random 518×392 images, both runs under the model's own bf16 autocast. The
difference is reported next to the output's scale (median |value|), so a reader can judge it
against bf16's resolution (2^-8 ≈ 0.4 % relative).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.models import create_model  # noqa: E402


@click.command()
@click.option("--models", default="vggt-1b,pi3", show_default=True, help="comma-separated model names")
@click.option("--frames", default=8, show_default=True)
@click.option("--size", default="392x518", show_default=True, help="image H×W")
@click.option("--device", default="cuda", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def main(models: str, frames: int, size: str, device: str, out: Path) -> None:
    height, width = (int(x) for x in size.lower().split("x"))
    images = torch.rand(frames, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    report = {}
    for name in models.split(","):
        model = create_model(name, weights="random").to(device).eval()
        with torch.inference_mode():
            eager = {k: v.float() for k, v in model(images).items()}
            model.compile_stages()
            fused = {k: v.float() for k, v in model(images).items()}
        report[name] = {
            key: {
                "max_abs_diff": (fused[key] - eager[key]).abs().max().item(),
                "median_abs_diff": (fused[key] - eager[key]).abs().median().item(),
                "median_abs_value": eager[key].abs().median().item(),
            }
            for key in eager
        }
        print(name, json.dumps(report[name], indent=1), flush=True)
        del model, eager, fused
        torch.cuda.empty_cache()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"frames": frames, "size": [height, width], "outputs": report}, indent=1) + "\n")


if __name__ == "__main__":
    main()
