"""The attention operators a plan can assign to a global layer, by name.

An operator is a function (q, k, v, layout, *, kernel, **params) → output of q's shape. Its
`describe` turns the parameters into what a result row records for a given frame count (σ "auto"
resolved to the window that runs); operators without frame-dependent parameters record them as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from bench.methods.block_sparse import block_sparse
from bench.methods.dense import dense
from bench.methods.frame import frame
from bench.methods.merge import merge_attention
from bench.methods.params import json_value
from bench.methods.subsample import resolve_window, subsample
from bench.registry import Registry


def _as_recorded(params: dict[str, Any], frames: int | None) -> dict[str, Any]:
    return {name: json_value(value) for name, value in params.items()}


def _subsample_recorded(params: dict[str, Any], frames: int | None) -> dict[str, Any]:
    """The window and σ that run for `frames` (σ "auto" resolved); without a frame count, as set."""
    recorded = _as_recorded(params, frames)
    if frames is not None:
        window = resolve_window(params["sigma"], params["grid"], params["sigma_thresholds"], frames)
        recorded.update(sigma=window[0] * window[1], sigma_setting=json_value(params["sigma"]), window=list(window))
    return recorded


@dataclass(frozen=True)
class Operator:
    run: Callable[..., Any]
    describe: Callable[[dict[str, Any], int | None], dict[str, Any]] = _as_recorded


OPERATORS: Registry = Registry("attention operator")
OPERATORS.register("dense", Operator(dense), help="exact softmax attention over all tokens")
OPERATORS.register("frame", Operator(frame), help="attention within each frame, with the global layer's weights")
OPERATORS.register(
    "subsample", Operator(subsample, _subsample_recorded),
    help="all queries; special tokens + a grid subset of patches (+ own key, + mean key) as keys",
)
OPERATORS.register("block_sparse", Operator(block_sparse), help="block-sparse attention, blocks chosen from pooled scores")
OPERATORS.register("merge", Operator(merge_attention), help="token merging before attention, unmerging after")
