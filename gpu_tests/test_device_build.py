"""Random weights drawn on the GPU (the runner builds a cell's model inside its device's context):
the parameters are born there, one seed gives one set of weights, and the caller's CUDA random
stream is left as it was."""

from __future__ import annotations

import torch

from bench.runner import _build_model
from bench.suite import ModelSpec

if not torch.cuda.is_available():
    raise RuntimeError("gpu_tests need a CUDA device; run them through the device tool")


def test_random_weights_are_drawn_on_the_gpu_seeded_and_leave_the_cuda_stream_alone():
    spec = ModelSpec(name="vggt-tiny", label="vggt-tiny", weights="random", weights_path="random")
    state = torch.cuda.get_rng_state()
    first, second = (_build_model((spec, "cuda")) for _ in range(2))
    assert torch.equal(torch.cuda.get_rng_state(), state)
    assert all(p.device.type == "cuda" for p in first.parameters())
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    images = torch.rand(2, 3, 56, 70, device="cuda")
    with torch.inference_mode():
        out = first.run(images)
    assert all(torch.isfinite(v).all() for v in out.values() if isinstance(v, torch.Tensor) and v.is_floating_point())
