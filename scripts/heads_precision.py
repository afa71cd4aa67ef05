"""How far bf16 heads (model option `heads_dtype: bfloat16`) move a model's outputs from the
released float32 heads.

    python -m scripts.heads_precision --out results/heads-precision-cpu        # CPU, random weights
    python -m scripts.heads_precision --model vggt-1b --weights facebook/VGGT-1B --device cuda --frames 8 --out DIR

For each model and synthetic scene (rendered at --size): one forward with each heads precision,
same weights, same images, converted to the harness's `Prediction`. Per output, the largest and
the mean difference, absolute and relative to the float32 value: depth per pixel, world points
per point (Euclidean norm), confidences per pixel, cameras per frame (rotation angle in degrees,
translation by its norm, focal lengths), and the raw pose output (VGGT's pose encoding, π³'s
camera-to-world matrices) per entry. Writes heads_precision.json and heads_precision.md to --out.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch
from tabulate import tabulate

from bench.env import fingerprint, summary
from bench.models import Prediction, create_model
from datasets_adapters.synthetic import SyntheticScenes

RAW_POSES = ("pose_enc", "camera_poses")  # the pose output in each model's own terms


def differences(reference: Prediction, other: Prediction) -> dict[str, dict[str, float]]:
    """{output: {max_abs, mean_abs, max_rel, mean_rel}} of `other` against `reference` (relative:
    to the reference's magnitude, per pixel, point, frame or entry; cameras' rotations: degrees)."""
    rotation = np.einsum("sij,skj->sik", reference.extrinsics[:, :, :3], other.extrinsics[:, :, :3])
    pairs = {
        "depth": (reference.depth, other.depth, None),
        "world_points": (reference.world_points, other.world_points, -1),
        "depth_conf": (reference.depth_conf, other.depth_conf, None),
        "translation": (reference.extrinsics[:, :, 3], other.extrinsics[:, :, 3], -1),
        "focal": (reference.intrinsics[:, [0, 1], [0, 1]], other.intrinsics[:, [0, 1], [0, 1]], None),
        **{name: (reference.raw[name], other.raw[name], None) for name in RAW_POSES if name in reference.raw},
    }
    out = {name: _stats(a, b, axis) for name, (a, b, axis) in pairs.items()}
    angle = np.degrees(np.arccos(np.clip((np.trace(rotation, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)))
    out["rotation_deg"] = {"max_abs": float(angle.max()), "mean_abs": float(angle.mean())}
    return out


def _stats(reference: np.ndarray, other: np.ndarray, axis: int | None) -> dict[str, float]:
    """Differences per element (axis None) or per vector along `axis`, over the values finite in
    both (random weights can give an infinite focal length); relative where the reference is not
    zero. Empty where nothing is finite."""
    finite = np.isfinite(reference) & np.isfinite(other)
    reference, other = (np.where(finite, x, 0.0).astype(np.float64) for x in (reference, other))
    size = (lambda x: np.abs(x)) if axis is None else (lambda x: np.linalg.norm(x, axis=axis))
    kept = finite if axis is None else finite.all(axis=axis)
    diff, magnitude = size(other - reference)[kept], size(reference)[kept]
    if not diff.size:
        return {}
    rel = diff[magnitude > 0] / magnitude[magnitude > 0]
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "max_rel": float(rel.max()), "mean_rel": float(rel.mean())}


def measure(model_name: str, weights: str, scene: str, frames: int, size: tuple[int, int], device: str) -> dict:
    """One model on one scene: the seconds of each forward and the differences of bf16 heads from float32."""
    scenes = SyntheticScenes(length=frames, height=size[0], width=size[1])
    images = torch.from_numpy(scenes.load_frames(scene, scenes.frame_ids(scene)).images).to(device)
    predictions, seconds = {}, {}
    for heads_dtype in ("float32", "bfloat16"):
        model = create_model(model_name, weights, heads_dtype=heads_dtype).to(device)
        begin = time.perf_counter()
        with torch.inference_mode():
            predictions[heads_dtype] = model.to_prediction(model(images))
        seconds[heads_dtype] = round(time.perf_counter() - begin, 2)
        del model  # one model in memory at a time
    return {"model": model_name, "weights": weights, "scene": scene, "frames": frames, "size": list(size),
            "forward_s": seconds, "differences": differences(predictions["float32"], predictions["bfloat16"])}  # fmt: skip


def markdown(results: list[dict], device: str) -> str:
    """One table per model and scene: output × (max, mean) × (absolute, relative); "—" where no
    value is finite in both runs."""
    parts = [f"# bf16 heads against float32 heads ({device})", ""]
    for r in results:
        weights = "random weights" if r["weights"] == "random" else f"weights {r['weights']}"
        parts += [f"## {r['model']}, scene {r['scene']}, {r['frames']} frames of {r['size'][0]}×{r['size'][1]}, {weights}", ""]
        rows = [[name, *(f"{d[key]:.3g}" if key in d else "—" if not d else "" for key in ("max_abs", "mean_abs", "max_rel", "mean_rel"))] for name, d in r["differences"].items()]
        parts += [tabulate(rows, headers=["output", "max abs", "mean abs", "max rel", "mean rel"], tablefmt="github"), ""]
    return "\n".join(parts)


@click.command()
@click.option("--model", "models", multiple=True, default=("vggt-tiny", "pi3-tiny", "vggt-1b", "pi3"), show_default=True)
@click.option("--weights", default="random", show_default=True, help="random, a file, or a cached Hugging Face id (one for every --model)")
@click.option("--scene", "scenes", multiple=True, default=("orbit", "walk"), show_default=True)
@click.option("--frames", default=2, show_default=True)
@click.option("--size", default="392x518", show_default=True, help="image H×W (multiples of 14)")
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(models: tuple[str, ...], weights: str, scenes: tuple[str, ...], frames: int, size: str, device: str, out: Path) -> None:
    height, width = (int(side) for side in size.lower().split("x"))
    results = []
    for model_name in models:
        for scene in scenes:
            results.append(measure(model_name, weights, scene, frames, (height, width), device))
            click.echo(f"{model_name} {scene}: {json.dumps(results[-1]['forward_s'])}", err=True)
    out.mkdir(parents=True, exist_ok=True)
    env = fingerprint(device)
    (out / "heads_precision.json").write_text(json.dumps({"env": env, "results": results}, indent=2) + "\n")
    table = markdown(results, summary(env))
    (out / "heads_precision.md").write_text(table)
    click.echo(table)


if __name__ == "__main__":
    main()
