"""A block's pre-attention stage (norm1, qkv, q/k norm, RoPE, the q/k/v stack) alone, at VGGT-1B's
token layout, compiled three ways: with every size symbolic (as the model compiles it), with the
RoPE table's sizes fixed (only the token count symbolic), and with every size fixed. The stage is
memory-bound; `bound_ms` is the time its reads and writes of q, k and v take at the bandwidth
given, against which each variant's time says how far its kernels are from the memory limit.

    python -m scripts.pre_attention_kernel --frames 100 --out OUT

Random weights, random float32 tokens under bf16 autocast, as the model's blocks run. Writes
OUT/pre_attention.json and .md.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch
from tabulate import tabulate

from bench.env import fingerprint, summary
from bench.models.layers import Block, grid_positions, rope_table
from bench.models.layers.block import attention_inputs

VARIANTS = ("symbolic", "static-table", "static")


def timed_ms(call, repeats: int) -> float:
    """Median milliseconds of `call` on the GPU, after two untimed calls."""
    for _ in range(2):
        call()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


@click.command()
@click.option("--frames", default=100, show_default=True)
@click.option("--grid", default="28x37", show_default=True, help="patch grid per frame (518×392 images)")
@click.option("--special", default=5, show_default=True, help="special tokens per frame")
@click.option("--bandwidth-tbs", default=4.8, show_default=True, help="memory bandwidth for bound_ms, TB/s")
@click.option("--repeats", default=20, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(frames: int, grid: str, special: int, bandwidth_tbs: float, repeats: int, out: Path) -> None:
    grid_h, grid_w = (int(n) for n in grid.split("x"))
    block = Block(1024, 16, qk_norm=True, init_values=0.01).cuda().eval()
    rope = rope_table(grid_positions(grid_h, grid_w, special, device="cuda"), 64)
    tokens = frames * rope.period
    rows = torch.randn(tokens, 1024, device="cuda")
    bound_ms = 2 * 3 * tokens * 1024 * 2 / (bandwidth_tbs * 1e12) * 1e3  # q, k, v read from the projection and written stacked, bf16
    results = []
    for variant in VARIANTS:
        torch._dynamo.reset()
        stage = torch.compile(attention_inputs, dynamic=variant != "static")
        if variant == "static-table":
            for table in (rope.cos, rope.sin):
                torch._dynamo.mark_static(table)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            whole = timed_ms(lambda: stage(block, rows, rope), repeats)
            projection = timed_ms(lambda: block.attn.qkv(block.norm1(rows)), repeats)  # eager norm1 + qkv: the part that is not the stage's own work
        results.append({"variant": variant, "stage_ms": whole, "norm1_qkv_eager_ms": projection, "bound_ms": bound_ms})
        print(results[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    environment = fingerprint("cuda")
    (out / "pre_attention.json").write_text(json.dumps({"environment": environment, "frames": frames, "tokens": tokens, "rows": results}, indent=1) + "\n")
    (out / "pre_attention.md").write_text(f"{summary(environment)}\n\n{frames} frames, {tokens} tokens.\n\n{tabulate(results, headers='keys', tablefmt='github', floatfmt='.3f')}\n")


if __name__ == "__main__":
    main()
