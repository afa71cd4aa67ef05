"""`avggt-bench predict`: images from a folder or files to one .npz, and its errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bench.models import create_model
from bench.predict import image_files, load_image, predict, predict_images


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in ("frame10.png", "frame2.png"):
        Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(root / name)
    rgba = rng.integers(0, 256, (120, 160, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: must come out white
    Image.fromarray(rgba, mode="RGBA").save(root / "frame1.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _run(*args: str):
    return CliRunner().invoke(predict, list(args), catch_exceptions=False)


def test_predict_writes_every_array(folder, tmp_path):
    out = tmp_path / "pred.npz"
    result = _run("--model", "vggt-tiny", "--weights", "random", "--device", "cpu", "--images", str(folder), "--out", str(out))
    assert result.exit_code == 0, result.output
    pred = np.load(out)
    s, h, w = 3, 392, 518  # 160×120 → width 518, height round(388.5/14)·14
    shapes = {
        "extrinsic": (s, 3, 4), "intrinsic": (s, 3, 3), "depth": (s, h, w), "depth_conf": (s, h, w),
        "world_points": (s, h, w, 3), "world_points_conf": (s, h, w), "pose_enc": (s, 9), "images": (s, 3, h, w),
    }  # fmt: skip
    assert {k: pred[k].shape for k in pred.files} == shapes
    assert (pred["images"][0] == 1.0).all()  # frame1.png, transparent → white, first in natural order


def test_pad_mode_and_files_given_one_by_one(folder, tmp_path):
    out = tmp_path / "pred.npz"
    files = [str(folder / "frame2.png"), str(folder / "frame10.png")]
    result = _run("--model", "vggt-tiny", "--weights", "random", "--device", "cpu", "--images", files[0], "--images", files[1], "--mode", "pad", "--out", str(out))
    assert result.exit_code == 0, result.output
    pred = np.load(out)
    assert pred["images"].shape == (2, 3, 518, 518)
    np.testing.assert_array_equal(pred["images"][0, :, 0], 1.0)  # white padding above the picture


def test_api_matches_the_model(folder):
    model = create_model("vggt-tiny", weights="random")
    images = np.stack([load_image(f) for f in image_files([str(folder)])])[:, :, :112, :154]
    pred = predict_images(model, images)
    with torch.inference_mode():
        expected = model.to_prediction(model(torch.from_numpy(images)))
    np.testing.assert_array_equal(pred.depth, expected.depth)
    np.testing.assert_array_equal(pred.extrinsics, expected.extrinsics)


def test_folders_list_images_in_natural_order(folder):
    assert [p.name for p in image_files([str(folder)])] == ["frame1.png", "frame2.png", "frame10.png"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--images", "/no/such/place"], "neither an image file nor a folder"),
        (["--model", "vggt-huge"], "unknown model 'vggt-huge'; known: .*vggt-1b"),
        (["--method", "dense", "-p", "ratio=0.5"], "method dense takes no parameters"),
        (["-p", "ratio"], "not of the form key=value"),
        (["--mode", "square"], "unknown preprocess mode 'square'"),
        (["--mode", "none"], "does not resize images"),
        (["--weights", "missing.safetensors"], "weights file not found: missing.safetensors"),
    ],
)
def test_errors_are_one_clear_message(folder, tmp_path, args, message):
    base = ["--model", "vggt-tiny", "--weights", "random", "--device", "cpu", "--images", str(folder), "--out", str(tmp_path / "p.npz")]
    result = _run(*base, *args)  # a repeated option takes its last value (--images accumulates)
    assert result.exit_code != 0
    assert re.search(message, result.output), result.output
    assert "Traceback" not in result.output
