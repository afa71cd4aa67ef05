"""`merge`: token merging before attention and unmerging after (FastVGGT).

Tokens take one of three roles, the same for every batch element and every layer (seeded):

- target: never merged, absorbs others: every special token, every token of the reference frame,
  and in each other frame one random patch per 2×2 cell of the patch grid (cells at odd edges are
  smaller and still get one);
- protected: a fixed stride over the sequence picks `protected`·N tokens that are never merged;
- source: everything else; each is matched to its most cosine-similar target over the whole
  sequence (keys, all heads concatenated, since the operator sees q, k, v only).

The `ratio`·N best-matched sources (at most all of them) are merged: q, k and v of a target become
the mean over it and its sources. Attention runs on the short sequence through the plan's exact
kernel, and every merged source receives its target's output. With ratio 0 nothing changes. The
matching metric, the merge and the unmerge are compiled stages of a compiled forward.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from bench.methods.kernels import AttentionKernel
from bench.methods.layout import Layout
from bench.stages import constant_heads, stage


CELL = 2  # target cells are CELL×CELL patches
_MATCH_CHUNK_ELEMENTS = 1 << 26  # similarity entries per chunk of the matching


def token_roles(layout: Layout, protected: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (S·P,) masks of targets and of protected tokens, on the CPU; drawn from `seed` alone."""
    h, w = layout.grid
    frames = [f for f in range(layout.frames) if f != layout.reference_frame]
    cells_h, cells_w = -(-h // CELL), -(-w // CELL)
    cell_rows = torch.arange(cells_h) * CELL
    cell_cols = torch.arange(cells_w) * CELL
    draw = torch.rand((len(frames), cells_h, cells_w, 2), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rows = cell_rows[:, None] + (draw[..., 0] * (h - cell_rows).clamp(max=CELL)[:, None]).long()
    cols = cell_cols[None, :] + (draw[..., 1] * (w - cell_cols).clamp(max=CELL)[None, :]).long()
    frame_start = torch.tensor(frames, dtype=torch.long).view(-1, 1, 1) * layout.tokens_per_frame

    target = (torch.arange(layout.tokens_per_frame) < layout.special_tokens).repeat(layout.frames)
    target[(frame_start + layout.special_tokens + rows * w + cols).flatten()] = True
    if layout.reference_frame is not None:
        start = layout.reference_frame * layout.tokens_per_frame
        target[start : start + layout.tokens_per_frame] = True

    count = int(layout.num_tokens * protected)
    guarded = torch.zeros(layout.num_tokens, dtype=torch.bool)
    if count:
        guarded[torch.arange(0, layout.num_tokens, max(1, layout.num_tokens // count))[:count]] = True
    return target, guarded


@lru_cache(maxsize=16)
def role_indices(layout: Layout, protected: float, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the targets and of the mergeable sources on `device`, made once per layout so
    that no global layer waits on the host for them."""
    target, guarded = token_roles(layout, protected, seed)
    source = ~target & ~guarded
    return target.nonzero().squeeze(1).to(device), source.nonzero().squeeze(1).to(device)


def match_metric(k: torch.Tensor) -> torch.Tensor:
    """(B, N, heads·head_dim) unit keys, all heads concatenated: what sources and targets are matched by."""
    constant_heads(k)
    return F.normalize(k.transpose(1, 2).flatten(2), dim=-1)


def merge_assignment(k: torch.Tensor, target_index: torch.Tensor, source_index: torch.Tensor, merges: int) -> torch.Tensor:
    """(B, N) slot of every token in the merged sequence; merged sources share their target's slot."""
    batch, n = k.shape[0], k.shape[2]
    metric = stage(match_metric)(k)
    targets_t = metric[:, target_index].transpose(1, 2)
    chunk = max(1, _MATCH_CHUNK_ELEMENTS // (batch * target_index.numel()))
    best_score, best_target = [], []
    for start in range(0, source_index.numel(), chunk):
        score, which = (metric[:, source_index[start : start + chunk]] @ targets_t).max(-1)
        best_score.append(score)
        best_target.append(which)
    best_score, best_target = torch.cat(best_score, 1), torch.cat(best_target, 1)

    merged = best_score.argsort(dim=1, descending=True, stable=True)[:, :merges]  # (B, merges) into sources
    is_merged = torch.zeros(batch, n, dtype=torch.bool, device=k.device)
    is_merged.scatter_(1, source_index[merged], True)
    slot = (~is_merged).cumsum(1) - 1
    absorbing = slot.gather(1, target_index[best_target.gather(1, merged)])
    return slot.scatter(1, source_index[merged], absorbing)


def merge_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: Layout,
    *,
    kernel: AttentionKernel,
    ratio: float,
    protected: float,
    seed: int,
) -> torch.Tensor:
    """Attention over merged tokens, each output copied back to every token merged into it."""
    target_index, source_index = role_indices(layout, protected, seed, q.device)
    merges = min(int(ratio * layout.num_tokens), source_index.numel())
    if merges == 0:
        slot = torch.arange(layout.num_tokens, device=q.device).expand(q.shape[0], -1)
    else:
        slot = merge_assignment(k, target_index, source_index, merges)
    merged = stage(merge_tokens)(q, k, v, slot, layout.num_tokens - merges)
    return stage(unmerge_tokens)(kernel.attend(*merged), slot)


def merge_tokens(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k and v of the `length` merged tokens: each slot's mean over the tokens `slot` sends to it.

    Memory-bound (scatters and a division over (B, heads, N, head_dim)): a compiled forward runs
    it fused (`bench.stages.stage`)."""
    constant_heads(q, k, v)
    index = slot[:, None, :, None].expand(q.shape)
    acc = torch.promote_types(q.dtype, torch.float32)
    counts = torch.zeros(q.shape[0], length, dtype=acc, device=q.device).scatter_add_(1, slot, torch.ones_like(slot, dtype=acc))
    counts = counts[:, None, :, None]

    def merge(x: torch.Tensor) -> torch.Tensor:
        sums = torch.zeros(x.shape[:2] + (length, x.shape[3]), dtype=acc, device=x.device)
        return (sums.scatter_add_(2, index, x.to(acc)) / counts).to(x.dtype)

    return merge(q), merge(k), merge(v)


def unmerge_tokens(out: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """Every token's output: its slot's (B, heads, N, head_dim)."""
    constant_heads(out)
    return out.gather(2, slot[:, None, :, None].expand(out.shape[:2] + slot.shape[1:] + out.shape[3:]))
