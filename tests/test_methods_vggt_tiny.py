"""Plans inside the tiny VGGT model: the equivalences must hold through a whole forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from bench.methods import Layout, resolve_plan
from bench.models.base import create_model


OUTPUTS = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")


class PerFrameByHand:
    """A plan whose every global layer attends within each frame, by an explicit loop over frames."""

    is_dense = False

    def describe(self, frames: int | None = None) -> dict:
        return {"operator": "per-frame loop"}

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout) -> torch.Tensor:
        out = torch.empty_like(q)
        for f in range(layout.frames):
            span = slice(f * layout.tokens_per_frame, (f + 1) * layout.tokens_per_frame)
            scores = q[:, :, span] @ k[:, :, span].transpose(-1, -2) / math.sqrt(q.shape[-1])
            out[:, :, span] = torch.softmax(scores, dim=-1) @ v[:, :, span]
        return out


@pytest.fixture(scope="module")
def model():
    return create_model("vggt-tiny", weights="random", seed=0).double()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(4, 3, 8 * 14, 9 * 14, generator=gen, dtype=torch.float64)  # 4 frames, 8×9 patches: 3 query blocks


def run(model, images, plan) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model(images, plan=plan)


def assert_same_outputs(got: dict, expected: dict, atol: float = 1e-9) -> None:
    for name in OUTPUTS:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")


def plan_for(model, method: str, **params):
    return resolve_plan(method, params, model.traits)


@pytest.fixture(scope="module")
def dense_outputs(model, images):
    return run(model, images, plan_for(model, "dense"))


def test_frame_over_all_layers_is_a_model_whose_global_layers_attend_per_frame(model, images):
    got = run(model, images, plan_for(model, "g2f", frame_layers="all"))
    assert_same_outputs(got, run(model, images, PerFrameByHand()))


def test_dense_preset_is_the_model_default(model, images, dense_outputs):
    assert_same_outputs(run(model, images, None), dense_outputs, atol=0)


@pytest.mark.parametrize("method,params", [
    ("avggt", dict(frame_layers="none", sigma=1, diagonal=False, mean=False)),
    ("avggt", dict(frame_layers="none", sigma=1, diagonal=True, mean=True)),  # nothing dropped: no extra key
    ("sparse-vggt-50", dict(sparse_ratio=0.0)),
    ("fastvggt", dict(ratio=0.0)),
])
def test_accelerated_plans_at_their_exact_settings_are_dense(model, images, dense_outputs, method, params):
    assert_same_outputs(run(model, images, plan_for(model, method, **params)), dense_outputs)


@pytest.mark.parametrize("method", ["g2f", "avggt", "sparse-vggt-75", "fastvggt"])
def test_accelerated_plans_change_the_outputs(model, images, dense_outputs, method):
    plan = plan_for(model, method, **({"sparse_ratio": 0.9, "cdf_threshold": 0.1} if method.startswith("sparse") else {}))
    got = run(model, images, plan)
    assert all(torch.isfinite(got[name]).all() for name in OUTPUTS)
    assert not torch.allclose(got["world_points"], dense_outputs["world_points"], rtol=0, atol=1e-9)
    assert plan.describe(images.shape[0])["kernels_used"]
