"""The GPU kernels of one AVGGT subsampled-attention call against one dense call, as a compiled
forward runs them (the operator's own stages compiled), at the models' token layout.

    python -m scripts.subsample_kernels --frames 2,8 --out results/graphs-h200/subsample-kernels

At few frames a subsampled layer saves little attention time, so the gather, the dropped-key means
and the merge around the kernel decide whether AVGGT is faster than dense at all. This lists each
kernel's time per call, from the PyTorch profiler over 10 calls after 3 untimed ones. The q, k and v
are random bf16 (1, 16 heads, S·1041 tokens, 64), strided as the blocks pass them: 5 special tokens
and a 28×37 patch grid per frame. The "vggt" layout keeps frame 0 whole (VGGT's reference frame);
"pi3" has no reference frame. Also reports whether any stage compiled during the timed calls (it
must not: a new frame count compiles in the untimed calls). Writes subsample_kernels.json and .md.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch
from tabulate import tabulate
from torch._dynamo.utils import counters
from torch.profiler import ProfilerActivity, profile

from bench.env import fingerprint, summary
from bench.methods.kernels import AttentionKernel
from bench.methods.layout import Layout
from bench.methods.subsample import subsample
from bench.stages import stages_compiled_within

LAYOUTS = {"vggt": 0, "pi3": None}  # reference frame of each model family


def kernel_times(call, device: str) -> tuple[list[dict], int]:
    """Each kernel's time per call (µs) and count per call, and the graphs compiled while timed."""
    for _ in range(3):
        call()
    torch.cuda.synchronize(device)
    counters.clear()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            call()
        torch.cuda.synchronize(device)
    kernels = [
        {"kernel": e.key[:100], "us": e.self_device_time_total / 10, "calls": e.count // 10}
        for e in prof.key_averages()
        if e.self_device_time_total and e.device_type.name == "CUDA"
    ]
    return sorted(kernels, key=lambda k: -k["us"]), counters["stats"]["unique_graphs"]


@click.command()
@click.option("--frames", default="2,8", show_default=True, help="comma-separated frame counts")
@click.option("--device", default="cuda", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(frames: str, device: str, out: Path) -> None:
    if not device.startswith("cuda") or not torch.cuda.is_available():
        raise click.UsageError("subsample_kernels profiles GPU kernels: it needs --device cuda on a machine with one")
    kernel = AttentionKernel("auto")
    rows = []
    for family, reference in LAYOUTS.items():
        for count in (int(f) for f in frames.split(",")):
            layout = Layout(frames=count, tokens_per_frame=1041, special_tokens=5, grid=(28, 37), reference_frame=reference)
            qkv = torch.randn(3, layout.num_tokens, 16, 64, device=device, dtype=torch.bfloat16)
            q, k, v = (t.view(1, layout.num_tokens, 16, 64).transpose(1, 2) for t in qkv)
            params = dict(sigma="auto", grid=None, sigma_thresholds=(30, 150), keep_reference=reference is not None, diagonal=True, mean=True, mean_log_count=False)
            with torch.inference_mode(), stages_compiled_within(True):
                for method, call in (("dense", lambda: kernel.attend(q, k, v)), ("subsample", lambda: subsample(q, k, v, layout, kernel=kernel, **params))):
                    kernels, compiled = kernel_times(call, device)
                    rows.append({"layout": family, "frames": count, "operator": method, "us": sum(k["us"] for k in kernels), "compiled_while_timed": compiled, "kernels": kernels})
                    print(f"{family} {count} frames {method}: {rows[-1]['us']:.1f} us per call", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    env = fingerprint(device)
    (out / "subsample_kernels.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1) + "\n")
    lines = [f"Measured on {summary(env)}.", ""]
    lines.append(tabulate([[r["layout"], r["frames"], r["operator"], f"{r['us']:.1f}", r["compiled_while_timed"]] for r in rows],
                          headers=["layout", "frames", "operator", "µs per call", "graphs compiled while timed"], tablefmt="github"))
    for r in rows:
        lines += ["", f"**{r['layout']}, {r['frames']} frames, {r['operator']}**", ""]
        lines.append(tabulate([[k["kernel"], f"{k['us']:.1f}", k["calls"]] for k in r["kernels"]], headers=["kernel", "µs", "calls"], tablefmt="github"))
    (out / "subsample_kernels.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
