"""The Triton kernel of `bench.models.layers.fused_qkv` (imported only where Triton is installed).

Program i takes HEAD_ROWS consecutive rows of head_dim channels of the projection, in its
memory order (token, q/k/v, head): one contiguous read. What made the compiled stage slow is the
rotation: reading each channel's rotate-half partner back from memory (as the compiled code and a
first version of this kernel did) and reading one RoPE table row per head row cost an H200 1.5 ms
of a 1.9 ms kernel at 100 frames of VGGT-1B (`results/profile-h200/qkv-kernel-probe-f7bacbe.json`);
here the partner comes from a reshuffle in registers and each tile reads the table rows of its (at
most two) tokens once: 0.70 ms, against 0.30 ms for a plain copy (`qkv-kernel-probe-ab7ac4a.json`).
"""

import triton
import triton.language as tl


@triton.jit
def normed_rotated_qkv_kernel(
    qkv_ptr, out_ptr, rows, q_weight_ptr, q_bias_ptr, k_weight_ptr, k_bias_ptr, q_eps, k_eps, cos_ptr, sin_ptr, period,
    HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HEAD_ROWS: tl.constexpr, NORM: tl.constexpr, ROPE: tl.constexpr,
):  # unused arguments (NORM or ROPE off) may be any tensor; HEAD_ROWS <= 3 * HEADS
    head_row = tl.program_id(0).to(tl.int64) * HEAD_ROWS + tl.arange(0, HEAD_ROWS)
    valid = (head_row < rows * 3 * HEADS)[:, None]
    token, part, head = head_row // (3 * HEADS), head_row // HEADS % 3, head_row % HEADS  # part 0: q, 1: k, 2: v
    channel = tl.arange(0, HEAD_DIM)
    x = tl.load(qkv_ptr + head_row[:, None] * HEAD_DIM + channel[None, :], mask=valid, other=0.0).to(tl.float32)
    out = x
    if NORM:  # v rows are normalised too (with k's weights) and then dropped: cheaper than a branch
        is_q = (part == 0)[:, None]
        eps = tl.where(part == 0, q_eps, k_eps)[:, None]
        weight = tl.where(is_q, tl.load(q_weight_ptr + channel)[None, :], tl.load(k_weight_ptr + channel)[None, :])
        bias = tl.where(is_q, tl.load(q_bias_ptr + channel)[None, :], tl.load(k_bias_ptr + channel)[None, :])
        centred = x - (tl.sum(x, axis=1) / HEAD_DIM)[:, None]
        out = centred * tl.rsqrt(tl.sum(centred * centred, axis=1)[:, None] / HEAD_DIM + eps) * weight + bias
    if ROPE:
        # rotate-half inside each half of the channels, (a, b) → (-b, a), as a reshuffle in
        # registers: channels viewed as (half, a/b, quarter), a/b moved last and split
        quarter: tl.constexpr = HEAD_DIM // 4
        a, b = tl.split(tl.permute(tl.reshape(out, (HEAD_ROWS, 2, 2, quarter)), (0, 1, 3, 2)))
        rotated = tl.reshape(tl.permute(tl.join(-b, a), (0, 1, 3, 2)), (HEAD_ROWS, HEAD_DIM))
        # a tile spans at most two tokens: their two table rows, each read once
        first = tl.min(token, axis=0)
        position = first % period
        second = (position + 1) % period
        is_first = (token == first)[:, None]
        cos = tl.where(is_first, tl.load(cos_ptr + position * HEAD_DIM + channel)[None, :], tl.load(cos_ptr + second * HEAD_DIM + channel)[None, :])
        sin = tl.where(is_first, tl.load(sin_ptr + position * HEAD_DIM + channel)[None, :], tl.load(sin_ptr + second * HEAD_DIM + channel)[None, :])
        out = out * cos + rotated * sin
    out = tl.where((part == 2)[:, None], x, out)
    target = out_ptr + (part * rows + token)[:, None] * (HEADS * HEAD_DIM) + head[:, None] * HEAD_DIM + channel[None, :]
    tl.store(target, out.to(out_ptr.dtype.element_ty), mask=valid)
