"""Where a forward pass spends its time: attention kernels, matrix products, the rest; backbone and heads.

    python -m scripts.profile_forward --model vggt-1b --methods vggt,avggt --frames 100,500 --out results/profile
    python -m scripts.profile_forward --model vggt-1b --compile --out results/profile-compiled
    python -m scripts.profile_forward --model vggt-tiny --methods dense --frames 2 --device cpu --out /tmp/p   # toy run

One timed and one profiled forward per (method, frame count) on random weights and random 518×392
images, after --warmup untimed ones. Kernel time comes from the PyTorch profiler, each kernel put in one class by
its name; the time of each top-level module of the model (the heads) from CUDA events around it.
Next to it, the FLOP model (bench/flops.py) for the same cell. Writes profile.json and profile.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import torch
from tabulate import tabulate
from torch.profiler import ProfilerActivity, profile

from bench.env import fingerprint, summary
from bench.flops import count_flops
from bench.methods import resolve_plan
from bench.models import create_model
from bench.timing import time_forward

# Kernel classes by name fragments, first match wins (cuDNN/flash/FlexAttention attention,
# cuBLAS/CUTLASS matrix products and convolutions); everything else is elementwise work,
# normalisation, softmax outside attention, copies.
KERNEL_CLASSES = (
    ("attention", ("flash", "fmha", "sdpa", "attention", "attn", "triton_tem")),
    ("matmul", ("gemm", "nvjet", "xmma", "cutlass", "wgmma", "conv", "cudnn")),
)


def kernel_class(name: str) -> str:
    lowered = name.lower()
    return next((label for label, parts in KERNEL_CLASSES if any(p in lowered for p in parts)), "other")


class ModuleTimer:
    """CUDA events around each top-level module call (ModuleLists are iterated, never called: skipped)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.spans: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []
        self.handles = []
        for name, child in model.named_children():
            if isinstance(child, torch.nn.ModuleList):
                continue
            self.handles.append(child.register_forward_pre_hook(self._start(name)))
            self.handles.append(child.register_forward_hook(self._stop))

    def _start(self, name: str):
        def hook(module, args):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self.spans.append((name, start, end))

        return hook

    def _stop(self, module, args, output) -> None:
        self.spans[-1][2].record()

    def seconds(self) -> dict[str, float]:
        torch.cuda.synchronize()
        totals: dict[str, float] = {}
        for name, start, end in self.spans:
            totals[name] = totals.get(name, 0.0) + start.elapsed_time(end) / 1000.0
        return totals

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def profile_cell(model, plan, images: torch.Tensor, warmup: int, top: int) -> dict:
    cuda = images.device.type == "cuda"
    model.prime(images, plan)
    _, timing = time_forward(lambda: model(images, plan=plan), images.device, warmup, repeats=1)
    with torch.inference_mode():
        timer = ModuleTimer(model) if cuda else None
        activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
        begin = time.perf_counter()
        with profile(activities=activities) as prof:
            model(images, plan=plan)
            if cuda:
                torch.cuda.synchronize()
        wall = time.perf_counter() - begin
    by_class = {"attention": 0.0, "matmul": 0.0, "other": 0.0}
    kernels: list[tuple[float, str, int]] = []
    for event in prof.key_averages():
        device_time = getattr(event, "self_device_time_total", 0) if cuda else event.self_cpu_time_total
        if device_time and (not cuda or event.device_type.name == "CUDA"):
            by_class[kernel_class(event.key)] += device_time / 1e6
            kernels.append((device_time / 1e6, event.key, event.count))
    largest = [{"kernel": name[:120], "class": kernel_class(name), "s": t, "calls": calls} for t, name, calls in sorted(kernels, reverse=True)[:top]]
    modules = timer.seconds() if timer else {}
    if timer:
        timer.remove()
    return {"time_s": timing.median_s, "peak_gib": timing.peak_mem_gib, "wall_s": wall, "kernel_s": by_class, "module_s": modules, "top_kernels": largest}


@click.command()
@click.option("--model", "model_name", default="vggt-1b", show_default=True)
@click.option("--methods", default="vggt,avggt", show_default=True, help="comma-separated method presets")
@click.option("--frames", default="100,500", show_default=True, help="comma-separated frame counts")
@click.option("--size", default="392x518", show_default=True, help="image H×W")
@click.option("--device", default="cuda", show_default=True)
@click.option("--warmup", default=1, show_default=True)
@click.option("--compile", "compile_stages", is_flag=True, help="compile the blocks' and heads' memory-bound stages (model option compile)")
@click.option("--top", default=15, show_default=True, help="kernels listed per cell, largest total time first, with their call counts")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(model_name: str, methods: str, frames: str, size: str, device: str, warmup: int, compile_stages: bool, top: int, out: Path) -> None:
    height, width = (int(x) for x in size.lower().split("x"))
    model = create_model(model_name, weights="random", compile=compile_stages).to(device).eval()
    rows = []
    for count in (int(f) for f in frames.split(",")):
        images = torch.rand(count, 3, height, width, device=device)
        for method in methods.split(","):
            plan = resolve_plan(method, {}, model.traits)
            measured = profile_cell(model, plan, images, warmup, top)
            flops = count_flops(model_name, plan, count, (height, width))
            rows.append({"model": model_name, "compiled": compile_stages, "method": method, "frames": count, **measured,
                         "flops_global_attention": flops.global_attention, "flops_frame_attention": flops.frame_attention,
                         "flops_other": flops.other, "flops_float32": flops.float32, "plan": plan.describe(count)})
            print(json.dumps(rows[-1]), flush=True)
        del images
    env = fingerprint(device)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
    table = [
        [r["model"], r["compiled"], r["method"], r["frames"], f"{r['time_s']:.3f}", f"{r['peak_gib'] or 0:.1f}", f"{r['wall_s']:.3f}",
         *(f"{r['kernel_s'][c]:.3f}" for c in ("attention", "matmul", "other")),
         ", ".join(f"{k} {v:.3f}" for k, v in r["module_s"].items()),
         *(f"{r[key] / 1e12:.1f}" for key in ("flops_global_attention", "flops_frame_attention", "flops_other", "flops_float32"))]
        for r in rows
    ]
    headers = ["model", "compiled", "method", "frames", "time s", "peak GiB", "profiled wall s", "attention s", "matmul s", "other s", "modules s",
               "global-attn TFLOP", "frame-attn TFLOP", "other bf16 TFLOP", "float32 TFLOP"]
    (out / "profile.md").write_text(f"Measured on {summary(env)}.\n\n" + tabulate(table, headers=headers, tablefmt="github") + "\n")
    print(tabulate(table, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
