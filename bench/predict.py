"""Run one model on a set of images: `predict_images` (the API) and `predict`, the `avggt-bench predict` command.

The command reads image files with PIL (alpha composited on white), preprocesses them with the
model's mode (or --mode), resolves --method/-p into an attention plan, and writes the prediction
with the preprocessed images to one .npz.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from PIL import Image

from bench.methods import MethodNotApplicable, resolve_plan
from bench.methods.params import parse_overrides
from bench.methods.layout import AttentionPlan
from bench.models import BenchModel, Prediction, create_model
from bench.env import unavailable
from bench.models.weights import WeightsError
from bench.options import device_option
from bench.preprocess import PREPROCESS, ResizeMode
from bench.registry import UnknownNameError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def predict_images(model: BenchModel, images: np.ndarray | torch.Tensor, plan: AttentionPlan | None = None) -> Prediction:
    """Model-ready images (S, 3, H, W) in [0, 1] → the model's `Prediction`, on the model's device."""
    device = next(model.parameters()).device
    images = torch.as_tensor(images, dtype=torch.float32, device=device)
    with torch.inference_mode():
        return model.to_prediction(model.run(images, plan))


def image_files(sources: tuple[str, ...] | list[str]) -> list[Path]:
    """Each source a file or a folder (its image files, in natural name order: 2 before 10)."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted((p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
            if not found:
                raise click.BadParameter(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {source}", param_hint="--images")
            files += found
        elif source.is_file():
            files.append(source)
        else:
            raise click.BadParameter(f"{source} is neither an image file nor a folder", param_hint="--images")
    return files


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I")  # PIL's modes of a 16-bit grey PNG or TIFF


def load_image(path: Path) -> np.ndarray:
    """An image file → (3, H, W) float32 in [0, 1]; transparency composited on white, as the official
    loader does; a 16-bit grey image scaled by 65535 (PIL's RGB conversion would clip it to white)."""
    try:
        with Image.open(path) as img:
            if img.mode in SIXTEEN_BIT_MODES:
                grey = np.asarray(img, dtype=np.float32)
                if grey.max(initial=0) > 65535:
                    raise click.BadParameter(f"{path}: {img.mode} image with values above 65535; expected 8- or 16-bit", param_hint="--images")
                return np.repeat(grey[None] / 65535.0, 3, axis=0)
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img.convert("RGBA"))
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except OSError as err:
        raise click.BadParameter(f"cannot read image {path}: {err}", param_hint="--images") from None
    return rgb.transpose(2, 0, 1)


def save_prediction(path: Path, prediction: Prediction, images: np.ndarray) -> None:
    """One .npz: extrinsic (S,3,4) w2c, intrinsic (S,3,3), dense maps, the raw outputs by name, and images."""
    arrays = {
        "extrinsic": prediction.extrinsics,
        "intrinsic": prediction.intrinsics,
        "depth": prediction.depth,
        "depth_conf": prediction.depth_conf,
        "world_points": prediction.world_points,
        "world_points_conf": prediction.world_points_conf,
        **prediction.raw,
        "images": images,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as f:  # a file object: numpy appends no ".npz" to the name asked for
        np.savez(f, **{k: v for k, v in arrays.items() if v is not None})
    partial.replace(path)


def _parse_params(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    try:
        return parse_overrides(values)
    except ValueError as err:
        raise click.BadParameter(str(err), ctx=ctx, param=param) from None


@click.command("predict")
@click.option("--model", "model_name", default="vggt-1b", show_default=True, help="registered model name")
@click.option("--weights", required=True, help="local .pt/.safetensors file, cached Hugging Face id, or 'random'")
@click.option("--method", default="dense", show_default=True, help="method preset (attention plan)")
@click.option("-p", "--param", "params", multiple=True, callback=_parse_params, metavar="KEY=VALUE", help="method parameter override, e.g. -p sigma=4 -p mean=false (repeatable)")
@click.option("--device", callback=device_option, metavar="cpu|cuda|cuda:N", help="default: cuda when available")
@click.option("--images", "sources", multiple=True, required=True, help="a folder of images, or image files (repeatable)")
@click.option("--mode", default=None, help="preprocessing mode (crop, pad, pi3); default: the model's")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="output .npz")
def predict(model_name: str, weights: str, method: str, params: dict[str, Any], device: str | None, sources: tuple[str, ...], mode: str | None, out: Path) -> None:
    """Run a model on images and write its prediction to an .npz (at exactly --out)."""
    files = image_files(sources)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if (reason := unavailable(device)) is not None:
        raise click.BadParameter(reason, param_hint="--device")
    try:
        model = create_model(model_name, weights=weights).to(device)
        plan = resolve_plan(method, params, model.traits)
        mode = mode or model.preprocess_mode
        if mode is None:
            raise click.BadParameter(f"model {model_name!r} does not look at images (it answers from a dataset's ground truth): run it in a suite", param_hint="--model")
        preprocessing = PREPROCESS.get(mode)
    except (UnknownNameError, WeightsError, MethodNotApplicable, ValueError) as err:
        raise click.ClickException(str(err)) from None
    if not isinstance(preprocessing, ResizeMode):
        raise click.BadParameter(f"mode {mode!r} does not resize images for a model", param_hint="--mode")
    loaded = [load_image(f) for f in files]
    images = preprocessing.images(loaded).astype(np.float32)
    sizes = sorted({img.shape[1:] for img in loaded})
    if len(sizes) > 1:
        shown = ", ".join(f"{w}×{h}" for h, w in sizes[:4]) + (", ..." if len(sizes) > 4 else "")
        click.echo(f"warning: the images differ in size ({shown}); each is resized by mode {mode!r} and padded with white to {images.shape[3]}×{images.shape[2]}", err=True)
    prediction = predict_images(model, images, plan)
    save_prediction(out, prediction, images)
    click.echo(f"{len(files)} image{'s' if len(files) != 1 else ''} ({images.shape[3]}×{images.shape[2]}) → {out}")

