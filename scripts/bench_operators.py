"""Micro-benchmark of the attention operators alone, at VGGT-1B size, against dense attention.

    python -m scripts.bench_operators --out results/operators                   # H100: 32, 100, 300 frames
    python -m scripts.bench_operators --out /tmp/ops --frames 2 --device cpu    # toy run, any machine

Random q, k, v of shape (1, 16 heads, S·1041 tokens, 64) in bf16, strided as the models pass them (5 special tokens + a 28×37 patch
grid per frame, frame 0 the reference). Dense attention is timed on every exact SDPA backend that
can run it; the fastest (or the one named by --kernel) then runs every operator, so each speedup
compares the same kernel. Before timing, every operator's output on a small layout is checked
against the same operator on the float32 math kernel (and block-sparse against its masked
reference), on the same device. Writes operators.json and operators.md under --out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click
import torch

from bench.env import fingerprint, summary
from bench.methods.block_sparse import K_BLOCK, Q_BLOCK, block_sparse, pool_blocks, select_blocks
from bench.methods.kernels import BACKENDS, AttentionKernel
from bench.methods.layout import Layout
from bench.methods.operators import OPERATORS
from bench.timing import time_forward

SUBSAMPLE = dict(grid=None, sigma_thresholds=(30, 150), keep_reference=True, mean_log_count=False)

# (label, operator, params): what is timed at every frame count, after dense
CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    ("frame", "frame", {}),
    ("subsample σ=2", "subsample", dict(SUBSAMPLE, sigma=2, diagonal=True, mean=True)),
    ("subsample σ=4", "subsample", dict(SUBSAMPLE, sigma=4, diagonal=True, mean=True)),
    ("subsample σ=4, no extra terms", "subsample", dict(SUBSAMPLE, sigma=4, diagonal=False, mean=False)),
    ("subsample σ=9", "subsample", dict(SUBSAMPLE, sigma=9, diagonal=True, mean=True)),
    ("block_sparse 0.5 / cdf 0.7", "block_sparse", dict(sparse_ratio=0.5, cdf_threshold=0.7)),
    ("block_sparse 0.75 / cdf 0.7", "block_sparse", dict(sparse_ratio=0.75, cdf_threshold=0.7)),
    ("block_sparse, all blocks", "block_sparse", dict(sparse_ratio=0.0, cdf_threshold=1.0)),
    ("merge 0.9", "merge", dict(ratio=0.9, protected=0.1, seed=0)),
]


def parse_grid(text: str) -> tuple[int, int]:
    rows, _, cols = text.lower().partition("x")
    return int(rows), int(cols)


def random_qkv(layout: Layout, heads: int, head_dim: int, device: str, dtype: torch.dtype, seed: int = 0):
    """q, k, v laid out as the models hand them over: views of one (B, N, 3, heads, d) projection."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    qkv = torch.randn((1, layout.num_tokens, 3, heads, head_dim), generator=gen).to(device, dtype)
    return tuple(qkv.permute(2, 0, 3, 1, 4).unbind(0))


def measure(fn: Callable[[], Any], device: str, warmup: int, repeats: int) -> dict[str, Any]:
    """Timing summary (the harness's timer: CUDA events on GPU), or the failure (out of memory,
    kernel refused) as a result."""
    try:
        _, timing = time_forward(fn, device, warmup, repeats)
    except torch.cuda.OutOfMemoryError:
        return {"status": "oom"}
    except (RuntimeError, ValueError) as error:
        return {"status": "error", "message": str(error).splitlines()[0]}
    finally:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return {"status": "ok", "median_s": timing.median_s, "min_s": timing.min_s, "max_s": timing.max_s, "repeats": timing.repeats}


def dense_flops(layout: Layout, heads: int, head_dim: int) -> float:
    """Two N×N×d matrix products per head: 4·N²·d·heads."""
    return 4.0 * layout.num_tokens**2 * head_dim * heads


