"""A block's q/k LayerNorm, 2D RoPE and q/k/v layout as one Triton kernel.

After the qkv projection, the rest of a block's pre-attention work is memory-bound: each q and k
head is normalised over its channels, rotated by its token's RoPE angles, and q, k and v are laid
out for the attention kernel. Compiled from the model's PyTorch code, this is several kernels whose
index arithmetic (views, unbind, stack, rotate-half) cost about six times the memory traffic on an
H200 (`results/profile-h200/`); here each program reads a tile of (token, head) rows once, plus
the partner channels rotate-half needs, and writes them once, in float32 arithmetic as the eager
model computes (LayerNorm and RoPE in float32 under autocast, rounded to the attention dtype).

The compiled forward uses it on CUDA (`Block.forward`); the eager forward keeps the model's own
code, which is what `scripts/check_compiled.py` compares it with. The kernel is built on first use,
so a machine without Triton never imports it; tests run it on the CPU through Triton's interpreter.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

import torch
from torch import nn

from bench.models.layers.attention import Attention
from bench.models.layers.rope import RopeTable

PAIRS_PER_PROGRAM = 32  # (token, head) rows per program: 32 × 64 channels, four warps


def fusable(attention: Attention, device: torch.device) -> bool:
    """Whether `normed_rotated_qkv` stands in for this attention's `project` on `device`: CUDA,
    inference (the kernel has no backward), Triton installed, and a layout it handles."""
    return device.type == "cuda" and not torch.is_grad_enabled() and _triton_available() and kernel_fits(attention)


def kernel_fits(attention: Attention) -> bool:
    """q/k norms that are affine LayerNorms or none, and a power-of-two head size (rotate-half pairs
    channel c with c XOR head_dim/4)."""
    head_dim = attention.head_dim
    norms_fit = all(_is_affine_layer_norm(norm) or isinstance(norm, nn.Identity) for norm in (attention.q_norm, attention.k_norm))
    return norms_fit and head_dim >= 4 and head_dim & (head_dim - 1) == 0


def normed_rotated_qkv(qkv: torch.Tensor, attention: Attention, rope: RopeTable | None) -> torch.Tensor:
    """(rows, 3·dim) projection output → q, k, v as (3, rows, heads, head_dim), q and k normed by
    the attention's q/k norms and rotated by `rope` (rows laid out frame after frame), in qkv's dtype.

    The same values as `torch.stack(attention.project(...))` on the projection, up to the order of
    the float32 sums in the norms."""
    rows = qkv.shape[0]
    heads, head_dim = attention.num_heads, attention.head_dim
    qkv = qkv.contiguous()
    out = qkv.new_empty((3, rows, heads, head_dim))
    norm = _is_affine_layer_norm(attention.q_norm)
    q_norm, k_norm = attention.q_norm, attention.k_norm
    norm_arguments = (q_norm.weight, q_norm.bias, k_norm.weight, k_norm.bias, q_norm.eps, k_norm.eps) if norm else (qkv, qkv, qkv, qkv, 0.0, 0.0)
    rope_arguments = (rope.cos.contiguous(), rope.sin.contiguous(), rope.period) if rope is not None else (qkv, qkv, 1)
    grid = (-(-rows * heads // PAIRS_PER_PROGRAM), 3)
    _kernel()[grid](
        qkv, out, rows, *norm_arguments, *rope_arguments,
        HEADS=heads, HEAD_DIM=head_dim, PAIRS=PAIRS_PER_PROGRAM, NORM=norm, ROPE=rope is not None, num_warps=4,
    )
    return out


def _is_affine_layer_norm(norm: nn.Module) -> bool:
    return isinstance(norm, nn.LayerNorm) and norm.weight is not None and norm.bias is not None and len(norm.normalized_shape) == 1


@lru_cache(maxsize=None)
def _triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


@lru_cache(maxsize=None)
def _kernel():
    """The Triton kernel, built once; program (i, part) handles PAIRS (token, head) rows of q, k or v."""
    import triton
    import triton.language as tl

    @triton.jit
    def normed_rotated_qkv_kernel(
        qkv_ptr, out_ptr, rows, q_weight_ptr, q_bias_ptr, k_weight_ptr, k_bias_ptr, q_eps, k_eps, cos_ptr, sin_ptr, period,
        HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, PAIRS: tl.constexpr, NORM: tl.constexpr, ROPE: tl.constexpr,
    ):  # unused arguments (NORM or ROPE off) may be any tensor
        part = tl.program_id(1).to(tl.int64)  # 0: q, 1: k, 2: v
        pair = tl.program_id(0).to(tl.int64) * PAIRS + tl.arange(0, PAIRS)
        valid = (pair < rows * HEADS)[:, None]
        token, head = pair // HEADS, pair % HEADS
        channel = tl.arange(0, HEAD_DIM)
        source = qkv_ptr + token[:, None] * (3 * HEADS * HEAD_DIM) + part * (HEADS * HEAD_DIM) + head[:, None] * HEAD_DIM
        target = out_ptr + part * rows * (HEADS * HEAD_DIM) + pair[:, None] * HEAD_DIM + channel[None, :]
        x = tl.load(source + channel[None, :], mask=valid, other=0.0).to(tl.float32)
        if part != 2:
            # rotate-half inside each half of the channels: channel c pairs with c ^ quarter,
            # (a, b) → (-b, a); the partner is read again (from cache) rather than shuffled
            quarter: tl.constexpr = HEAD_DIM // 4
            partner = channel ^ quarter
            x_partner = tl.load(source + partner[None, :], mask=valid, other=0.0).to(tl.float32)
            if NORM:
                is_q = part == 0
                eps = tl.where(is_q, q_eps, k_eps)
                weight = tl.where(is_q, tl.load(q_weight_ptr + channel), tl.load(k_weight_ptr + channel))
                bias = tl.where(is_q, tl.load(q_bias_ptr + channel), tl.load(k_bias_ptr + channel))
                weight_partner = tl.where(is_q, tl.load(q_weight_ptr + partner), tl.load(k_weight_ptr + partner))
                bias_partner = tl.where(is_q, tl.load(q_bias_ptr + partner), tl.load(k_bias_ptr + partner))
                mean = tl.sum(x, axis=1) / HEAD_DIM
                centred = x - mean[:, None]
                rstd = tl.rsqrt(tl.sum(centred * centred, axis=1) / HEAD_DIM + eps)
                x = centred * rstd[:, None] * weight[None, :] + bias[None, :]
                x_partner = (x_partner - mean[:, None]) * rstd[:, None] * weight_partner[None, :] + bias_partner[None, :]
            if ROPE:
                angle = (token % period)[:, None] * HEAD_DIM + channel[None, :]
                rotated = tl.where((channel % (2 * quarter) < quarter)[None, :], -x_partner, x_partner)
                x = x * tl.load(cos_ptr + angle, mask=valid, other=0.0) + rotated * tl.load(sin_ptr + angle, mask=valid, other=0.0)
        tl.store(target, x.to(out_ptr.dtype.element_ty), mask=valid)

    return normed_rotated_qkv_kernel
