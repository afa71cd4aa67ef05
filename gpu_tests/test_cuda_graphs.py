"""Forwards run as captured CUDA graphs (model option `cuda_graph_frames`), on a GPU (run through
the device tool: `python -m pytest gpu_tests`; CI has no GPU and does not collect this folder).

A replayed graph must give the forward's outputs for new images of the same shape, for every
method's plan, compiled or not, and keep its row's observations (kernels used, kept shares).
"""

from __future__ import annotations

import pytest
import torch

from bench.methods import resolve_plan
from bench.methods.presets import METHODS as PRESETS  # registry of method presets
from bench.models import create_model

if not torch.cuda.is_available():  # this folder is for GPU machines: say so, loudly, anywhere else
    raise RuntimeError("gpu_tests need a CUDA device; run them through the device tool")

DEVICE = torch.device("cuda")
METHODS = [name for name in PRESETS if name not in ("dense", "vggt", "pi3")]  # the family presets are dense


def images(seed: int, frames: int = 4) -> torch.Tensor:
    return torch.rand(frames, 3, 56, 84, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


@pytest.mark.parametrize("compile", [False, True])
@pytest.mark.parametrize("model_name", ["vggt-tiny", "pi3-tiny"])
@pytest.mark.parametrize("method", ["dense", *METHODS])
def test_a_replayed_graph_gives_the_forwards_outputs_for_new_images(model_name, method, compile):
    graphed = create_model(model_name, compile=compile, cuda_graph_frames=8).to(DEVICE)
    plan = resolve_plan(method, {}, graphed.traits)
    first, second = images(0), images(1)
    with torch.inference_mode():
        graphed.prime(first, plan)
        graphed.run(first, plan)
        replayed = {k: v.clone() for k, v in graphed.run(second, plan).items()}
        plain = graphed(second, plan=plan)
    assert graphed._captured is not None and graphed._captured[0] is plan, "the forward did not run as a graph"
    for key, value in plain.items():
        torch.testing.assert_close(replayed[key], value, rtol=0, atol=0, msg=f"{method} {key}")
    if not plan.is_dense:
        assert plan.describe(4)["kernels_used"], "the capture's kernels were not recorded"


def test_larger_forwards_run_plainly_and_free_the_graph():
    model = create_model("vggt-tiny", cuda_graph_frames=4).to(DEVICE)
    plan = resolve_plan("avggt", {}, model.traits)
    with torch.inference_mode():
        model.run(images(0, frames=4), plan)
        assert model._captured is not None
        model.run(images(0, frames=6), plan)
    assert model._captured is None
