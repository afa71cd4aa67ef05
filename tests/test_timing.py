"""Timing: warm-up calls untimed, repeats timed, statistics of exactly the timed calls."""

from __future__ import annotations

import pytest
import torch

from bench.timing import Timing, time_forward


def test_statistics_of_the_timed_calls():
    timing = Timing.of([3.0, 1.0, 2.0, 10.0], warmup=2, peak_mem_gib=None)
    assert (timing.median_s, timing.min_s, timing.max_s, timing.repeats) == (2.5, 1.0, 10.0, 4)
    assert timing.as_row() == {
        "time_median_s": 2.5, "time_min_s": 1.0, "time_max_s": 10.0, "time_repeats": 4, "time_warmup": 2, "peak_mem_gib": None,
    }  # fmt: skip


def test_warmup_and_repeats_call_counts_and_last_output():
    calls = []

    def forward():
        calls.append(torch.is_inference_mode_enabled())
        return len(calls)

    out, timing = time_forward(forward, "cpu", warmup=2, repeats=3)
    assert len(calls) == 5 and all(calls)  # every call runs under inference mode
    assert out == 5 and timing.repeats == 3 and timing.warmup == 2
    assert 0 <= timing.min_s <= timing.median_s <= timing.max_s
    assert timing.peak_mem_gib is None  # no per-call peak on the CPU


def test_bad_repeat_counts():
    with pytest.raises(ValueError, match="repeats >= 1"):
        time_forward(lambda: None, "cpu", warmup=0, repeats=0)
