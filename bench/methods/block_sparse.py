"""`block_sparse`: block-sparse global attention with blocks chosen from pooled scores (sparse-VGGT).

Special tokens stay dense: their queries attend to every key (through the plan's exact kernel) and
their keys are always kept. Patch queries run block-sparse over a reordered key sequence, all
patches (frame-major) followed by all special tokens, so the specials fill the last key blocks (a
block holding any special key is kept whole, with the last few patch keys it may also hold).
Queries are average-pooled in blocks of 128 and keys in blocks of 64 (the last block of each may be
short: pooled over the tokens it has); the softmax of pooled scores picks, per query block and
head, the most probable key blocks: at least ceil((1 − sparse_ratio)·blocks), and as many as it
takes for their cumulative probability to reach cdf_threshold, whichever is more.

On CUDA the sparse part runs on FlexAttention (compiled) with a block mask built from the chosen
blocks; elsewhere on a masked reference path (exact, chunked over query blocks, meant for tests).
`implementation=flex` on CPU runs FlexAttention eagerly, which tests the mask it is given.
Each call tells the kernel the share of key blocks it kept (`AttentionKernel.observe`), so a
result row says how sparse the attention that ran actually was.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F

from bench.methods.kernels import AttentionKernel
from bench.methods.layout import Layout
from bench.stages import stage


Q_BLOCK = 128
K_BLOCK = 64
IMPLEMENTATIONS = ("auto", "flex", "masked")
_MASKED_CHUNK_ELEMENTS = 1 << 26  # mask entries per chunk of the reference path


def pool_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """Mean over consecutive blocks of `block` tokens along dim 2, float32 or wider; last block may be short."""
    acc = torch.promote_types(x.dtype, torch.float32)
    full = x.shape[2] // block
    pooled = [x[:, :, : full * block].unflatten(2, (full, block)).mean(3, dtype=acc)]
    if x.shape[2] > full * block:
        pooled.append(x[:, :, full * block :].mean(2, keepdim=True, dtype=acc))
    return torch.cat(pooled, dim=2)


def select_blocks(q_pooled: torch.Tensor, k_pooled: torch.Tensor, sparse_ratio: float, cdf_threshold: float) -> torch.Tensor:
    """Boolean (B, heads, q blocks, k blocks): the key blocks each query block keeps, per head."""
    blocks = k_pooled.shape[2]
    at_least = min(blocks, math.ceil(round((1.0 - sparse_ratio) * blocks, 9)))  # (1 - 0.7)·10 is 3.0000000000000004
    return stage(keep_most_probable)(q_pooled, k_pooled, at_least, cdf_threshold)


def keep_most_probable(q_pooled: torch.Tensor, k_pooled: torch.Tensor, at_least: int, cdf_threshold: float) -> torch.Tensor:
    """Per query block and head, the most probable key blocks of the pooled scores' softmax: at
    least `at_least`, and as many as it takes to reach `cdf_threshold`.

    One head at a time, so the pooled score matrices stay small at a thousand frames; a
    compiled forward runs it compiled (`bench.stages.stage`): a few small kernels per head.
    """
    blocks = k_pooled.shape[2]
    scale = 1.0 / math.sqrt(q_pooled.shape[-1])
    rank = torch.arange(blocks, device=q_pooled.device)
    keep = torch.empty(q_pooled.shape[:3] + (blocks,), dtype=torch.bool, device=q_pooled.device)
    for head in range(q_pooled.shape[1]):
        probs = torch.softmax(q_pooled[:, head] @ k_pooled[:, head].transpose(-1, -2) * scale, dim=-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        to_reach = (sorted_probs.cumsum(-1) < cdf_threshold).sum(-1, keepdim=True) + 1
        count = torch.clamp(to_reach, min=at_least, max=blocks)
        keep[:, head] = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, order, rank < count)
    return keep


def block_sparse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: Layout,
    *,
    kernel: AttentionKernel,
    sparse_ratio: float,
    cdf_threshold: float,
    implementation: str = "auto",
) -> torch.Tensor:
    """Special queries dense; patch queries over their selected key blocks plus every special key."""
    special, patches = _token_kinds(layout, q.device)
    order = torch.cat([patches, special])
    q_patch = q.index_select(2, patches)
    k_all, v_all = k.index_select(2, order), v.index_select(2, order)

    patch_keys = patches.numel()
    keep_patch = select_blocks(
        pool_blocks(q_patch, Q_BLOCK), pool_blocks(k_all[:, :, :patch_keys], K_BLOCK), sparse_ratio, cdf_threshold
    )
    key_blocks = -(-order.numel() // K_BLOCK)
    keep = torch.ones(keep_patch.shape[:3] + (key_blocks,), dtype=torch.bool, device=q.device)
    keep[..., : patch_keys // K_BLOCK] = keep_patch[..., : patch_keys // K_BLOCK]  # later blocks hold specials
    kernel.observe("key_blocks_kept", keep.mean(dtype=torch.float32))

    if implementation == "auto":
        implementation = "flex" if q.device.type == "cuda" else "masked"
    if implementation == "flex":
        kernel.record("flex")
        out_patch = _flex_block_sparse(q_patch, k_all, v_all, keep)
    elif implementation == "masked":
        out_patch = masked_block_sparse(q_patch, k_all, v_all, keep)
    else:
        raise ValueError(f"block_sparse: implementation {implementation!r} is not one of {', '.join(IMPLEMENTATIONS)}")

    out = torch.empty_like(q)
    out.index_copy_(2, patches, out_patch)
    if special.numel():
        out.index_copy_(2, special, kernel.attend(q.index_select(2, special), k, v))
    return out


@lru_cache(maxsize=16)
def _token_kinds(layout: Layout, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of all special tokens and of all patch tokens, each in sequence order (once per layout)."""
    is_special = (torch.arange(layout.tokens_per_frame, device=device) < layout.special_tokens).repeat(layout.frames)
    return is_special.nonzero().squeeze(1), (~is_special).nonzero().squeeze(1)


