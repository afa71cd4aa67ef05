"""`subsample`: AVGGT step 2, subsampled global attention (SGA).

All queries stay. Keys/values are one shared set: every special token of every frame, the first
patch of every s_h×s_w window of each frame's patch grid, and the whole reference frame when it is
kept uncompressed. Two optional compensation terms join the same softmax:

- diagonal: each query also attends to its own key/value, but only when that key was dropped, so no
  key is counted twice (queries whose own key is kept see exactly the kept set);
- mean: one extra key/value, the mean of all dropped patch keys/values, optionally with an additive
  log(number dropped) bias so it weighs as much as the patches it stands for would at their mean.

The kept set runs through the plan's exact kernel, the unbiased mean key appended to it (one key
shared by every query is just one more key). The kernel also returns each query's log-sum-exp, and
the per-query terms (the own key, a biased mean) are merged in closed form. Nothing N×N is ever built.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from bench.methods.kernels import AttentionKernel
from bench.methods.layout import Layout
from bench.methods.params import SIGMA_WINDOWS
from bench.stages import constant_heads, stage


AUTO_SIGMAS = (2, 4, 9)  # below the first threshold, up to the second, above


def auto_sigma(frames: int, thresholds: tuple[int, int]) -> int:
    """σ by frame count, as the paper chooses by view density: 2 for few frames, 4 for ~100, 9 for many."""
    low, high = thresholds
    return AUTO_SIGMAS[0] if frames < low else AUTO_SIGMAS[1] if frames < high else AUTO_SIGMAS[2]


def resolve_window(sigma: int | str, grid: tuple[int, int] | None, thresholds: tuple[int, int], frames: int) -> tuple[int, int]:
    """The (rows, cols) window: an explicit grid wins, else σ (or σ chosen by `auto_sigma`)."""
    if grid is not None:
        return grid
    return SIGMA_WINDOWS[auto_sigma(frames, thresholds) if sigma == "auto" else int(sigma)]


@lru_cache(maxsize=16)
def kept_keys(layout: Layout, window: tuple[int, int], keep_reference: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kept mask, the kept indices and the dropped ones, made once per layout: every global
    layer of a forward reuses them, so no layer waits on the host for an index count."""
    kept = kept_tokens(layout, window, keep_reference, device)
    return kept, kept.nonzero().squeeze(1), (~kept).nonzero().squeeze(1)


def kept_tokens(layout: Layout, window: tuple[int, int], keep_reference: bool, device: torch.device) -> torch.Tensor:
    """Boolean (S·P,) mask of the keys every query sees."""
    if keep_reference and layout.reference_frame is None:
        raise ValueError("subsample: keep_reference=true needs a model with a reference frame; set keep_reference=false")
    h, w = layout.grid
    rows = torch.arange(h, device=device) % window[0] == 0
    cols = torch.arange(w, device=device) % window[1] == 0
    special = torch.ones(layout.special_tokens, dtype=torch.bool, device=device)
    per_frame = torch.cat([special, (rows[:, None] & cols[None, :]).flatten()])
    kept = per_frame.repeat(layout.frames, 1)
    if keep_reference:
        kept[layout.reference_frame] = True
    return kept.flatten()


def subsample(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: Layout,
    *,
    kernel: AttentionKernel,
    sigma: int | str,
    grid: tuple[int, int] | None,
    sigma_thresholds: tuple[int, int],
    keep_reference: bool,
    diagonal: bool,
    mean: bool,
    mean_log_count: bool,
) -> torch.Tensor:
    """All queries over the kept keys (+ own key, + mean key), one softmax."""
    window = resolve_window(sigma, grid, sigma_thresholds, layout.frames)
    kept, kept_index, dropped_index = kept_keys(layout, window, keep_reference, q.device)
    dropped = dropped_index.numel()
    mean = mean and dropped > 0
    biased_mean = mean and mean_log_count  # unbiased, the mean is one more key of the kernel's own softmax
    k_kept, v_kept = stage(gather_kept)(k, v, kept_index, dropped_index if mean and not biased_mean else None)
    if not ((diagonal and dropped) or biased_mean):
        return kernel.attend(q, k_kept, v_kept)

    out, lse = kernel.attend_with_lse(q, k_kept, v_kept)
    own_mask = kept if diagonal else None
    k_mean = v_mean = None
    if biased_mean:
        k_mean, v_mean = stage(dropped_means)(k, v, dropped_index)
    mean_bias = log_count(dropped if biased_mean else 1, torch.promote_types(q.dtype, torch.float32), q.device)
    return stage(merge_extra_terms)(out, lse, q, k, v, own_mask, k_mean, v_mean, mean_bias)


