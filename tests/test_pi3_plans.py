"""Every attention plan inside the tiny pi3: the methods' equivalences hold through a whole forward
pass, the presets resolve for pi3's 18 global layers without a reference frame, and the plans that
treat all frames alike keep pi3's equivariance to the order of its frames."""

from __future__ import annotations

import pytest
import torch

from bench.methods import MethodNotApplicable, resolve_plan
from bench.models import create_model, published_traits
from bench.models.pi3 import Pi3

OUTPUTS = ("camera_poses", "local_points", "points", "conf")
FRAMES = 4


@pytest.fixture(scope="module")
def model() -> Pi3:
    return create_model("pi3-tiny", seed=0).double()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """4 frames of 8×9 patches: 4·(5 + 72) = 308 tokens, three query blocks of the block-sparse operator."""
    return torch.rand(FRAMES, 3, 8 * 14, 9 * 14, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def plan_for(model: Pi3, method: str, **params):
    return resolve_plan(method, params, model.traits)


def run(model: Pi3, images: torch.Tensor, plan) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model(images, plan=plan)


def assert_same_outputs(got: dict, expected: dict, atol: float = 1e-9) -> None:
    for name in OUTPUTS:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-9, atol=atol, msg=lambda m: f"{name}: {m}")


@pytest.fixture(scope="module")
def dense(model: Pi3, images: torch.Tensor) -> dict[str, torch.Tensor]:
    return run(model, images, plan_for(model, "pi3"))


def test_the_pi3_preset_is_the_model_default(model: Pi3, images: torch.Tensor, dense: dict) -> None:
    assert_same_outputs(run(model, images, None), dense, atol=0)


def test_frame_over_all_layers_is_each_frame_run_alone(model: Pi3, images: torch.Tensor) -> None:
    """Global attention over one frame is frame attention, and pi3 has no reference frame."""
    got = run(model, images, plan_for(model, "g2f", frame_layers="all"))
    for frame in range(FRAMES):
        alone = run(model, images[frame : frame + 1], None)
        assert_same_outputs({name: got[name][:, frame : frame + 1] for name in OUTPUTS}, alone)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("avggt", dict(frame_layers="none", sigma=1, diagonal=False, mean=False)),
        ("avggt", dict(frame_layers="none", sigma=1, diagonal=True, mean=True)),  # nothing dropped: no extra key
        ("sparse-vggt-50", dict(sparse_ratio=0.0)),
        ("sparse-vggt-75", dict(sparse_ratio=0.0, cdf_threshold=1.0)),
        ("fastvggt", dict(ratio=0.0)),
    ],
)
def test_plans_at_their_exact_settings_are_dense(model: Pi3, images: torch.Tensor, dense: dict, method: str, params: dict) -> None:
    assert_same_outputs(run(model, images, plan_for(model, method, **params)), dense)


@pytest.mark.parametrize("method", ["g2f", "avggt", "sparse-vggt-75", "fastvggt"])
def test_accelerated_plans_change_the_outputs(model: Pi3, images: torch.Tensor, dense: dict, method: str) -> None:
    params = {"sparse_ratio": 0.9, "cdf_threshold": 0.1} if method.startswith("sparse") else {}
    got = run(model, images, plan_for(model, method, **params))
    assert all(torch.isfinite(got[name]).all() for name in OUTPUTS)
    assert not torch.allclose(got["points"], dense["points"], rtol=0, atol=1e-9)


@pytest.mark.parametrize(("method", "params"), [("g2f", {}), ("avggt", {}), ("avggt", dict(sigma=4, mean_log_count=True))])
def test_plans_without_a_reference_frame_keep_frame_order_equivariance(model: Pi3, images: torch.Tensor, method: str, params: dict) -> None:
    plan = plan_for(model, method, **params)
    order = torch.tensor([2, 0, 3, 1])
    straight, permuted = run(model, images, plan), run(model, images[order], plan)
    assert_same_outputs(permuted, {name: straight[name][:, order] for name in OUTPUTS}, atol=1e-8)


def test_avggt_on_the_released_model_converts_the_first_ten_of_18_global_layers() -> None:
    for method in ("avggt", "g2f"):
        described = resolve_plan(method, {}, published_traits("pi3")).describe(frames=100)
        assert described["layers"][0] == {"layers": "0-9", "operator": "frame", "params": {}}
    avggt = resolve_plan("avggt", {}, published_traits("pi3")).describe(frames=100)
    assert [(group["layers"], group["operator"]) for group in avggt["layers"]] == [("0-9", "frame"), ("10-17", "subsample")]
    assert avggt["layers"][1]["params"]["keep_reference"] is False


def test_the_tiny_model_scales_t_early_to_its_four_global_layers(model: Pi3) -> None:
    described = plan_for(model, "avggt").describe(frames=FRAMES)
    assert [(group["layers"], group["operator"]) for group in described["layers"]] == [("0-1", "frame"), ("2-3", "subsample")]


def test_vggt_only_settings_are_refused_for_pi3(model: Pi3) -> None:
    with pytest.raises(MethodNotApplicable):
        plan_for(model, "vggt")
    with pytest.raises(ValueError, match="no reference frame"):
        plan_for(model, "avggt", keep_reference=True)
