"""Timing of a model's forward pass: warm-up, repeats, median, peak memory.

On CUDA each repeat is bracketed by CUDA events after a synchronize, so only the forward pass is
timed and the single host sync is the one that reads the end event; on the CPU a perf_counter
does the same job. Peak memory is CUDA's allocator peak over warm-up and repeats (None on CPU,
where no per-call peak is available).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    median_s: float
    min_s: float
    max_s: float
    repeats: int
    warmup: int
    peak_mem_gib: float | None

    @classmethod
    def of(cls, durations: list[float], warmup: int, peak_mem_gib: float | None) -> "Timing":
        return cls(statistics.median(durations), min(durations), max(durations), len(durations), warmup, peak_mem_gib)

    def as_row(self) -> dict[str, Any]:
        return {
            "time_median_s": self.median_s,
            "time_min_s": self.min_s,
            "time_max_s": self.max_s,
            "time_repeats": self.repeats,
            "time_warmup": self.warmup,
            "peak_mem_gib": self.peak_mem_gib,
        }


def time_forward(fn: Callable[[], T], device: torch.device | str, warmup: int, repeats: int) -> tuple[T, Timing]:
    """Call `fn` `warmup` times untimed, then `repeats` times timed; return the last output and the timing.

    The previous output is dropped before each call so it does not inflate the next call's memory.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"timing needs repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    durations: list[float] = []
    out: T | None = None
    with torch.inference_mode():
        for _ in range(warmup):
            out = None
            out = fn()
        for _ in range(repeats):
            out = None
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize(device)
                start.record()
                out = fn()
                end.record()
                end.synchronize()
                durations.append(start.elapsed_time(end) / 1000.0)
            else:
                begin = time.perf_counter()
                out = fn()
                durations.append(time.perf_counter() - begin)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    return out, Timing.of(durations, warmup, peak)
