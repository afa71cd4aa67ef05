"""Model-input preprocessing with ground truth transformed alike, in one place for every adapter.

A mode maps a `Sequence` to a new `Sequence` whose images are what the model sees and whose
intrinsics, depth and valid mask describe exactly those pixels.
"""

from __future__ import annotations

from typing import Callable

from bench.registry import Registry
from datasets_adapters.sequence import Sequence

PREPROCESS: Registry[Callable[[Sequence], Sequence]] = Registry("preprocess mode")
PREPROCESS.register("none", lambda seq: seq, help="images and ground truth as the adapter gives them")


def preprocess(seq: Sequence, mode: str | None) -> Sequence:
    return seq if mode is None else PREPROCESS.get(mode)(seq)
