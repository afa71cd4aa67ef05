"""A block's pre-attention stage (norm1, qkv, q/k norm, RoPE, the q/k/v stack) alone, at VGGT-1B's
token layout, compiled as the model compiles it and in variants that each change one thing, to
find which part of the work its kernels spend their time on:

- `symbolic`: as the model compiles it (every size symbolic);
- `static-table`: the RoPE table's sizes fixed (only the token count symbolic);
- `static`: every size fixed;
- `into-buffer`: q, k and v written into slices of one buffer instead of stacked;
- `no-rope`, `no-qk-norm`: without that step (not the model's output: a measure of the step);
- `fused`: what a compiled forward runs on CUDA now: norm1 and the projection compiled, then the
  Triton kernel of `bench.models.layers.fused_qkv` (not compiled as a whole);
- `post-symbolic`, `post-static`: the block's stage after attention (proj, layer scale, residual,
  norm2, MLP, residual) with every size symbolic (as the model compiles it) or fixed.

The pre-attention stage is memory-bound; `bound_ms` is the time its reads and writes of q, k and v take at the
bandwidth given. Each variant's kernels are timed by the profiler (`kernels`, µs per call) and their
generated code is written to OUT/code/VARIANT.py.

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
from torch._inductor.utils import run_and_get_code

from bench.env import fingerprint, summary
from bench.models.layers import Block, RopeTable, grid_positions, rope_table
from bench.models.layers.block import attention_inputs, attention_output, fused_attention_inputs
from bench.timing import time_forward
from scripts.subsample_kernels import kernel_times


def into_buffer(block: Block, rows: torch.Tensor, rope: RopeTable | None) -> torch.Tensor:
    """`attention_inputs` with q, k and v copied into slices of one (3, rows, heads, head_dim) buffer."""
    q, k, v = block.attn.project(block.norm1(rows), rope)
    out = v.new_empty((3, *v.shape))
    out[0], out[1], out[2] = q, k, v
    return out


VARIANTS = {  # name → (stage, dynamic (None: run as written), the RoPE table's sizes fixed, q/k norm, RoPE)
    "fused": (fused_attention_inputs, None, False, True, True),
    "symbolic": (attention_inputs, True, False, True, True),
    "static-table": (attention_inputs, True, True, True, True),
    "static": (attention_inputs, False, False, True, True),
    "into-buffer": (into_buffer, True, False, True, True),
    "no-rope": (attention_inputs, True, False, True, False),
    "no-qk-norm": (attention_inputs, True, False, False, True),
    "post-symbolic": (attention_output, True, False, True, True),
    "post-static": (attention_output, False, False, True, True),
}


@click.command()
@click.option("--frames", default=100, show_default=True)
@click.option("--grid", default="28x37", show_default=True, help="patch grid per frame (518×392 images)")
@click.option("--special", default=5, show_default=True, help="special tokens per frame")
@click.option("--variants", default=",".join(VARIANTS), show_default=True)
@click.option("--bandwidth-tbs", default=4.8, show_default=True, help="memory bandwidth for bound_ms, TB/s")
@click.option("--repeats", default=20, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(frames: int, grid: str, special: int, variants: str, bandwidth_tbs: float, repeats: int, out: Path) -> None:
    grid_h, grid_w = (int(n) for n in grid.split("x"))
    rope = rope_table(grid_positions(grid_h, grid_w, special, device="cuda"), 64)
    tokens = frames * rope.period
    rows = torch.randn(tokens, 1024, device="cuda")
    attended = torch.randn(tokens, 1024, device="cuda", dtype=torch.bfloat16)  # the attention result the post stage reads
    bound_ms = 2 * 3 * tokens * 1024 * 2 / (bandwidth_tbs * 1e12) * 1e3  # q, k, v read from the projection and written stacked, bf16
    (out / "code").mkdir(parents=True, exist_ok=True)
    results = []
    for name in variants.split(","):
        function, dynamic, static_table, qk_norm, with_rope = VARIANTS[name]
        block = Block(1024, 16, qk_norm=qk_norm, init_values=0.01).cuda().eval()
        table = RopeTable(rope.cos.clone(), rope.sin.clone()) if with_rope else None
        if static_table and table is not None:
            for part in (table.cos, table.sin):
                torch._dynamo.mark_static(part)
        torch._dynamo.reset()
        stage = function if dynamic is None else torch.compile(function, dynamic=dynamic)
        second = attended if function is attention_output else table
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            _, code = run_and_get_code(stage, block, rows, second)
            (out / "code" / f"{name}.py").write_text("\n\n".join(code))
            whole = time_forward(lambda: stage(block, rows, second), "cuda", warmup=2, repeats=repeats)[1].median_s * 1e3
            kernels, _ = kernel_times(lambda: stage(block, rows, second), "cuda")
        results.append({"variant": name, "stage_ms": whole, "bound_ms": bound_ms, "kernels": kernels})
        print(name, f"{whole:.3f} ms", [(k["kernel"][:60], round(k["us"], 1)) for k in kernels[:6]], flush=True)
    environment = fingerprint("cuda")
    (out / "pre_attention.json").write_text(json.dumps({"environment": environment, "frames": frames, "tokens": tokens, "rows": results}, indent=1) + "\n")
    lines = [summary(environment), "", f"{frames} frames, {tokens} tokens; memory bound {bound_ms:.3f} ms at {bandwidth_tbs} TB/s.", ""]
    lines += [tabulate([{k: v for k, v in r.items() if k != "kernels"} for r in results], headers="keys", tablefmt="github", floatfmt=".3f"), ""]
    for r in results:
        lines += [f"**{r['variant']}** (per call of the stage)", "", tabulate(r["kernels"][:8], headers="keys", tablefmt="github", floatfmt=".1f"), ""]
    (out / "pre_attention.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
