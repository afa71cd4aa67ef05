"""The FLOP model against a direct count and against closed forms."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from bench.flops import _CPU_SDPA, FlopCount, Rates, count_flops
from bench.methods import resolve_plan
from bench.models import create_model
from bench.store import read_rows
from scripts.flop_model_table import main as flop_model_table, measured_rates
from scripts.kernel_rates import avggt_keys

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


@pytest.mark.parametrize("name, float32_heads", [("vggt-tiny", ("camera_head", "depth_head", "point_head")), ("pi3-tiny", ("point_head", "conf_head", "camera_head"))])
def test_attention_and_the_heads_float32_part_are_counted_apart(name, float32_heads):
    """Against a counted real forward, module by module: the float32 part is what the heads that run
    in float32 count; frame attention is every attention call outside them but the global layers'.
    With heads_dtype=bfloat16 the same work moves into the bf16 parts."""
    model = create_model(name, weights="random").eval()
    plan = resolve_plan("dense", {}, model.traits)
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=_CPU_SDPA) as counter:
        model(torch.rand(3, 3, *SIZE), plan=plan)
    by_module = counter.get_flop_counts()
    heads = [by_module[f"{type(model).__name__}.{head}"] for head in float32_heads]
    attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu

    counts = count_flops(name, plan, 3, SIZE)
    assert counts.float32 == pytest.approx(sum(sum(head.values()) for head in heads), rel=1e-9)
    assert counts.float32 > 0
    heads_attention = sum(head.get(attention, 0) for head in heads)
    assert counts.frame_attention == pytest.approx(by_module["Global"][attention] - heads_attention - counts.global_attention, rel=1e-9)
    assert counts.frame_attention > 0

    bf16 = count_flops(name, plan, 3, SIZE, heads_dtype="bfloat16")
    assert bf16.float32 == 0
    assert bf16.frame_attention == pytest.approx(counts.frame_attention + heads_attention, rel=1e-9)
    assert bf16.total == pytest.approx(counts.total, rel=1e-9)


def test_predicted_seconds_divide_each_part_by_its_rate():
    counts = FlopCount(global_attention=6.0, frame_attention=2.0, other=9.0, float32=4.0)
    rates = Rates(global_attention=2.0, frame_attention=0.25, gemm=3.0, float32=0.5)
    assert counts.seconds(rates) == pytest.approx(6.0 / 2.0 + 2.0 / 0.25 + 9.0 / 3.0 + 4.0 / 0.5)


def test_flop_model_table_takes_its_rates_from_a_measured_file_or_says_which_are_missing(tmp_path):
    rates = tmp_path / "kernel_rates.json"
    measured = {"attention_dense_cudnn": 417.0, "attention_frame_cudnn": 290.0, "gemm_backbone": 746.0, "conv_tf32_heads": 286.0}
    rates.write_text(json.dumps({"results": {key: {"tflops": value} for key, value in measured.items()}}))
    assert measured_rates(rates) == {"global_attention": 417.0, "frame_attention": 290.0, "gemm": 746.0, "float32": 286.0}

    result = CliRunner().invoke(flop_model_table, [str(tmp_path), "--gemm-tflops", "700", "--frame-attention-tflops", "300"])
    assert result.exit_code == 2
    assert "--global-attention-tflops, --float32-tflops" in result.output and "--rates" in result.output

    rates.write_text(json.dumps({"results": {"gemm_backbone": {"tflops": 746.0}}}))
    result = CliRunner().invoke(flop_model_table, [str(tmp_path), "--rates", str(rates)])
    assert result.exit_code == 2
    assert "attention_dense_cudnn, attention_frame_cudnn, conv_tf32_heads" in result.output and "kernel_rates.py" in result.output


def test_flop_model_table_predicts_each_row_at_the_rates_given(tmp_path):
    """End to end on the committed smoke set: one prediction per network row, each the FLOP count
    at the rates given; the oracle, which computes nothing, is left out and said to be."""
    results = tmp_path / "smoke"
    shutil.copytree(Path(__file__).resolve().parents[1] / "results" / "baseline-smoke", results)
    tflops = {"global-attention": 400.0, "frame-attention": 300.0, "gemm": 700.0, "float32": 280.0}
    result = CliRunner().invoke(flop_model_table, [str(results), *(f for name, value in tflops.items() for f in (f"--{name}-tflops", str(value)))])
    assert result.exit_code == 0, result.output
    assert "no FLOP model for oracle" in result.output
    table = pd.read_csv(results / "flop_model.csv")
    rows = [r for r in read_rows(results) if r["status"] == "ok" and r["model_name"] != "oracle"]
    assert len(table) == len(rows) and "oracle" not in set(table["model"])
    row = next(r for r in rows if r["model_name"] == "vggt-tiny" and r["method_name"] == "avggt")
    rates = Rates(*(value * 1e12 for value in tflops.values()))
    plan = resolve_plan("avggt", row["method_params"], create_model("vggt-tiny", weights="random").traits)
    expected = count_flops("vggt-tiny", plan, row["frames_used"], tuple(row["image_size"])).seconds(rates)
    same = table[(table["model"] == row["model"]) & (table["method"] == row["method"]) & (table["frames"] == row["frames_used"])]
    assert len(same) >= 1
    assert same["predicted_s"].tolist() == pytest.approx([expected] * len(same), rel=1e-9)


def test_kernel_rates_times_avggt_attention_at_the_key_count_its_plan_keeps():
    """σ = 4 below 150 frames: a 2×2 window over the 28×37 grid keeps 14 × 19 patches and the 5
    special tokens of every frame, frame 0 whole, plus the dropped patches' mean key; σ = 9 above
    (3×3: 10 × 13 patches)."""
    assert avggt_keys(100) == 100 * (5 + 14 * 19) + (28 * 37 - 14 * 19) + 1
    assert avggt_keys(300) == 300 * (5 + 10 * 13) + (28 * 37 - 10 * 13) + 1