def block_density(q: torch.Tensor, k: torch.Tensor, layout: Layout, ratio: float, cdf: float) -> float:
    """Fraction of patch-query × patch-key blocks the selection keeps on these inputs."""
    is_patch = (torch.arange(layout.tokens_per_frame, device=q.device) >= layout.special_tokens).repeat(layout.frames)
    patches = is_patch.nonzero().squeeze(1)
    keep = select_blocks(pool_blocks(q[:, :, patches], Q_BLOCK), pool_blocks(k[:, :, patches], K_BLOCK), ratio, cdf)
    return float(keep.float().mean())


def check_operators(kernel_name: str, device: str, dtype: torch.dtype, heads: int, head_dim: int, special: int) -> list[dict[str, Any]]:
    """Each operator on the chosen kernel and dtype vs the same operator on the math kernel, in float32
    on the same (rounded) inputs. Token merging is checked in the tested dtype: its matching is a
    discrete choice that float32 similarities can make differently on near-ties, which would
    compare two different merges rather than two kernels."""
    layout = Layout(4, special + 11 * 13, special, (11, 13), 0)
    q, k, v = random_qkv(layout, heads, head_dim, device, dtype, seed=1)
    checks = []
    for label, name, params in [("dense", "dense", {})] + CONFIGS:
        run = OPERATORS.get(name).run
        qr, kr, vr = (x.to(dtype if name == "merge" else torch.float32) for x in (q, k, v))
        if name == "block_sparse":  # against the masked reference path of the block-sparse kernel
            reference = block_sparse(qr, kr, vr, layout, kernel=AttentionKernel("math"), implementation="masked", **params)
        else:
            reference = run(qr, kr, vr, layout, kernel=AttentionKernel("math"), **params)
        got = run(q, k, v, layout, kernel=AttentionKernel(kernel_name), **params)
        error = float((got.float() - reference.float()).abs().max())
        tolerance = 5e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-4
        checks.append({"operator": label, "max_abs_error": error, "tolerance": tolerance, "ok": error <= tolerance})
    return checks


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Attention operators alone ({report['config']['dtype']}, {report['config']['heads']} heads × {report['config']['head_dim']}, "
        f"{report['config']['tokens_per_frame']} tokens/frame)",
        "",
        f"Measured on {summary(report['environment'])}.",
        "",
        f"Kernel for every operator: **{report['kernel']}** ({report['kernel_choice']}).",
        "",
        "| frames | tokens | operator | kernels | median ms | vs dense | TFLOP/s |",
        "|---:|---:|---|---|---:|---:|---:|",
    ]
    for row in report["results"]:
        if row["status"] != "ok":
            timing = row["status"] + (f": {row['message']}" if "message" in row else "")
            lines.append(f"| {row['frames']} | {row['tokens']} | {row['operator']} | {row['kernel']} | {timing} | | |")
            continue
        speedup = f"{row['speedup_vs_dense']:.2f}×" if "speedup_vs_dense" in row else ""
        tflops = f"{row['tflops']:.3g}" if "tflops" in row else ""
        extra = f" (blocks kept {row['block_density']:.0%})" if "block_density" in row else ""
        lines.append(
            f"| {row['frames']} | {row['tokens']} | {row['operator']}{extra} | {row['kernel']} | "
            f"{row['median_s'] * 1e3:.2f} | {speedup} | {tflops} |"
        )
    lines += ["", "Checks (small layout, vs the math kernel on the same inputs; float32 except merge):", ""]
    lines += [f"- {c['operator']}: max abs error {c['max_abs_error']:.2e} ({'ok' if c['ok'] else 'FAILED'})" for c in report["checks"]]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="folder for operators.json and operators.md")
