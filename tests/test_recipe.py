"""The newcomer's recipe end to end: a new operator with its preset, a new metric and a new dataset
adapter (tests/recipe/, one file each, registering themselves) run through a suite like the
built-in ones: `avggt-bench run`, then the report."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from bench.cli import main
from bench.methods import METHODS, OPERATORS, AttentionKernel, Layout
from bench.methods.dense import dense
from bench.report import load_results, render
from bench.store import read_raw, read_rows
from datasets_adapters import DATASETS
from metrics import METRICS
from tests.native_datasets import look_at_c2w, orbit_eyes

RECIPE = ("key_frames_operator", "centre_metric", "turntable_dataset")


@pytest.fixture
def recipe():
    """Import the three files (which registers them) and take them out of the registries afterwards."""
    modules = [importlib.import_module(f"tests.recipe.{name}") for name in RECIPE]
    yield modules
    for registry, name in ((OPERATORS, "key_frames"), (METHODS, "key-frames"), (METRICS, "centre"), (DATASETS, "turntable")):
        registry.unregister(name)
    for module in modules:
        sys.modules.pop(module.__name__)


def write_turntable(root, scenes=("mug", "shoe"), frames=6, hw=(56, 70)) -> None:
    k = np.array([[60.0, 0.0, 34.5], [0.0, 60.0, 27.5], [0.0, 0.0, 1.0]])
    for s, scene in enumerate(scenes):
        folder = root / scene
        folder.mkdir(parents=True)
        lines = []
        for i, eye in enumerate(orbit_eyes(frames, start=0.5 * s)):
            lines.append(" ".join(f"{x:.12g}" for x in np.linalg.inv(look_at_c2w(eye))[:3].ravel()))
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (*hw, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
        (folder / "K.txt").write_text("\n".join(" ".join(map(str, row)) for row in k) + "\n")


def test_the_new_operator_is_dense_attention_over_the_kept_frames(recipe):
    operator = OPERATORS.get("key_frames")
    layout = Layout(frames=4, tokens_per_frame=3, special_tokens=1, grid=(1, 2), reference_frame=None)
    q, k, v = (torch.randn(1, 2, 12, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    kernel = AttentionKernel("math")
    assert torch.allclose(operator.run(q, k, v, layout, kernel=kernel, every=1), dense(q, k, v, layout, kernel=kernel))
    kept = [0, 1, 2, 9, 10, 11]  # frames 0 and 3
    assert torch.allclose(operator.run(q, k, v, layout, kernel=kernel, every=3), kernel.attend(q, k[:, :, kept], v[:, :, kept]))
    assert operator.flops({"every": 3}, layout, 16) == 4.0 * 12 * 6 * 16


def test_a_suite_runs_the_new_method_metric_and_dataset(recipe, tmp_path):
    write_turntable(tmp_path / "data")
    suite = {
        "name": "recipe",
        "models": [{"name": "oracle", "weights": "none"}, {"name": "vggt-tiny", "weights": "random"}],
        "methods": ["dense", {"name": "key-frames", "params": {"every": 3}}],
        "datasets": [{"name": "turntable", "root": str(tmp_path / "data"), "frames": [6], "sampling": {"kind": "first-n"}, "preprocess": "none"}],
        "timing": {"warmup": 0, "repeats": 1},
        "metrics": ["centre", "pose"],
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    listed = CliRunner().invoke(main, ["list", "methods"])
    assert "key-frames" in listed.output and "0-23 key_frames (every=2)" in listed.output
    result = CliRunner().invoke(main, ["run", str(tmp_path / "suite.yaml"), "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 0 and "recorded 8 ok" in result.output, result.output
    rows = read_rows(tmp_path / "out")
    oracle = [r for r in rows if r["model"] == "oracle"]
    assert all(r["centre.centre_error"] == pytest.approx(0.0, abs=1e-9) and r["pose.auc30"] == pytest.approx(100.0) for r in oracle)
    tiny = next(r for r in rows if r["model"] == "vggt-tiny" and r["method"] == "key-frames")
    assert tiny["plan"]["layers"] == [{"layers": "0-3", "operator": "key_frames", "params": {"every": 3}}] and tiny["metric_versions"]["centre"] == 1
    assert len(read_raw(tmp_path / "out", tiny)["centre.frame_centre_error"]) == 6
    report = render(load_results(tmp_path / "out"), "md", tmp_path / "out")
    assert "vggt-tiny (random) · turntable · 6 frames" in report and "centre.centre_error" in report
