"""The FLOP model against a direct count and against closed forms."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.flops import _CPU_SDPA, count_flops
from bench.methods import resolve_plan
from bench.models import create_model

SIZE = (56, 70)  # 4×5 patches of 14 px


@pytest.mark.parametrize("name", ["vggt-tiny", "pi3-tiny"])
def test_dense_total_equals_a_counted_real_forward(name):
    model = create_model(name, weights="random").eval()
    plan = resolve_plan("dense", {}, model.traits)
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=_CPU_SDPA) as counter:
        model(torch.rand(3, 3, *SIZE), plan=plan)
    assert count_flops(name, plan, 3, SIZE).total == pytest.approx(counter.get_total_flops(), rel=1e-9)


def test_global_attention_closed_forms():
    model = create_model("vggt-tiny", weights="random")
    layers, dim = model.num_global_layers, model.aggregator.global_blocks[0].attn.qkv.in_features
    frames, tokens = 4, 5 + 4 * 5
    n = frames * tokens

    def attention(method, **params):
        return count_flops("vggt-tiny", resolve_plan(method, params, model.traits), frames, SIZE).global_attention

    assert attention("dense") == layers * 4 * n * n * dim
    assert attention("g2f", frame_layers="all") == layers * frames * 4 * tokens * tokens * dim
    kept = (frames - 1) * (5 + 2 * 3) + tokens  # 2×2 windows over a 4×5 grid keep 2×3 patches; frame 0 whole
    assert attention("avggt", frame_layers="none", sigma=4) == layers * 4 * n * kept * dim
    assert attention("avggt", frame_layers="none", sigma=1) == attention("dense")


def test_everything_but_global_attention_is_the_same_under_every_plan():
    traits = create_model("vggt-tiny", weights="random").traits
    counts = [count_flops("vggt-tiny", resolve_plan(m, {}, traits), 2, SIZE) for m in ("dense", "avggt", "fastvggt")]
    assert len({c.other for c in counts}) == 1
    assert counts[1].global_attention < counts[0].global_attention


def test_block_sparse_counts_the_share_a_run_observed():
    """Without an observation the count is the preset's floor; with one, the share that ran (every
    key block kept: dense attention plus the block selection)."""
    model = create_model("vggt-tiny", weights="random")
    layers, dim = model.num_global_layers, model.aggregator.global_blocks[0].attn.qkv.in_features
    frames, tokens = 4, 5 + 4 * 5
    n, special = frames * tokens, frames * 5
    plan = resolve_plan("sparse-vggt-50", {}, model.traits)

    def attention(observed=None):
        return count_flops("vggt-tiny", plan, frames, SIZE, observed).global_attention

    selection = 2.0 * (n / 128) * (n / 64) * dim
    assert attention() == pytest.approx(layers * (4 * (n - special) * (0.5 * n + special) * dim + 4 * special * n * dim + selection))
    assert attention({"key_blocks_kept": 1.0}) == pytest.approx(layers * (4 * n * n * dim + selection))
    assert attention({"key_blocks_kept": 0.7}) == pytest.approx(layers * (4 * (n - special) * 0.7 * n * dim + 4 * special * n * dim + selection))
