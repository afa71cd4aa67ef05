"""Sustained rates of the kernels a VGGT-1B forward spends its time in, measured on one GPU at the
shapes the model gives them: what the FLOP model (`scripts/flop_model_table.py`) divides by.

    python -m scripts.kernel_rates --frames 100 --out OUT

- bf16 GEMM: the backbone's four linear layers (qkv, proj, fc1, fc2) on every token, under autocast.
- TF32 convolution: the DPT heads' 3×3 convolutions in float32 (TF32 is PyTorch's default for
  convolutions), channels-last as compiled heads run them, at a head chunk of 8 frames.
- attention: dense global attention on cuDNN, q/k/v strided as the blocks pass them; frame
  attention (each frame's tokens alone, the frames as the batch) on cuDNN and FlashAttention; and
  AVGGT's subsampled shape (all queries over the kept keys) on every backend that can run it.
- the MLP's GELU alone, compiled with symbolic and with fixed sizes, against a copy of the same
  bytes; and fc1 + GELU compiled with Triton matrix-product templates (epilogue fused).

Each time is the median of `--repeats` calls after one warm call (`bench.timing.time_forward`).
Random inputs; no model weights. Writes OUT/kernel_rates.json and prints each figure as it comes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import click
import torch
import torch.nn.functional as F

from bench.env import fingerprint
from bench.methods import resolve_plan
from bench.methods.kernels import BACKENDS, AttentionKernel
from bench.methods.layout import Layout
from bench.methods.subsample import kept_tokens, resolve_window
from bench.models import model_traits
from bench.timing import time_forward

DIM, HEADS, HEAD_DIM, SPECIAL, GRID = 1024, 16, 64, 5, (28, 37)  # VGGT-1B on 518×392 images
TOKENS_PER_FRAME = SPECIAL + GRID[0] * GRID[1]


def avggt_keys(frames: int) -> int:
    """The keys AVGGT's subsampled layers attend to at this frame count, as its default plan keeps
    them for VGGT-1B: the kept tokens and the mean of the dropped ones."""
    traits = model_traits("vggt-1b")
    params = resolve_plan("avggt", {}, traits).layers[-1].params
    layout = Layout(frames, TOKENS_PER_FRAME, SPECIAL, GRID, traits.reference_frame)
    window = resolve_window(params["sigma"], params["grid"], params["sigma_thresholds"], frames)
    kept = kept_tokens(layout, window, params["keep_reference"], torch.device("cpu"))
    return int(kept.sum()) + int(params["mean"] and not kept.all())


def seconds(fn: Callable[[], object], repeats: int) -> float:
    return time_forward(fn, "cuda", warmup=1, repeats=repeats)[1].median_s


def strided_qkv(tokens: int, keys: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q over `tokens`, k and v over `keys`, (1, heads, L, head_dim) views of (1, L, heads, head_dim)."""
    make = lambda n: torch.randn(1, n, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
    return make(tokens), make(keys), make(keys)


def attention_flops(queries: int, keys: int) -> float:
    return 4.0 * queries * keys * HEAD_DIM * HEADS


@click.command()
@click.option("--frames", default=100, show_default=True)
@click.option("--repeats", default=10, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(frames: int, repeats: int, out: Path) -> None:
    results: dict[str, object] = {}

    def note(key: str, value: object) -> None:
        results[key] = value
        print(key, json.dumps(value), flush=True)

    tokens = frames * TOKENS_PER_FRAME
    x = torch.randn(tokens, DIM, device="cuda", dtype=torch.bfloat16)
    gemms = {"qkv": (DIM, 3 * DIM), "proj": (DIM, DIM), "fc1": (DIM, 4 * DIM), "fc2": (4 * DIM, DIM)}
    total_flops = total_s = 0.0
    for name, (k, n) in gemms.items():
        a = x if k == DIM else torch.randn(tokens, k, device="cuda", dtype=torch.bfloat16)
        w, b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02, torch.zeros(n, device="cuda", dtype=torch.bfloat16)
        s = seconds(lambda: F.linear(a, w, b), repeats)
        flops = 2.0 * tokens * k * n
        total_flops, total_s = total_flops + flops, total_s + s
        note(f"gemm_{name}", {"ms": s * 1e3, "tflops": flops / s / 1e12})
    note("gemm_backbone", {"tflops": total_flops / total_s / 1e12})

    torch.backends.cudnn.allow_tf32 = True
    conv_total_flops = conv_total_s = 0.0
    for name, (cin, cout, h, w) in {"rcu_256_stride4": (256, 256, 112, 148), "rcu_256_stride8": (256, 256, 56, 74), "out_conv1": (256, 128, 224, 296)}.items():
        image = torch.randn(8, cin, h, w, device="cuda").to(memory_format=torch.channels_last)
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1).cuda().to(memory_format=torch.channels_last)
        with torch.inference_mode():
            s = seconds(lambda: conv(image), repeats)
        flops = 2.0 * 8 * h * w * cin * cout * 9
        conv_total_flops, conv_total_s = conv_total_flops + flops, conv_total_s + s
        note(f"conv_tf32_{name}", {"ms": s * 1e3, "tflops": flops / s / 1e12})
    note("conv_tf32_heads", {"tflops": conv_total_flops / conv_total_s / 1e12})

    q, k, v = strided_qkv(tokens, tokens)
    s = seconds(lambda: AttentionKernel("cudnn").attend(q, k, v), max(3, repeats // 3))
    note("attention_dense_cudnn", {"ms": s * 1e3, "tflops": attention_flops(tokens, tokens) / s / 1e12})
    frame_q, frame_k, frame_v = (t.view(1, HEADS, frames, TOKENS_PER_FRAME, HEAD_DIM).transpose(1, 2).flatten(0, 1) for t in (q, k, v))
    for backend in BACKENDS[:2]:
        s = seconds(lambda: AttentionKernel(backend).attend(frame_q, frame_k, frame_v), repeats)
        note(f"attention_frame_{backend}", {"ms": s * 1e3, "tflops": frames * attention_flops(TOKENS_PER_FRAME, TOKENS_PER_FRAME) / s / 1e12})
    frame_q = frame_k = frame_v = None
    q = k = v = None
    keys = avggt_keys(frames)
    q, k, v = strided_qkv(tokens, keys)
    for backend in BACKENDS[:3]:
        kernel = AttentionKernel(backend)
        try:
            s = seconds(lambda: kernel.attend_with_lse(q, k, v), repeats)
        except (RuntimeError, ValueError) as error:
            note(f"attention_subsample_{backend}", {"error": str(error)[:200]})
            continue
        note(f"attention_subsample_{backend}", {"keys": keys, "ms": s * 1e3, "tflops": attention_flops(tokens, keys) / s / 1e12})
    contiguous = [t.contiguous() for t in (q, k, v)]
    s = seconds(lambda: AttentionKernel("cudnn").attend_with_lse(*contiguous), repeats)
    note("attention_subsample_cudnn_contiguous", {"ms": s * 1e3, "tflops": attention_flops(tokens, keys) / s / 1e12})
    from torch.nn.attention.flex_attention import flex_attention

    flex = torch.compile(flex_attention, dynamic=False)
    for label, options in {"default": None, "m128_n64_w8_s3": {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3}}.items():
        try:
            s = seconds(lambda: flex(*contiguous, kernel_options=options, return_lse=True), repeats)
        except Exception as error:  # a kernel option this Triton build rejects: note it, go on
            note(f"attention_subsample_flex_{label}", {"error": str(error)[:200]})
            continue
        note(f"attention_subsample_flex_{label}", {"ms": s * 1e3, "tflops": attention_flops(tokens, keys) / s / 1e12})
    q = k = v = contiguous = None  # free the attention inputs

    hidden = torch.randn(tokens, 4 * DIM, device="cuda", dtype=torch.bfloat16)
    bytes_moved = 2 * hidden.numel() * hidden.element_size()
    target = torch.empty_like(hidden)
    s = seconds(lambda: target.copy_(hidden), repeats)
    note("copy_hidden", {"ms": s * 1e3, "tb_per_s": bytes_moved / s / 1e12})
    for label, dynamic in (("symbolic", True), ("fixed", False)):
        gelu = torch.compile(lambda t: F.gelu(t), dynamic=dynamic)
        s = seconds(lambda: gelu(hidden), repeats)
        note(f"gelu_compiled_{label}", {"ms": s * 1e3, "tb_per_s": bytes_moved / s / 1e12})
    hidden = target = None
    w1, b1 = torch.randn(4 * DIM, DIM, device="cuda", dtype=torch.bfloat16) * 0.02, torch.zeros(4 * DIM, device="cuda", dtype=torch.bfloat16)
    plain = torch.compile(lambda t: F.gelu(F.linear(t, w1, b1)), dynamic=False)
    s_plain = seconds(lambda: plain(x), repeats)
    note("fc1_gelu_compiled", {"ms": s_plain * 1e3})
    fused = torch.compile(lambda t: F.gelu(F.linear(t, w1, b1)), dynamic=False, mode="max-autotune-no-cudagraphs")
    reference = plain(x)
    s_fused = seconds(lambda: fused(x), repeats)
    error = (fused(x).float() - reference.float()).abs().max().item()
    note("fc1_gelu_max_autotune", {"ms": s_fused * 1e3, "max_abs_diff_vs_compiled": error})

    out.mkdir(parents=True, exist_ok=True)
    (out / "kernel_rates.json").write_text(json.dumps({"environment": fingerprint("cuda"), "frames": frames, "tokens": tokens, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
