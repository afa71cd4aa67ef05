"""A block's q/k LayerNorm, 2D RoPE and q/k/v layout as one Triton kernel.

After the qkv projection, the rest of a block's pre-attention work is memory-bound: each q and k
head is normalised over its channels, rotated by its token's RoPE angles, and q, k and v are laid
out for the attention kernel. Compiled from the model's PyTorch code this took 1.88 ms of kernels
a block at 100 frames of VGGT-1B on an H200, six times a plain copy of the same bytes; the kernel
takes 0.70 ms (`results/profile-h200/`). Each program reads a tile of head rows once and writes it
once, in float32 arithmetic as the eager model computes (LayerNorm and RoPE in float32 under
autocast, rounded to the attention dtype).

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

HEAD_ROWS_PER_PROGRAM = 32  # rows of head_dim channels per program (fewer for few heads): 32 × 64 channels, four warps


def fusable(attention: Attention, device: torch.device) -> bool:
    """Whether `normed_rotated_qkv` stands in for this attention's `project` on `device`: CUDA,
    inference (the kernel has no backward), Triton installed, and a layout it handles."""
    return device.type == "cuda" and not torch.is_grad_enabled() and _triton_available() and kernel_fits(attention)


def kernel_fits(attention: Attention) -> bool:
    """q and k norms both affine LayerNorms or both none, and a power-of-two head size (the kernel's
    tiles are powers of two, and rotate-half works on quarters of the channels)."""
    head_dim = attention.head_dim
    norms = (attention.q_norm, attention.k_norm)
    norms_fit = all(map(_is_affine_layer_norm, norms)) or all(isinstance(norm, nn.Identity) for norm in norms)
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
    head_rows = min(HEAD_ROWS_PER_PROGRAM, 1 << (3 * heads).bit_length() - 1)  # a tile spans at most two tokens
    _kernel()[(-(-rows * 3 * heads // head_rows),)](
        qkv, out, rows, *norm_arguments, *rope_arguments,
        HEADS=heads, HEAD_DIM=head_dim, HEAD_ROWS=head_rows, NORM=norm, ROPE=rope is not None, num_warps=4,
    )
    return out


def _is_affine_layer_norm(norm: nn.Module) -> bool:
    return isinstance(norm, nn.LayerNorm) and norm.weight is not None and norm.bias is not None and len(norm.normalized_shape) == 1


@lru_cache(maxsize=None)
def _triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


@lru_cache(maxsize=None)
def _kernel():
    """The Triton kernel, imported on first use (Triton decides at import whether to compile it or
    to interpret it on the CPU, `TRITON_INTERPRET`)."""
    from bench.models.layers.fused_qkv_triton import normed_rotated_qkv_kernel

    return normed_rotated_qkv_kernel