@lru_cache(maxsize=16)
def log_count(count: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """log(count) as a 0-d tensor made once: the mean key's bias, an input of the compiled merge
    (a Python float would be compiled in as a constant, once per frame count)."""
    return torch.tensor(math.log(count), dtype=dtype, device=device)


def dropped_means(k: torch.Tensor, v: torch.Tensor, dropped_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of the dropped keys and of their values, summed in float32 or wider: (B, heads, head_dim)."""
    constant_heads(k, v)
    means = _mean_rows(_token_rows(k, v).index_select(2, dropped_index))
    return means[0], means[1]


def gather_kept(k: torch.Tensor, v: torch.Tensor, kept_index: torch.Tensor, dropped_index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept keys and values; with `dropped_index`, the dropped ones' mean key and value after them.

    Tokens are gathered as whole rows of heads × head_dim, the order the block's q/k/v sit in
    memory, so each kept token is one contiguous copy; the results keep that order (the layout the
    attention kernels read). Memory-bound, and launch-bound at few frames: a compiled forward runs
    it as a reduction and a gather over keys and values stacked (`bench.stages.stage`).
    """
    constant_heads(k, v)
    rows = _token_rows(k, v)
    kept = rows.index_select(2, kept_index)
    if dropped_index is not None:
        kept = torch.cat([kept, _mean_rows(rows.index_select(2, dropped_index)).unsqueeze(2)], dim=2)
    kept = kept.transpose(2, 3)
    return kept[0], kept[1]


def _token_rows(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Keys and values (B, heads, N, head_dim) as one (2, B, N, heads, head_dim) view-ordered tensor."""
    return torch.stack([k, v]).transpose(2, 3)


def _mean_rows(rows: torch.Tensor) -> torch.Tensor:
    """(2, B, n, heads, head_dim) → their mean over n, (2, B, heads, head_dim), summed in float32 or wider."""
    acc = torch.promote_types(rows.dtype, torch.float32)
    return (rows.sum(2, dtype=acc) / rows.shape[2]).to(rows.dtype)


def merge_extra_terms(
    out: torch.Tensor,
    lse: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    own_mask: torch.Tensor | None,
    k_mean: torch.Tensor | None,
    v_mean: torch.Tensor | None,
    mean_bias: torch.Tensor,
) -> torch.Tensor:
    """The kept keys' attention (`out`, `lse`) joined under one softmax by each query's own key
    (where `own_mask` is False: dropped keys only) and by the mean key with its additive bias.

    Memory-bound: every step reads or writes (B, heads, N, head_dim) tensors, so a compiled
    forward runs it as one fused kernel (`bench.stages.stage`).
    """
    constant_heads(out, q, k, v, k_mean, v_mean, per_query=(lse,))
    acc = lse.dtype
    scale = q.shape[-1] ** -0.5
    terms: list[tuple[torch.Tensor, torch.Tensor]] = []  # (score per query, value per query or shared)
    if own_mask is not None:
        own = (q.to(acc) * k.to(acc)).sum(-1) * scale
        terms.append((own.masked_fill(own_mask, -math.inf), v))
    if k_mean is not None:
        score = (q.to(acc) * k_mean.to(acc).unsqueeze(2)).sum(-1) * scale + mean_bias
        terms.append((score, v_mean.unsqueeze(2)))
    total = torch.logsumexp(torch.stack([lse] + [score for score, _ in terms]), dim=0)
    merged = out.to(acc) * torch.exp(lse - total).unsqueeze(-1)
    for score, value in terms:
        merged = merged + value.to(acc) * torch.exp(score - total).unsqueeze(-1)
    return merged.to(q.dtype)
