"""The Triton kernel of `bench.models.layers.fused_qkv` (imported only where Triton is installed).

Program i takes HEAD_ROWS consecutive rows of head_dim channels of the projection, in its
memory order (token, q/k/v, head), so every program reads one contiguous span and the reads of
all programs sweep the projection once. Tiles of q, k or v alone would read a third of every
token's row: a strided sweep that an H200 served at a third of its bandwidth (the compiled
stage's kernels did that, `results/profile-h200/`).
"""

import triton
import triton.language as tl


@triton.jit
def normed_rotated_qkv_kernel(
    qkv_ptr, out_ptr, rows, q_weight_ptr, q_bias_ptr, k_weight_ptr, k_bias_ptr, q_eps, k_eps, cos_ptr, sin_ptr, period,
    HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HEAD_ROWS: tl.constexpr, NORM: tl.constexpr, ROPE: tl.constexpr,
):  # unused arguments (NORM or ROPE off) may be any tensor
    head_row = tl.program_id(0).to(tl.int64) * HEAD_ROWS + tl.arange(0, HEAD_ROWS)
    valid = (head_row < rows * 3 * HEADS)[:, None]
    token, part, head = head_row // (3 * HEADS), head_row // HEADS % 3, head_row % HEADS  # part 0: q, 1: k, 2: v
    channel = tl.arange(0, HEAD_DIM)
    source = qkv_ptr + head_row[:, None] * HEAD_DIM
    x = tl.load(source + channel[None, :], mask=valid, other=0.0).to(tl.float32)
    out = x
    # rotate-half inside each half of the channels: channel c pairs with c ^ quarter,
    # (a, b) → (-b, a); the partner is read again (from cache) rather than shuffled
    quarter: tl.constexpr = HEAD_DIM // 4
    partner = channel ^ quarter
    x_partner = tl.load(source + partner[None, :], mask=valid, other=0.0).to(tl.float32)
    if NORM:  # v rows are normalised too (with k's weights) and then dropped: cheaper than a branch
        is_q = (part == 0)[:, None]
        eps = tl.where(part == 0, q_eps, k_eps)[:, None]
        weight = tl.where(is_q, tl.load(q_weight_ptr + channel)[None, :], tl.load(k_weight_ptr + channel)[None, :])
        bias = tl.where(is_q, tl.load(q_bias_ptr + channel)[None, :], tl.load(k_bias_ptr + channel)[None, :])
        weight_partner = tl.where(is_q, tl.load(q_weight_ptr + partner)[None, :], tl.load(k_weight_ptr + partner)[None, :])
        bias_partner = tl.where(is_q, tl.load(q_bias_ptr + partner)[None, :], tl.load(k_bias_ptr + partner)[None, :])
        mean = (tl.sum(x, axis=1) / HEAD_DIM)[:, None]
        centred = x - mean
        rstd = tl.rsqrt(tl.sum(centred * centred, axis=1)[:, None] / HEAD_DIM + eps)
        out = centred * rstd * weight + bias
        x_partner = (x_partner - mean) * rstd * weight_partner + bias_partner
    if ROPE:
        angle = (token % period)[:, None] * HEAD_DIM + channel[None, :]
        rotated = tl.where((channel % (2 * quarter) < quarter)[None, :], -x_partner, x_partner)
        out = out * tl.load(cos_ptr + angle, mask=valid, other=0.0) + rotated * tl.load(sin_ptr + angle, mask=valid, other=0.0)
    out = tl.where((part == 2)[:, None], x, out)
    target = out_ptr + (part * rows + token)[:, None] * (HEADS * HEAD_DIM) + head[:, None] * HEAD_DIM + channel[None, :]
    tl.store(target, out.to(out_ptr.dtype.element_ty), mask=valid)
