"""The fused pre-attention kernel (`bench.models.layers.fused_qkv`) step by step, at VGGT-1B's layout:
its time with the q/k norm and the RoPE rotation each on or off, against a plain copy of the same
bytes (the memory bound in practice), for a few tile sizes, with the registers each build uses.

    python -m scripts.qkv_kernel_probe --frames 100 --out OUT

Random bf16 projection output, random norm weights; each time the median of 20 calls
(`bench.timing.time_forward`). Writes OUT/qkv_kernel_probe.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from bench.env import fingerprint
from bench.models.layers import grid_positions, rope_table
from bench.models.layers.fused_qkv_triton import normed_rotated_qkv_kernel
from bench.timing import time_forward


def microseconds(launch, repeats: int = 20) -> tuple[float, object]:
    """Median time of `launch` (CUDA events, after one warm call) and what its last call returned."""
    built, timing = time_forward(launch, "cuda", warmup=1, repeats=repeats)
    return timing.median_s * 1e6, built


@click.command()
@click.option("--frames", default=100, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(frames: int, out: Path) -> None:
    heads, head_dim = 16, 64
    rope = rope_table(grid_positions(28, 37, 5, device="cuda"), head_dim)
    rows = frames * rope.period
    qkv = torch.randn(rows, 3 * heads * head_dim, device="cuda", dtype=torch.bfloat16)
    stacked = torch.empty(3, rows, heads, head_dim, device="cuda", dtype=torch.bfloat16)
    norms = [torch.randn(head_dim, device="cuda") for _ in range(4)]
    results = {"copy_us": microseconds(lambda: stacked.view(-1).copy_(qkv.view(-1)))[0]}
    for norm, rotate in ((False, False), (True, False), (False, True), (True, True)):
        for head_rows, warps in ((16, 4), (32, 4)):
            def launch():
                return normed_rotated_qkv_kernel[(-(-rows * 3 * heads // head_rows),)](
                    qkv, stacked, rows, *norms, 1e-5, 1e-5, rope.cos, rope.sin, rope.period,
                    HEADS=heads, HEAD_DIM=head_dim, HEAD_ROWS=head_rows, NORM=norm, ROPE=rotate, num_warps=warps,
                )
            us, built = microseconds(launch)
            results[f"norm{int(norm)}_rope{int(rotate)}_rows{head_rows}_warps{warps}"] = {
                "us": us, "registers": getattr(built, "n_regs", None), "spills": getattr(built, "n_spills", None)
            }
    print(json.dumps(results, indent=1))
    out.mkdir(parents=True, exist_ok=True)
    (out / "qkv_kernel_probe.json").write_text(json.dumps({"environment": fingerprint("cuda"), "frames": frames, "rows": rows, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