def _expand_keep(keep: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Token-level mask (B, heads, rows, cols) from block-level `keep`."""
    return keep.repeat_interleave(Q_BLOCK, dim=2)[:, :, :rows].repeat_interleave(K_BLOCK, dim=3)[..., :cols]


def masked_block_sparse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Reference: exact attention under the token-level mask, a few query blocks at a time."""
    blocks_per_chunk = max(1, _MASKED_CHUNK_ELEMENTS // (Q_BLOCK * k.shape[2] * q.shape[0] * q.shape[1]))
    outs = []
    for first in range(0, keep.shape[2], blocks_per_chunk):
        q_chunk = q[:, :, first * Q_BLOCK : (first + blocks_per_chunk) * Q_BLOCK]
        mask = _expand_keep(keep[:, :, first : first + blocks_per_chunk], q_chunk.shape[2], k.shape[2])
        outs.append(F.scaled_dot_product_attention(q_chunk, k, v, attn_mask=mask))
    return torch.cat(outs, dim=2)


def block_mask(keep: torch.Tensor, q_len: int, kv_len: int, *, with_mask_mod: bool):
    """A FlexAttention BlockMask whose kept blocks are all full blocks.

    The compiled kernel runs full blocks without evaluating a mask function, so none is needed
    there (and a fresh closure per call would make the compiler guard on it and recompile). Eager
    FlexAttention evaluates only the mask function; `with_mask_mod` gives it a lookup of `keep`.
    """
    from torch.nn.attention.flex_attention import BlockMask

    counts = keep.sum(-1, dtype=torch.int32)
    indices = torch.argsort(keep.to(torch.uint8), dim=-1, descending=True, stable=True).to(torch.int32)

    def kept(b, h, q_idx, kv_idx):
        return keep[b, h, q_idx // Q_BLOCK, kv_idx // K_BLOCK]

    return BlockMask.from_kv_blocks(
        torch.zeros_like(counts), indices, counts, indices, BLOCK_SIZE=(Q_BLOCK, K_BLOCK),
        mask_mod=kept if with_mask_mod else None, seq_lengths=(q_len, kv_len), compute_q_blocks=False,
    )


def _flex_block_sparse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    # The kernel's tiles must divide the sparse blocks; PyTorch's H100 default for 16-bit, head dim
    # 64 is 128×128, which does not divide the 64-token key blocks.
    options = {"BLOCK_M": Q_BLOCK, "BLOCK_N": K_BLOCK} if q.dtype in (torch.float16, torch.bfloat16) else None
    compiled = q.device.type == "cuda"
    mask = block_mask(keep, q.shape[2], k.shape[2], with_mask_mod=not compiled)
    return (_compiled_flex() if compiled else _eager_flex())(q, k, v, block_mask=mask, kernel_options=options)


def _eager_flex() -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention


@lru_cache(maxsize=1)
def _compiled_flex() -> Callable[..., torch.Tensor]:
    """FlexAttention is only fast compiled; compiled lazily so CPU-only installs never need Triton.
    Shapes change with the frame count, so compilation turns dynamic after the first new shape."""
    return torch.compile(_eager_flex())
