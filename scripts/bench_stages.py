"""Time one transformer block's per-token stages and one DPT head chunk alone, compiled and eager.

    python -m scripts.bench_stages --frames 100 --out results/stages-h200
    python -m scripts.bench_stages --device cpu --frames 2 --dim 64 --heads 4 --grid 4x5 --head-dim-in 128 --out /tmp/s  # toy run

The forward profile (scripts/profile_forward.py) says how much of a pass is elementwise work; this
says which stage it sits in and how far each stage is from its matrix products. For each stage:
median time of --repeats calls after warm-up, compiled as the models compile it
(`bench.stages.compiled`, dynamic shapes) and eager; the block's matrix products are also timed
alone, so stage minus products is the stage's memory-bound time. Shapes follow VGGT-1B by default
(dim 1024, 16 heads, qk-norm, 2D RoPE, 28×37 patch grid plus 5 special tokens per frame). Writes
stages.json and prints a table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import click
import torch
from tabulate import tabulate

from bench.env import fingerprint, summary
from bench.models.heads.dpt_head import DPTHead, dpt_output, dpt_trunk, uv_tables
from bench.models.layers import Block, grid_positions, rope_table
from bench.models.layers.block import attention_inputs, attention_output
from bench.stages import compiled
from bench.timing import time_forward


def median_ms(call: Callable[[], object], device: str, warmup: int, repeats: int) -> float:
    """Median time of `call` in milliseconds, by the harness's timer (CUDA events on GPU)."""
    _, timing = time_forward(call, device, warmup, repeats)
    return timing.median_s * 1e3


@click.command()
@click.option("--frames", default=100, show_default=True, help="frames whose tokens one block call processes")
@click.option("--head-frames", default=8, show_default=True, help="frames in one DPT head chunk")
@click.option("--dim", default=1024, show_default=True)
@click.option("--heads", default=16, show_default=True)
@click.option("--grid", default="28x37", show_default=True, help="patch grid h×w")
@click.option("--special", default=5, show_default=True, help="special tokens per frame")
@click.option("--head-dim-in", default=2048, show_default=True, help="DPT input width (2 × dim for VGGT)")
@click.option("--device", default="cuda", show_default=True)
@click.option("--warmup", default=3, show_default=True)
@click.option("--repeats", default=10, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(frames: int, head_frames: int, dim: int, heads: int, grid: str, special: int, head_dim_in: int, device: str, warmup: int, repeats: int, out: Path) -> None:
    grid_h, grid_w = (int(x) for x in grid.lower().split("x"))
    tokens = special + grid_h * grid_w
    generator = torch.Generator().manual_seed(0)
    block = Block(dim, heads, init_values=0.01, qk_norm=True).to(device).eval()
    rope = rope_table(grid_positions(grid_h, grid_w, special, device=torch.device(device)), dim // heads)
    rows = torch.randn(frames * tokens, dim, generator=generator).to(device)
    attended = torch.randn(frames * tokens, dim, generator=generator).to(device, torch.bfloat16)
    hidden = torch.randn(frames * tokens, 4 * dim, generator=generator).to(device, torch.bfloat16)
    head = DPTHead(dim_in=head_dim_in, layers=(0, 1, 2, 3)).to(device).eval()
    height, width = grid_h * head.patch_size, grid_w * head.patch_size
    head_tokens = [torch.randn(head_frames, grid_h * grid_w, head_dim_in, generator=generator).to(device) for _ in range(4)]
    tables = [uv_tables(p.out_channels, grid_h, grid_w, width / height, head.norm.weight) for p in head.projects]
    tables.append(uv_tables(head.scratch.output_conv1.out_channels, height, width, width / height, head.norm.weight))

    def time_(call: Callable[[], object]) -> float:
        return median_ms(call, device, warmup, repeats)

    measured: list[tuple[str, str, float]] = []
    with torch.inference_mode():
        with torch.autocast(device, dtype=torch.bfloat16):  # the backbone runs under bf16 autocast
            for name, stage, args in (("block before attention", attention_inputs, (block, rows, rope)), ("block after attention", attention_output, (block, rows, attended))):
                measured.append((name, "compiled", time_(lambda: compiled(stage)(*args))))
                measured.append((name, "eager", time_(lambda: stage(*args))))
            measured.append(("qkv projection", "matrix product", time_(lambda: block.attn.qkv(rows))))
            products = (lambda: block.attn.proj(attended), lambda: block.mlp.fc1(attended), lambda: block.mlp.fc2(hidden))
            measured.append(("proj + fc1 + fc2", "matrix products", sum(time_(p) for p in products)))
        measured.append((f"DPT head chunk ({head_frames} frames)", "compiled", time_(lambda: compiled(dpt_output)(head, compiled(dpt_trunk)(head, head_tokens, tables)))))
        measured.append((f"DPT head chunk ({head_frames} frames)", "eager", time_(lambda: dpt_output(head, dpt_trunk(head, head_tokens, tables)))))

    setup = {"frames": frames, "tokens_per_frame": tokens, "dim": dim, "heads": heads, "head_frames": head_frames, "repeats": repeats}
    out.mkdir(parents=True, exist_ok=True)
    rows_out = [{"stage": s, "variant": v, "ms": ms} for s, v, ms in measured]
    env = fingerprint(device)
    (out / "stages.json").write_text(json.dumps({"environment": env, "setup": setup, "rows": rows_out}, indent=1))
    print(f"{summary(env)}: {json.dumps(setup)}")
    print(tabulate([[s, v, f"{ms:.3f}"] for s, v, ms in measured], headers=["stage", "variant", "median ms"], tablefmt="github"))


if __name__ == "__main__":
    main()
