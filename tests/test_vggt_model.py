"""VGGT at toy size: output contract, determinism, dtypes, the attention-plan hook, the reference
frame, memory options (chunking, kept layers) and input errors."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from bench.methods import resolve_plan
from bench.methods.plan import DensePlan
from bench.models import MODELS, create_model
from bench.models.pose_encoding import pose_encoding_to_extri_intri
from bench.models.vggt import VGGT, VGGT_TINY
from bench.stages import compiled as compiled_stage
from tests.reference_fill import fill_model

H, W = 392, 518


@pytest.fixture(scope="module")
def tiny():
    return create_model("vggt-tiny", weights="random", seed=0)


@pytest.fixture(scope="module")
def strong():
    """Tiny VGGT with the reference fill: larger weights than a fresh init, so frames visibly interact."""
    model = VGGT(VGGT_TINY).eval()
    fill_model(model)
    return model


@pytest.fixture(scope="module")
def images():
    return torch.rand(4, 3, H, W, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def outputs(tiny, images):
    with torch.inference_mode():
        return tiny(images)


def test_registry_and_contract_attributes(tiny):
    assert {"vggt-1b", "vggt-tiny"} <= set(MODELS.names())
    assert (tiny.family, tiny.reference_frame, tiny.preprocess_mode) == ("vggt", 0, "crop")
    assert tiny.num_global_layers == VGGT_TINY.depth == len(tiny.aggregator.global_blocks)
    with torch.device("meta"):  # how the harness reads a model's traits without building it
        full = create_model("vggt-1b")
    assert full.num_global_layers == 24 and full.aggregator.camera_token.is_meta
    assert tiny.weights_info.random and tiny.weights_info.sha256 is None


def test_output_shapes_and_dtypes(outputs):
    assert outputs["pose_enc"].shape == (1, 4, 9)
    assert outputs["depth"].shape == (1, 4, H, W, 1)
    assert outputs["depth_conf"].shape == (1, 4, H, W)
    assert outputs["world_points"].shape == (1, 4, H, W, 3)
    assert outputs["world_points_conf"].shape == (1, 4, H, W)
    assert all(t.dtype == torch.float32 for t in outputs.values())
    assert (outputs["depth"] > 0).all() and (outputs["depth_conf"] > 1).all() and (outputs["world_points_conf"] > 1).all()
    assert (outputs["pose_enc"][..., 7:] >= 0).all()  # fields of view through ReLU


def test_batched_input_gives_the_same_as_unbatched(tiny, images, outputs):
    with torch.inference_mode():
        batched = tiny(torch.stack([images, images.flip(0)]))
    torch.testing.assert_close(batched["depth"][:1], outputs["depth"], rtol=1e-4, atol=1e-5)
    assert batched["pose_enc"].shape == (2, 4, 9)


def test_random_weights_are_seeded_and_leave_the_global_rng_alone(tiny):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    again = create_model("vggt-tiny", weights="random", seed=0)
    assert torch.rand(1) == expected_next
    other = create_model("vggt-tiny", weights="random", seed=1)
    for (key, a), b, c in zip(tiny.state_dict().items(), again.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b), key
    assert not all(torch.equal(a, c) for a, c in zip(tiny.state_dict().values(), other.state_dict().values()))


def test_forward_is_deterministic(tiny, images, outputs):
    with torch.inference_mode():
        again = tiny(images)
    for key in outputs:
        assert torch.equal(again[key], outputs[key]), key


def test_heads_stay_float32_under_an_outer_autocast(tiny, images):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny(images[:2])
    assert all(t.dtype == torch.float32 for t in out.values())


class RecordingPlan:
    """Dense attention that notes every call."""

    is_dense = True

    def __init__(self):
        self.calls = []
        self.dense = DensePlan()

    def describe(self, frames=None):
        return {"operator": "recording"}

    def attend(self, layer, q, k, v, layout):
        self.calls.append((layer, tuple(q.shape), layout))
        return self.dense.attend(layer, q, k, v, layout)


def test_each_global_layer_calls_the_plan_once_with_the_layout(tiny, images, outputs):
    plan = RecordingPlan()
    with torch.inference_mode():
        out = tiny(images, plan=plan)
    tokens = 5 + (H // 14) * (W // 14)
    assert [layer for layer, _, _ in plan.calls] == list(range(VGGT_TINY.depth))
    for _, shape, layout in plan.calls:
        assert shape == (1, VGGT_TINY.num_heads, 4 * tokens, VGGT_TINY.embed_dim // VGGT_TINY.num_heads)
        assert (layout.frames, layout.tokens_per_frame, layout.special_tokens, layout.grid, layout.reference_frame) == (4, tokens, 5, (H // 14, W // 14), 0)
    torch.testing.assert_close(out["depth"], outputs["depth"])


class WithinFramePlan:
    """Global layers attend within each frame only: no information crosses frames in the aggregator."""

    is_dense = False

    def describe(self, frames=None):
        return {"operator": "within-frame"}

    def attend(self, layer, q, k, v, layout):
        b, h, _, d = q.shape
        split = [t.view(b, h, layout.frames, layout.tokens_per_frame, d) for t in (q, k, v)]
        return torch.nn.functional.scaled_dot_product_attention(*split).view(b, h, -1, d)


def test_the_plan_controls_all_mixing_across_frames(strong, images):
    changed = images.clone()
    changed[2:] = torch.rand(2, 3, H, W)
    with torch.inference_mode():
        a = strong(images, plan=WithinFramePlan())
        b = strong(changed, plan=WithinFramePlan())
        dense_a, dense_b = strong(images), strong(changed)
    assert torch.equal(a["depth"][:, :2], b["depth"][:, :2])
    assert not torch.allclose(dense_a["depth"][:, :2], dense_b["depth"][:, :2], rtol=1e-3)


def test_frame_zero_is_the_reference_and_other_frames_are_exchangeable(strong, images):
    order = [0, 3, 1, 2]
    with torch.inference_mode():
        outputs = strong(images)
        permuted = strong(images[order])
        new_reference = strong(images[[1, 0, 2, 3]])
    for key in outputs:
        torch.testing.assert_close(permuted[key], outputs[key][:, order], rtol=1e-4, atol=1e-4)
    # frame 0's special tokens differ: the same image gives another result as reference than as frame 1
    assert not torch.allclose(new_reference["pose_enc"][:, 1], outputs["pose_enc"][:, 0], rtol=1e-2)


def test_chunking_does_not_change_outputs(images, outputs):
    chunked = create_model("vggt-tiny", weights="random", seed=0, head_frames_per_chunk=1, token_chunk_frames=1)
    with torch.inference_mode():
        out = chunked(images)
    for key in outputs:
        torch.testing.assert_close(out[key], outputs[key], rtol=1e-4, atol=1e-5)


def test_compiled_stages_give_the_eager_outputs_and_compile_once(tiny, monkeypatch):
    """The compilation `prime` makes on two frames serves every block and head chunk, frame count
    and chunk size: six frames in token and head chunks of 3 + 3 frames compile nothing new.
    Graphs are captured as on a GPU but run by the aot_eager backend: CPU code generation would
    take minutes and is PyTorch's to test."""
    six = torch.rand(6, 3, 56, 70, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = tiny(six)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    compiled_stage.cache_clear()
    torch._dynamo.reset()
    compiled = create_model("vggt-tiny", weights="random", seed=0, token_chunk_frames=3, head_frames_per_chunk=3, compile=True)
    assert compiled.compiled
    counters.clear()
    compiled.prime(six)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    compiled.prime(six)  # once per image size
    with torch.inference_mode():
        out = compiled(six)
    assert counters["stats"]["unique_graphs"] == graphs
    for key in expected:
        torch.testing.assert_close(out[key], expected[key], rtol=1e-4, atol=1e-5)
    compiled_stage.cache_clear()  # later tests compile with the real backend


def test_the_depth_and_point_heads_share_one_compilation_of_their_trunk(monkeypatch):
    """The two DPT heads differ only in their output convolution and activation: compiled, the
    trunk before it compiles once for both (a second full compile would double the heads' share
    of a cold start), and the two small output stages once each."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    compiled_stage.cache_clear()
    torch._dynamo.reset()
    model = create_model("vggt-tiny", weights="random", seed=0, compile=True)
    with torch.inference_mode():
        layers = model.aggregator(torch.rand(1, 2, 3, 56, 70), DensePlan(), model.cfg.kept_layers, None)
        special = model.aggregator.special_tokens
        counters.clear()
        model.depth_head(layers, 56, 70, special)
        after_depth = counters["stats"]["unique_graphs"]
        model.point_head(layers, 56, 70, special)
    assert after_depth == 2 and counters["stats"]["unique_graphs"] == 3, "the point head compiled only its output stage"
    compiled_stage.cache_clear()


@pytest.mark.parametrize("method", ["avggt", "fastvggt", "sparse-vggt-50"])
def test_a_plans_own_stages_compile_in_its_prime_and_give_the_eager_outputs(tiny, monkeypatch, method):
    """AVGGT's merge of the extra terms, FastVGGT's matching metric, merge and unmerge, and
    sparse-VGGT's block choice are compiled stages of a compiled forward: priming the model for the plan compiles them (after a
    dense prime, which never meets them), and the timed forward at another frame count then
    compiles nothing and matches the eager model with the same plan. The images are large enough
    that two frames hold more than one key block (a size of 1 compiles as a constant)."""
    six = torch.rand(6, 3, 112, 126, generator=torch.Generator().manual_seed(2))
    plan = resolve_plan(method, {}, tiny.traits)
    with torch.inference_mode():
        expected = tiny(six, plan)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    compiled_stage.cache_clear()
    torch._dynamo.reset()
    compiled = create_model("vggt-tiny", weights="random", seed=0, compile=True)
    counters.clear()
    compiled.prime(six, DensePlan())
    dense_graphs = counters["stats"]["unique_graphs"]
    compiled.prime(six, plan)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > dense_graphs
    with torch.inference_mode():
        out = compiled(six, plan)
    assert counters["stats"]["unique_graphs"] == graphs
    for key in expected:
        torch.testing.assert_close(out[key], expected[key], rtol=1e-4, atol=1e-5)
    compiled_stage.cache_clear()


def test_aggregator_keeps_only_the_layers_heads_read(tiny, images):
    deep = dataclasses.replace(VGGT_TINY, depth=6, head_layers=(1, 2, 3, 4))
    model = VGGT(deep).eval()
    kept = {}
    model.aggregator.register_forward_hook(lambda module, args, out: kept.update(out))
    with torch.inference_mode():
        model(images[:2])
    assert sorted(kept) == [1, 2, 3, 4, 5] == list(deep.kept_layers)
    assert kept[5].shape == (1, 2, 5 + (H // 14) * (W // 14), 2 * deep.embed_dim)


def test_to_prediction_decodes_cameras(tiny, outputs):
    pred = tiny.to_prediction(outputs)
    assert pred.extrinsics.shape == (4, 3, 4) and pred.intrinsics.shape == (4, 3, 3)
    assert pred.depth.shape == (4, H, W) and pred.world_points.shape == (4, H, W, 3)
    assert pred.depth_conf.shape == pred.world_points_conf.shape == (4, H, W)
    np.testing.assert_allclose(pred.intrinsics[:, :2, 2], np.tile([W / 2, H / 2], (4, 1)))
    extrinsics, _ = pose_encoding_to_extri_intri(outputs["pose_enc"][0], (H, W))
    np.testing.assert_allclose(pred.extrinsics, extrinsics.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(pred.raw["pose_enc"], outputs["pose_enc"][0].numpy())


def test_to_prediction_refuses_a_batch(tiny, outputs):
    batched = {k: torch.cat([v, v]) for k, v in outputs.items()}
    with pytest.raises(ValueError, match="batch of 2"):
        tiny.to_prediction(batched)


@pytest.mark.parametrize(
    "shape, message",
    [((2, 3, 390, 518), "divisible by 14"), ((2, 1, 392, 518), r"\(S, 3, H, W\)"), ((3, 392, 518), r"\(S, 3, H, W\)")],
)
def test_bad_input_shapes_are_named(tiny, shape, message):
    with pytest.raises(ValueError, match=message):
        tiny(torch.rand(*shape))
