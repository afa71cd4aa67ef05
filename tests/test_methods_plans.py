"""Plans, presets, parameter parsing and the shared attention kernel."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from bench.methods import METHODS, DensePlan, Layout, MethodNotApplicable, resolve_plan
from bench.methods.frame import frame
from bench.methods.kernels import AttentionKernel
from bench.methods.params import LayerSet, layer_set, parse_overrides
from bench.methods.layout import LayerRule
from bench.methods.plan import Plan
from bench.methods.presets import describe_method, early_layers
from bench.models import ModelTraits, published_traits
from bench.registry import UnknownNameError

PRESETS = ["dense", "vggt", "pi3", "g2f", "avggt", "sparse-vggt-50", "sparse-vggt-75", "fastvggt"]


def qkv(layout: Layout, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, 2, layout.num_tokens, 8, generator=gen, dtype=torch.float64) for _ in range(3))


def traits(family: str, layers: int) -> ModelTraits:
    """The released model of `family` as a method sees it, with `layers` global layers."""
    return replace(published_traits(family), num_global_layers=layers)


def operators_by_layer(plan) -> list[str]:
    return [rule.operator for rule in plan.layers]


# ---------------------------------------------------------------- parameters


def test_parse_overrides_splits_at_the_first_equals_sign():
    assert parse_overrides(["sigma=4", "mean=false", "frame_layers=0-8", "grid=2x3", "x=a=b"]) == {
        "sigma": "4", "mean": "false", "frame_layers": "0-8", "grid": "2x3", "x": "a=b",
    }


@pytest.mark.parametrize("bad", [["sigma"], ["=4"], ["sigma=4", "sigma=2"]])
def test_parse_overrides_rejects_malformed_pairs(bad):
    with pytest.raises(ValueError, match="sigma|key=value"):
        parse_overrides(bad)


@pytest.mark.parametrize("text,layers", [
    ("0-8", tuple(range(9))), ("0-8,20-23", tuple(range(9)) + (20, 21, 22, 23)), ("5", (5,)),
    ("none", ()), ("all", tuple(range(24))), ([1, 3], (1, 3)), (7, (7,)),
])
def test_layer_sets(text, layers):
    assert layer_set(text).indices(24, "layers") == layers


@pytest.mark.parametrize("bad", ["8-0", "a-b", "-3", True, "1-2-3"])
def test_layer_sets_reject_nonsense(bad):
    with pytest.raises(ValueError):
        layer_set(bad)


def test_layer_set_beyond_the_model_is_an_error():
    with pytest.raises(ValueError, match="0-23"):
        LayerSet(((20, 30),)).indices(24, "frame_layers")


def test_string_and_typed_overrides_resolve_alike():
    strings = resolve_plan("avggt", {"sigma": "4", "mean": "false", "frame_layers": "0-5", "grid": "2x3", "sigma_thresholds": "10,20"}, traits("vggt", 24))
    typed = resolve_plan("avggt", {"sigma": 4, "mean": False, "frame_layers": [0, 1, 2, 3, 4, 5], "grid": [2, 3], "sigma_thresholds": [10, 20]}, traits("vggt", 24))
    assert strings.describe(100) == typed.describe(100)


@pytest.mark.parametrize("method,params,message", [
    ("avggt", {"sigmaa": "4"}, "no parameter 'sigmaa'; allowed: frame_layers"),
    ("avggt", {"sigma": "3"}, "sigma='3'"),
    ("avggt", {"mean": "maybe"}, "true or false"),
    ("avggt", {"grid": "2x"}, "rows x cols"),
    ("avggt", {"frame_layers": "0-30"}, "global layers 0-23"),
    ("avggt", {"frame_layers": "0-8", "dense_layers": "8-9"}, "layer 8 is assigned both frame and dense"),
    ("avggt", {"sigma_thresholds": "150,30"}, "first <= second"),
    ("sparse-vggt-50", {"sparse_ratio": "1.5"}, r"\[0.0, 1.0\]"),
    ("sparse-vggt-50", {"implementation": "cuda"}, "auto, flex, masked"),
    ("fastvggt", {"protected": 1}, r"\[0.0, 1.0\)"),
    ("fastvggt", {"seed": "x"}, "integer"),
    ("dense", {"kernel": "fast"}, "auto, cudnn, flash, efficient, math"),
    ("dense", {"sigma": 4}, "method dense takes no parameters other than kernel, got 'sigma'"),
])
def test_bad_parameters_name_the_parameter(method, params, message):
    with pytest.raises(ValueError, match=message):
        resolve_plan(method, params, traits("vggt", 24))


# ---------------------------------------------------------------- presets


def test_every_preset_is_registered():
    assert METHODS.names() == PRESETS


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="avggt"):
        resolve_plan("avgt", {}, traits("vggt", 24))


def test_family_specific_presets():
    assert resolve_plan("vggt", {}, traits("vggt", 24)).is_dense
    assert resolve_plan("pi3", {}, traits("pi3", 18)).is_dense
    with pytest.raises(MethodNotApplicable):
        resolve_plan("vggt", {}, traits("pi3", 18))
    with pytest.raises(MethodNotApplicable):
        resolve_plan("pi3", {}, traits("vggt", 24))
    other = ModelTraits("dust3r", 12, None, 0, 0, None, None)  # a family no preset names: the generic presets apply
    assert resolve_plan("dense", {}, other).is_dense and operators_by_layer(resolve_plan("g2f", {}, other)) == ["dense"] * 12
    with pytest.raises(MethodNotApplicable):
        resolve_plan("vggt", {}, other)


def test_avggt_published_defaults():
    vggt = resolve_plan("avggt", {}, traits("vggt", 24))
    assert operators_by_layer(vggt) == ["frame"] * 9 + ["subsample"] * 15
    assert vggt.layers[9].params["keep_reference"] and vggt.layers[9].params["diagonal"] and vggt.layers[9].params["mean"]
    pi3 = resolve_plan("avggt", {}, traits("pi3", 18))
    assert operators_by_layer(pi3) == ["frame"] * 10 + ["subsample"] * 8
    assert not pi3.layers[10].params["keep_reference"]
    with pytest.raises(ValueError, match="no reference frame"):
        resolve_plan("avggt", {"keep_reference": "true"}, traits("pi3", 18))


def test_avggt_layer_ranges_are_parameters():
    plan = resolve_plan("avggt", {"frame_layers": "0-5", "dense_layers": "20-23"}, traits("vggt", 24))
    assert operators_by_layer(plan) == ["frame"] * 6 + ["subsample"] * 14 + ["dense"] * 4


def test_g2f_and_baselines_layers():
    assert operators_by_layer(resolve_plan("g2f", {}, traits("vggt", 24))) == ["frame"] * 9 + ["dense"] * 15
    assert operators_by_layer(resolve_plan("g2f", {}, traits("pi3", 18))) == ["frame"] * 10 + ["dense"] * 8
    assert operators_by_layer(resolve_plan("sparse-vggt-50", {}, traits("pi3", 18))) == ["block_sparse"] * 18
    assert operators_by_layer(resolve_plan("fastvggt", {"layers": "12-23"}, traits("vggt", 24))) == ["dense"] * 12 + ["merge"] * 12
    assert resolve_plan("sparse-vggt-75", {}, traits("vggt", 24)).layers[0].params["sparse_ratio"] == 0.75
    assert resolve_plan("fastvggt", {}, traits("vggt", 24)).layers[0].params == {"ratio": 0.9, "protected": 0.1, "seed": 0}


def test_t_early_scales_to_models_with_fewer_global_layers():
    assert early_layers(traits("vggt", 24)) == "0-8" and early_layers(traits("pi3", 18)) == "0-9"
    assert early_layers(traits("vggt", 4)) == "0-1" and early_layers(traits("pi3", 4)) == "0-1"
    assert early_layers(traits("vggt", 1)) == "none"
    assert operators_by_layer(resolve_plan("avggt", {}, traits("vggt", 4))) == ["frame", "frame", "subsample", "subsample"]


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_applies_to_the_oracle_trivially(name):
    plan = resolve_plan(name, {}, traits("oracle", 0))
    assert plan.describe(10)["layers"] == []
    assert plan.is_dense == (name in ("dense", "vggt", "pi3"))


def test_is_dense_follows_the_layers():
    assert resolve_plan("dense", {}, traits("vggt", 24)).is_dense
    assert resolve_plan("g2f", {"frame_layers": "none"}, traits("vggt", 24)).is_dense
    assert not resolve_plan("g2f", {}, traits("vggt", 24)).is_dense
    assert not resolve_plan("avggt", {}, traits("vggt", 24)).is_dense


# ---------------------------------------------------------------- describe


@pytest.mark.parametrize("name", PRESETS)
def test_describe_is_json_and_covers_every_layer(name):
    family = "pi3" if name == "pi3" else "vggt"
    plan = resolve_plan(name, {}, published_traits(family))
    described = json.loads(json.dumps(plan.describe(100)))
    covered = []
    for group in described["layers"]:
        first, _, last = group["layers"].partition("-")
        covered += range(int(first), int(last or first) + 1)
    assert covered == list(range(plan.num_global_layers))
    assert described["method"] == name and described["kernel"] == "auto"


@pytest.mark.parametrize("frames,sigma,window", [(10, 2, [1, 2]), (29, 2, [1, 2]), (30, 4, [2, 2]), (100, 4, [2, 2]), (150, 9, [3, 3]), (800, 9, [3, 3])])
def test_describe_resolves_auto_sigma_for_the_frame_count(frames, sigma, window):
    described = describe_method("avggt", published_traits("vggt"), frames=frames)
    params = described["layers"][1]["params"]
    assert (params["sigma"], params["window"], params["sigma_setting"]) == (sigma, window, "auto")


def test_describe_records_explicit_grid_and_settings():
    described = describe_method("avggt", published_traits("vggt"), frames=10, params={"grid": "2x3", "mean_log_count": "yes"})
    params = described["layers"][1]["params"]
    assert params["window"] == [2, 3] and params["sigma"] == 6 and params["mean_log_count"] is True
    assert described["settings"]["frame_layers"] == "0-8" and described["settings"]["grid"] == [2, 3]


def test_model_classes_declare_their_family():
    vggt, pi3 = published_traits("vggt"), published_traits("pi3")
    assert (vggt.num_global_layers, vggt.reference_frame, vggt.early_global_layers, vggt.preprocess_mode, vggt.default_weights) == (24, 0, 9, "crop", "facebook/VGGT-1B")
    assert (pi3.num_global_layers, pi3.reference_frame, pi3.early_global_layers, pi3.preprocess_mode, pi3.default_weights) == (18, None, 10, "pi3", "yyfz233/Pi3")
    assert describe_method("pi3", pi3)["family"] == "pi3"


# ---------------------------------------------------------------- attend


def test_plan_dispatches_each_layer_to_its_operator():
    layout = Layout(3, 2 + 4 * 5, 2, (4, 5), 0)
    q, k, v = qkv(layout)
    plan = resolve_plan("avggt", {"frame_layers": "0", "dense_layers": "2", "sigma": 1, "diagonal": False, "mean": False}, traits("vggt", 3))
    kernel = AttentionKernel()
    torch.testing.assert_close(plan.attend(0, q, k, v, layout), frame(q, k, v, layout, kernel=kernel), rtol=0, atol=0)
    dense = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), -1) @ v
    torch.testing.assert_close(plan.attend(1, q, k, v, layout), dense, rtol=0, atol=1e-12)  # σ 1: all keys
    torch.testing.assert_close(plan.attend(2, q, k, v, layout), dense, rtol=0, atol=1e-12)
    assert plan.describe()["kernels_used"] == ["flash"]


def test_plan_rejects_layers_and_shapes_it_does_not_cover():
    layout = Layout(2, 6, 2, (2, 2), 0)
    q, k, v = qkv(layout)
    plan = resolve_plan("dense", {}, traits("vggt", 2))
    with pytest.raises(ValueError, match="layers 0-1, got layer 2"):
        plan.attend(2, q, k, v, layout)
    with pytest.raises(ValueError, match="layout says 18"):
        plan.attend(0, q, k, v, Layout(3, 6, 2, (2, 2), 0))


def test_a_layer_assigned_twice_is_an_error():
    with pytest.raises(ValueError, match="layer 1 is assigned both frame and merge"):
        Plan("x", "vggt", 3, [LayerRule("frame", (0, 1)), LayerRule("merge", (1,), {})])


def test_dense_plan_runs_on_the_shared_kernel():
    layout = Layout(2, 6, 2, (2, 2), 0)
    q, k, v = qkv(layout)
    plan = DensePlan()
    out = plan.attend(0, q, k, v, layout)
    torch.testing.assert_close(out, torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), -1) @ v, rtol=0, atol=1e-12)
    assert plan.describe() == {"operator": "dense", "kernel": "auto", "kernels_used": ["flash"]}


# ---------------------------------------------------------------- kernel


@pytest.mark.parametrize("backend", ["auto", "flash", "math"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernel_attention_and_log_sum_exp(backend, dtype):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 37, 16, generator=gen, dtype=torch.float64) for _ in range(3))
    scores = q @ k.transpose(-1, -2) / 4.0
    kernel = AttentionKernel(backend)
    out, lse = kernel.attend_with_lse(q.to(dtype), k.to(dtype), v.to(dtype))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(lse.double(), torch.logsumexp(scores, -1), rtol=0, atol=tol)
    torch.testing.assert_close(out.double(), torch.softmax(scores, -1) @ v, rtol=0, atol=tol)
    torch.testing.assert_close(kernel.attend(q.to(dtype), k.to(dtype), v.to(dtype)), out, rtol=0, atol=tol)
    assert kernel.used == {"flash" if backend == "auto" else backend}


def test_math_kernel_chunks_give_the_same_result(monkeypatch):
    import bench.methods.kernels as module

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 50, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    whole = module._math_attention_with_lse(q, k, v)
    monkeypatch.setattr(module, "_MATH_CHUNK_ELEMENTS", 7)
    for got, expected in zip(module._math_attention_with_lse(q, k, v), whole):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)


def test_kernel_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="choose one of auto"):
        AttentionKernel("fastest")
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(ValueError, match="kernel 'cudnn' cannot run attention on cpu"):
        AttentionKernel("cudnn").attend(q, q, q)


def test_plan_kernel_setting_reaches_every_operator():
    layout = Layout(2, 2 + 4 * 4, 2, (4, 4), 0)
    q, k, v = qkv(layout)
    plan = resolve_plan("avggt", {"kernel": "math", "frame_layers": "0", "sigma": 4}, traits("vggt", 2))
    plan.attend(0, q, k, v, layout)
    plan.attend(1, q, k, v, layout)
    assert plan.describe(2)["kernels_used"] == ["math"]


def test_observations_cover_one_cell():
    """A plan shared by several cells reports, after each reset, only the kernels its next forwards ran."""
    layout = Layout(2, 2 + 4 * 4, 2, (4, 4), 0)
    q, k, v = qkv(layout)
    plan = resolve_plan("g2f", {"frame_layers": "0"}, traits("vggt", 2))
    plan.attend(0, q, k, v, layout)
    assert plan.describe(2)["kernels_used"] == ["flash"]
    plan.reset_observations()
    assert plan.describe(2)["kernels_used"] == []
    dense = DensePlan()
    dense.attend(0, q, k, v, layout)
    dense.reset_observations()
    assert dense.describe()["kernels_used"] == []


def test_method_summary_lists_layers_operators_and_parameters():
    from bench.methods import method_summary

    vggt, pi3 = published_traits("vggt"), published_traits("pi3")
    assert method_summary("g2f", vggt) == "vggt: 0-8 frame; 9-23 dense"
    assert method_summary("g2f", pi3) == "pi3: 0-9 frame; 10-17 dense"
    assert method_summary("fastvggt", vggt) == "vggt: 0-23 merge (ratio=0.9, protected=0.1, seed=0)"
    assert method_summary("avggt", vggt).startswith("vggt: 0-8 frame; 9-23 subsample (sigma=auto, grid=None")
