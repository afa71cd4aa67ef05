"""The CUDA branch of the forward timer, on a GPU (run through the device tool: `python -m pytest
gpu_tests`; CI has no GPU and does not collect this folder).

The timer must measure the GPU work of the timed call only: the same as a host clock around a
synchronised call, nothing of the work queued before it, and report the allocator's peak of the
call's own tensors.
"""

from __future__ import annotations

import time

import pytest
import torch

from bench.timing import time_forward

if not torch.cuda.is_available():  # this folder is for GPU machines: say so, loudly, anywhere else
    raise RuntimeError("gpu_tests need a CUDA device; run them through the device tool")

DEVICE = torch.device("cuda")


def matmuls(count: int, size: int = 4096):
    a = torch.randn(size, size, device=DEVICE, dtype=torch.bfloat16)

    def run() -> torch.Tensor:
        out = a
        for _ in range(count):
            out = out @ a
        return out

    return run


def host_seconds(fn, repeats: int = 5) -> float:
    """Median host time of a synchronised call: the reference the events must agree with."""
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        begin = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - begin)
    return sorted(times)[len(times) // 2]


@pytest.mark.parametrize("count", [20, 200])
def test_event_timing_agrees_with_a_synchronised_host_clock(count):
    fn = matmuls(count)
    _, timing = time_forward(fn, DEVICE, warmup=2, repeats=5)
    with torch.inference_mode():
        reference = host_seconds(fn)
    print(f"{count} bf16 4096³ products: events {timing.median_s * 1e3:.3f} ms, host clock {reference * 1e3:.3f} ms")
    assert timing.repeats == 5 and timing.warmup == 2 and timing.min_s <= timing.median_s <= timing.max_s
    assert timing.median_s == pytest.approx(reference, rel=0.05, abs=5e-4)


def test_work_queued_before_the_call_is_not_timed():
    slow, quick = matmuls(400), matmuls(4)
    with torch.inference_mode():
        slow()  # queued, not waited for
    _, timing = time_forward(quick, DEVICE, warmup=0, repeats=1)
    with torch.inference_mode():
        alone = host_seconds(quick)
        backlog = host_seconds(slow, repeats=1)
    print(f"timed call {timing.median_s * 1e3:.3f} ms after a queued {backlog * 1e3:.1f} ms of work; alone {alone * 1e3:.3f} ms")
    assert timing.median_s < 0.5 * backlog and timing.median_s == pytest.approx(alone, rel=0.25, abs=5e-4)


def test_peak_memory_is_the_calls_own_allocations():
    torch.cuda.empty_cache()
    held = torch.cuda.memory_allocated(DEVICE)
    gib = 2.0

    def allocate() -> torch.Tensor:
        return torch.empty(int(gib * 2**30), dtype=torch.uint8, device=DEVICE)

    _, timing = time_forward(allocate, DEVICE, warmup=1, repeats=3)
    print(f"peak {timing.peak_mem_gib:.3f} GiB for a {gib} GiB tensor with {held / 2**30:.3f} GiB held before")
    # The previous output is dropped before each call: one tensor alive at a time, not two.
    assert gib <= timing.peak_mem_gib - held / 2**30 < gib + 0.05
