"""The attention operators a plan can assign to a global layer, by name.

An operator is a function (q, k, v, layout, *, kernel, **params) → output of q's shape. Its
`describe` turns the parameters into what a result row records for a given frame count (σ "auto"
resolved to the window that runs); operators without frame-dependent parameters record them as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from bench.methods.block_sparse import Q_BLOCK, K_BLOCK, block_sparse
from bench.methods.dense import dense
from bench.methods.frame import frame
from bench.methods.layout import Layout
from bench.methods.merge import merge_attention, token_roles
from bench.methods.params import json_value
from bench.methods.subsample import kept_tokens, resolve_window, subsample
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


# Floating-point operations of one attention call, for the FLOP model (bench/flops.py): two
# matrix products (scores and weighted values) of 2·queries·keys·dim each, dim = heads × head_dim.
# Softmax, pooling and the closed-form extra terms are O(N·dim) and left out.


def _attention_flops(queries: float, keys: float, dim: int) -> float:
    return 4.0 * queries * keys * dim


def _dense_flops(params: dict[str, Any], layout: Layout, dim: int) -> float:
    return _attention_flops(layout.num_tokens, layout.num_tokens, dim)


def _frame_flops(params: dict[str, Any], layout: Layout, dim: int) -> float:
    return layout.frames * _attention_flops(layout.tokens_per_frame, layout.tokens_per_frame, dim)


def _subsample_flops(params: dict[str, Any], layout: Layout, dim: int) -> float:
    window = resolve_window(params["sigma"], params["grid"], params["sigma_thresholds"], layout.frames)
    keys = int(kept_tokens(layout, window, params["keep_reference"], torch.device("cpu")).sum())
    return _attention_flops(layout.num_tokens, keys, dim)


def _block_sparse_flops(params: dict[str, Any], layout: Layout, dim: int) -> float:
    """Patch queries over the kept key blocks, special queries dense, block selection on pooled scores.

    The kept share is data-dependent: with `key_blocks_kept` (the share a run observed, special
    tokens' blocks included) the count is the work done; without, a lower bound, 1 − sparse_ratio
    of the patch keys (the cdf rule can only add blocks) plus the special keys."""
    n, special = layout.num_tokens, layout.frames * layout.special_tokens
    if "key_blocks_kept" in params:
        keys = params["key_blocks_kept"] * n
    else:
        keys = max(0.0, 1.0 - params["sparse_ratio"]) * n + special
    selection = 2.0 * (n / Q_BLOCK) * (n / K_BLOCK) * dim
    return _attention_flops(n - special, keys, dim) + _attention_flops(special, n, dim) + selection


def _merge_flops(params: dict[str, Any], layout: Layout, dim: int) -> float:
    """Cosine matching of every source against every target, then attention on the short sequence."""
    target, guarded = token_roles(layout, params["protected"], params["seed"])
    sources = int((~target & ~guarded).sum())
    merges = min(int(params["ratio"] * layout.num_tokens), sources)
    matching = 2.0 * sources * int(target.sum()) * dim if merges else 0.0
    length = layout.num_tokens - merges
    return matching + _attention_flops(length, length, dim)


@dataclass(frozen=True)
class Operator:
    run: Callable[..., Any]
    flops: Callable[[dict[str, Any], Layout, int], float]
    describe: Callable[[dict[str, Any], int | None], dict[str, Any]] = _as_recorded


OPERATORS: Registry = Registry("attention operator")
OPERATORS.register("dense", Operator(dense, _dense_flops), help="exact softmax attention over all tokens")
OPERATORS.register("frame", Operator(frame, _frame_flops), help="attention within each frame, with the global layer's weights")
OPERATORS.register(
    "subsample", Operator(subsample, _subsample_flops, _subsample_recorded),
    help="all queries; special tokens + a grid subset of patches (+ own key, + mean key) as keys",
)
OPERATORS.register("block_sparse", Operator(block_sparse, _block_sparse_flops), help="block-sparse attention, blocks chosen from pooled scores")
OPERATORS.register("merge", Operator(merge_attention, _merge_flops), help="token merging before attention, unmerging after")