@click.option("--frames", default="32,100,300", show_default=True, help="comma-separated frame counts")
@click.option("--device", default="cuda" if torch.cuda.is_available() else "cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "bfloat16", "float16", "float32"]), default="auto", show_default=True, help="auto: bfloat16 on CUDA, float32 on CPU")
@click.option("--kernel", type=click.Choice(["fastest"] + list(BACKENDS)), default="fastest", show_default=True, help="exact kernel of every operator")
@click.option("--heads", default=16, show_default=True)
@click.option("--head-dim", default=64, show_default=True)
@click.option("--grid", "grid_text", default="28x37", show_default=True, help="patch grid rows x cols")
@click.option("--special", default=5, show_default=True, help="special tokens per frame")
@click.option("--warmup", default=2, show_default=True)
@click.option("--repeats", default=5, show_default=True)
def main(out: Path, frames: str, device: str, dtype: str, kernel: str, heads: int, head_dim: int, grid_text: str, special: int, warmup: int, repeats: int) -> None:
    torch_dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32}.get(dtype) or getattr(torch, dtype)
    grid = parse_grid(grid_text)
    frame_counts = [int(f) for f in frames.split(",")]
    config = dict(frames=frame_counts, dtype=str(torch_dtype).removeprefix("torch."), heads=heads, head_dim=head_dim,
                  grid=list(grid), special_tokens=special, tokens_per_frame=special + grid[0] * grid[1], warmup=warmup, repeats=repeats)
    results: list[dict[str, Any]] = []
    chosen: str | None = None if kernel == "fastest" else kernel

    for count in frame_counts:
        layout = Layout(count, special + grid[0] * grid[1], special, grid, 0)
        q, k, v = random_qkv(layout, heads, head_dim, device, torch_dtype)
        flops = dense_flops(layout, heads, head_dim)
        base = {"frames": count, "tokens": layout.num_tokens}
        dense_rows = {}
        for backend in BACKENDS:
            if backend == "math" and device.startswith("cuda"):
                continue  # materialises N×N scores: not a contender
            probe = AttentionKernel(backend)
            try:
                probe.backend_for(q, k, v)
            except ValueError:
                continue
            row = {**base, "operator": "dense", "kernel": backend, **measure(lambda: probe.attend(q, k, v), device, warmup, repeats)}
            if row["status"] == "ok":
                row["tflops"] = flops / row["median_s"] / 1e12
                dense_rows[backend] = row
            results.append(row)
            click.echo(f"{count:>5} frames  dense [{backend}]  {row.get('median_s', float('nan')) * 1e3:.2f} ms")
        if chosen is None:
            if not dense_rows:
                raise click.ClickException(f"no exact attention backend ran dense attention on {device} at {count} frames")
            chosen = min(dense_rows, key=lambda b: dense_rows[b]["median_s"])
        baseline = dense_rows.get(chosen)
        for row in dense_rows.values():
            if baseline is not None:
                row["speedup_vs_dense"] = baseline["median_s"] / row["median_s"]

        for label, name, params in CONFIGS:
            op_kernel = AttentionKernel(chosen)
            run = OPERATORS.get(name).run
            row = {**base, "operator": label, **measure(lambda: run(q, k, v, layout, kernel=op_kernel, **params), device, warmup, repeats)}
            row["kernel"] = "+".join(sorted(op_kernel.used)) or chosen
            if row["status"] == "ok" and baseline is not None:
                row["speedup_vs_dense"] = baseline["median_s"] / row["median_s"]
            if name == "block_sparse":
                row["block_density"] = block_density(q, k, layout, params["sparse_ratio"], params["cdf_threshold"])
            results.append(row)
            click.echo(f"{count:>5} frames  {label} [{row['kernel']}]  {row.get('median_s', float('nan')) * 1e3:.2f} ms  ({row['status']})")
        del q, k, v

    report = {
        "environment": fingerprint(device),
        "config": config,
        "kernel": chosen,
        "kernel_choice": "fastest dense backend measured at the first frame count" if kernel == "fastest" else "set by --kernel",
        "checks": check_operators(chosen, device, torch_dtype, heads, head_dim, special),
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "operators.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "operators.md").write_text(markdown(report))
    click.echo(f"wrote {out / 'operators.json'} and {out / 'operators.md'}")
    if not all(c["ok"] for c in report["checks"]):
        raise click.ClickException("an operator disagrees with its reference: see the checks in operators.md")


if __name__ == "__main__":
    main()
