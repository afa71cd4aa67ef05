"""Attention operators against float64 references built by hand from their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.methods.block_sparse import K_BLOCK, Q_BLOCK, block_mask, block_sparse, masked_block_sparse, select_blocks
from bench.methods.dense import dense
from bench.methods.frame import frame
from bench.methods.kernels import AttentionKernel
from bench.methods.merge import merge_attention, token_roles
from bench.methods.layout import Layout
from bench.methods.subsample import subsample

# (frames, special tokens, grid, reference frame): S = 1 and S > 1, odd grids, with and without a reference
LAYOUTS = [
    (1, 5, (3, 5), 0),
    (3, 2, (5, 7), 0),
    (4, 5, (9, 11), None),
    (2, 1, (4, 6), 1),
]


def make_layout(frames: int, special: int, grid: tuple[int, int], reference: int | None) -> Layout:
    return Layout(frames, special + grid[0] * grid[1], special, grid, reference)


def random_qkv(layout: Layout, batch: int = 2, heads: int = 3, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, heads, layout.num_tokens, dim, generator=gen, dtype=torch.float64) for _ in range(3))


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Textbook attention in float64; `mask` (L, M) True = attend."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    return torch.softmax(scores, dim=-1) @ v


@pytest.fixture
def kernel() -> AttentionKernel:
    return AttentionKernel("auto")


# ---------------------------------------------------------------- dense and frame


@pytest.mark.parametrize("shape", LAYOUTS)
def test_dense_is_softmax_attention(shape, kernel):
    layout = make_layout(*shape)
    q, k, v = random_qkv(layout)
    torch.testing.assert_close(dense(q, k, v, layout, kernel=kernel), softmax_attention(q, k, v), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", LAYOUTS)
def test_frame_is_attention_masked_to_the_own_frame(shape, kernel):
    layout = make_layout(*shape)
    q, k, v = random_qkv(layout)
    frame_of = torch.arange(layout.num_tokens) // layout.tokens_per_frame
    expected = softmax_attention(q, k, v, frame_of[:, None] == frame_of[None, :])
    torch.testing.assert_close(frame(q, k, v, layout, kernel=kernel), expected, rtol=0, atol=1e-12)


def test_frame_accepts_token_major_strides(kernel):
    """Models slice q, k, v out of one (B, N, 3, heads, d) projection: non-contiguous inputs."""
    layout = make_layout(3, 2, (5, 7), 0)
    qkv = torch.randn(2, layout.num_tokens, 3, 4, 8, dtype=torch.float64).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    expected = frame(q.contiguous(), k.contiguous(), v.contiguous(), layout, kernel=kernel)
    torch.testing.assert_close(frame(q, k, v, layout, kernel=kernel), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- subsample


def kept_by_hand(layout: Layout, window: tuple[int, int], keep_reference: bool) -> list[int]:
    """Token indices of the kept key set, straight from the definition."""
    h, w = layout.grid
    kept = []
    for f in range(layout.frames):
        for t in range(layout.tokens_per_frame):
            if t < layout.special_tokens or (keep_reference and f == layout.reference_frame):
                kept.append(f * layout.tokens_per_frame + t)
                continue
            row, col = divmod(t - layout.special_tokens, w)
            if row % window[0] == 0 and col % window[1] == 0:
                kept.append(f * layout.tokens_per_frame + t)
    return kept


def subsample_by_hand(q, k, v, layout, window, keep_reference, diagonal, mean, log_count) -> torch.Tensor:
    """Concatenate [kept keys | own key (if dropped) | mean key] per query, one explicit softmax."""
    kept = kept_by_hand(layout, window, keep_reference)
    dropped = [i for i in range(layout.num_tokens) if i not in set(kept)]
    scale = 1 / math.sqrt(q.shape[-1])
    scores = [q @ k[:, :, kept].transpose(-1, -2) * scale]
    values = [v[:, :, kept]]  # (B, H, M, d) shared by all queries
    extra_scores, extra_values = [], []
    if diagonal:
        own = (q * k).sum(-1) * scale
        own[:, :, kept] = -math.inf  # a kept own key is already in the set
        extra_scores.append(own[..., None])
        extra_values.append(v[:, :, :, None, :])  # per query
    if mean and dropped:
        k_mean, v_mean = k[:, :, dropped].mean(2), v[:, :, dropped].mean(2)
        extra_scores.append((q @ k_mean[..., None]) * scale + (math.log(len(dropped)) if log_count else 0.0))
        extra_values.append(v_mean[:, :, None, None, :].expand(-1, -1, layout.num_tokens, -1, -1))
    weights = torch.softmax(torch.cat(scores + extra_scores, dim=-1), dim=-1)
    out = weights[..., : len(kept)] @ values[0]
    for i, value in enumerate(extra_values):
        out = out + weights[..., len(kept) + i, None] * value[:, :, :, 0, :]
    return out


def run_subsample(q, k, v, layout, kernel, **overrides):
    params = dict(sigma=1, grid=None, sigma_thresholds=(30, 150), keep_reference=False, diagonal=False, mean=False, mean_log_count=False)
    params.update(overrides)
    return subsample(q, k, v, layout, kernel=kernel, **params)


@pytest.mark.parametrize("shape", LAYOUTS)
def test_subsample_sigma_1_without_extra_terms_is_dense(shape, kernel):
    layout = make_layout(*shape)
    q, k, v = random_qkv(layout)
    torch.testing.assert_close(run_subsample(q, k, v, layout, kernel), softmax_attention(q, k, v), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", LAYOUTS)
@pytest.mark.parametrize("window", [(1, 2), (2, 2), (2, 3), (3, 3)])
@pytest.mark.parametrize("diagonal,mean,log_count", [(True, True, False), (True, True, True), (True, False, False), (False, True, False), (False, True, True), (False, False, False)])
def test_subsample_matches_explicit_softmax_over_the_concatenated_key_set(shape, window, diagonal, mean, log_count, kernel):
    layout = make_layout(*shape)
    q, k, v = random_qkv(layout, seed=sum(window))
    keep_reference = layout.reference_frame is not None
    got = run_subsample(q, k, v, layout, kernel, grid=window, keep_reference=keep_reference, diagonal=diagonal, mean=mean, mean_log_count=log_count)
    expected = subsample_by_hand(q, k, v, layout, window, keep_reference, diagonal, mean, log_count)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_subsample_sigma_names_the_window(kernel):
    layout = make_layout(2, 5, (6, 6), 0)
    q, k, v = random_qkv(layout)
    for sigma, window in [(2, (1, 2)), (4, (2, 2)), (6, (2, 3)), (9, (3, 3))]:
        expected = subsample_by_hand(q, k, v, layout, window, True, True, True, False)
        got = run_subsample(q, k, v, layout, kernel, sigma=sigma, keep_reference=True, diagonal=True, mean=True)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_subsample_auto_sigma_follows_the_frame_count(kernel):
    layout = make_layout(3, 2, (4, 6), 0)
    q, k, v = random_qkv(layout)
    # 3 frames: below 30 → σ 2; below a threshold of 2 and 3 → σ 4; at or above both → σ 9
    for thresholds, window in [((30, 150), (1, 2)), ((2, 5), (2, 2)), ((2, 3), (3, 3))]:
        expected = subsample_by_hand(q, k, v, layout, window, True, False, False, False)
        got = run_subsample(q, k, v, layout, kernel, sigma="auto", sigma_thresholds=thresholds, keep_reference=True)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_subsample_in_bfloat16_stays_close_to_float64(kernel):
    layout = make_layout(3, 5, (7, 9), 0)
    q, k, v = random_qkv(layout)
    params = dict(grid=(2, 2), keep_reference=True, diagonal=True, mean=True, mean_log_count=True)
    expected = run_subsample(q, k, v, layout, kernel, **params)
    got = run_subsample(q.bfloat16(), k.bfloat16(), v.bfloat16(), layout, kernel, **params)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=3e-2)


def test_subsample_keep_reference_needs_a_reference_frame(kernel):
    layout = make_layout(2, 5, (3, 3), None)
    q, k, v = random_qkv(layout)
    with pytest.raises(ValueError, match="keep_reference"):
        run_subsample(q, k, v, layout, kernel, sigma=4, keep_reference=True)


# ---------------------------------------------------------------- block_sparse


def pooled_by_hand(x: np.ndarray, block: int) -> np.ndarray:
    return np.stack([x[..., i : i + block, :].mean(-2) for i in range(0, x.shape[-2], block)], axis=-2)


def selection_by_hand(qp: np.ndarray, kp: np.ndarray, ratio: float, cdf: float) -> np.ndarray:
    """Per (batch, head, query block): the highest pooled probabilities, as many as the larger rule asks."""
    scores = qp @ np.swapaxes(kp, -1, -2) / math.sqrt(qp.shape[-1])
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    keep = np.zeros(probs.shape, dtype=bool)
    blocks = probs.shape[-1]
    for index in np.ndindex(probs.shape[:-1]):
        order = np.argsort(-probs[index], kind="stable")
        reached, total = 0, 0.0
        while total < cdf and reached < blocks:
            total += probs[index][order[reached]]
            reached += 1
        keep[index][order[: max(reached, math.ceil((1 - ratio) * blocks))]] = True
    return keep


def block_sparse_by_hand(q, k, v, layout, ratio, cdf) -> torch.Tensor:
    """Special queries dense; patch queries see every special key and the patch keys of their chosen
    blocks, where the patch keys sharing a 64-key block with the first special keys are always seen."""
    P, n_special = layout.tokens_per_frame, layout.special_tokens
    special = [i for i in range(layout.num_tokens) if i % P < n_special]
    patches = [i for i in range(layout.num_tokens) if i % P >= n_special]
    qp = pooled_by_hand(q[:, :, patches].numpy(), Q_BLOCK)
    kp = pooled_by_hand(k[:, :, patches].numpy(), K_BLOCK)
    keep = selection_by_hand(qp, kp, ratio, cdf)
    mask = torch.zeros(q.shape[0], q.shape[1], layout.num_tokens, layout.num_tokens, dtype=torch.bool)
    mask[:, :, special, :] = True
    mask[:, :, :, special] = True
    shared_block = len(patches) // K_BLOCK * K_BLOCK
    for row, query in enumerate(patches):
        for col, key in enumerate(patches):
            mask[:, :, query, key] = True if col >= shared_block else torch.from_numpy(keep[:, :, row // Q_BLOCK, col // K_BLOCK])
    return softmax_attention(q, k, v, mask)


BLOCK_LAYOUTS = [(4, 5, (9, 11), 0), (3, 5, (13, 7), None), (1, 2, (15, 17), 0)]  # ragged block tails throughout


@pytest.mark.parametrize("shape", BLOCK_LAYOUTS)
def test_block_sparse_keeping_every_block_is_dense(shape, kernel):
    layout = make_layout(*shape)
    q, k, v = random_qkv(layout)
    got = block_sparse(q, k, v, layout, kernel=kernel, sparse_ratio=0.0, cdf_threshold=0.5)
    torch.testing.assert_close(got, softmax_attention(q, k, v), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", BLOCK_LAYOUTS)
@pytest.mark.parametrize("ratio,cdf", [(0.5, 0.7), (0.75, 0.7), (0.9, 0.3), (0.3, 0.99)])
def test_block_sparse_matches_masked_attention_built_by_hand(shape, ratio, cdf, kernel):
    layout = make_layout(*shape)
    q, k, v = random_qkv(layout, seed=3)
    q = q * 3  # sharper pooled scores, so the two selection rules disagree somewhere
    got = block_sparse(q, k, v, layout, kernel=kernel, sparse_ratio=ratio, cdf_threshold=cdf)
    torch.testing.assert_close(got, block_sparse_by_hand(q, k, v, layout, ratio, cdf), rtol=0, atol=1e-12)


def test_block_sparse_observes_the_share_of_key_blocks_it_keeps(kernel):
    """The recorded share is the mean of the block mask that ran: the patch blocks the rules chose
    plus the blocks that hold special keys, over batch, heads and query blocks; a reset clears it."""
    layout = make_layout(4, 5, (9, 11), 0)
    q, k, v = random_qkv(layout, seed=3)
    q = q * 3
    patches = [i for i in range(layout.num_tokens) if i % layout.tokens_per_frame >= layout.special_tokens]
    chosen = selection_by_hand(pooled_by_hand(q[:, :, patches].numpy(), Q_BLOCK), pooled_by_hand(k[:, :, patches].numpy(), K_BLOCK), 0.75, 0.3)
    full = np.ones(chosen.shape[:3] + (-(-layout.num_tokens // K_BLOCK),), dtype=bool)
    full[..., : len(patches) // K_BLOCK] = chosen[..., : len(patches) // K_BLOCK]
    for _ in range(2):
        block_sparse(q, k, v, layout, kernel=kernel, sparse_ratio=0.75, cdf_threshold=0.3)
    observed = kernel.observations()
    assert set(observed) == {"key_blocks_kept"} and observed["key_blocks_kept"] == pytest.approx(full.mean(), rel=1e-6)
    assert 0.25 < observed["key_blocks_kept"] < 1.0
    kernel.reset_observations()
    assert kernel.observations() == {}


def test_select_blocks_takes_the_larger_of_the_two_counts():
    # one query block, four key blocks with probabilities 0.6, 0.25, 0.1, 0.05 (by construction of the logits)
    probs = torch.tensor([0.6, 0.25, 0.1, 0.05], dtype=torch.float64)
    k_pooled = torch.eye(4, dtype=torch.float64)[None, None]
    q_pooled = torch.log(probs)[None, None, None] * 2.0  # scale 1/sqrt(4) undone
    for ratio, cdf, count in [(0.75, 0.5, 1), (0.75, 0.8, 2), (0.75, 0.9, 3), (0.5, 0.5, 2), (0.0, 0.1, 4), (0.9, 1.0, 4)]:
        keep = select_blocks(q_pooled, k_pooled, ratio, cdf)[0, 0, 0]
        assert keep.tolist() == [i < count for i in range(4)], (ratio, cdf)


def test_select_blocks_ratio_count_is_not_fooled_by_rounding():
    k_pooled = torch.eye(10, dtype=torch.float64)[None, None]
    q_pooled = -torch.arange(10, dtype=torch.float64)[None, None, None]  # decreasing probabilities
    assert select_blocks(q_pooled, k_pooled, sparse_ratio=0.7, cdf_threshold=0.0)[0, 0, 0].sum() == 3


def test_block_mask_holds_exactly_the_selected_blocks():
    gen = torch.Generator().manual_seed(0)
    keep = torch.rand(2, 3, 4, 9, generator=gen) < 0.4
    keep[..., -1] = True
    for with_mask_mod in (True, False):
        mask = block_mask(keep, q_len=4 * Q_BLOCK - 30, kv_len=9 * K_BLOCK - 10, with_mask_mod=with_mask_mod)
        assert torch.equal(mask.to_dense().bool(), keep)
        assert mask.kv_num_blocks.sum() == 0  # every kept block is a full block: no mask function on the GPU


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_flex_path_agrees_with_the_masked_reference(kernel):
    layout = make_layout(3, 5, (13, 7), 0)
    q, k, v = random_qkv(layout, seed=5)
    flex = block_sparse(q * 3, k, v, layout, kernel=kernel, sparse_ratio=0.6, cdf_threshold=0.5, implementation="flex")
    masked = block_sparse(q * 3, k, v, layout, kernel=kernel, sparse_ratio=0.6, cdf_threshold=0.5, implementation="masked")
    torch.testing.assert_close(flex, masked, rtol=0, atol=1e-12)
    assert "flex" in kernel.used


def test_masked_reference_chunks_give_the_same_result(monkeypatch):
    import bench.methods.block_sparse as module

    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 700, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    keep = torch.rand(1, 2, 6, 11, generator=gen) < 0.5
    keep[..., 0] = True
    whole = masked_block_sparse(q, k, v, keep)
    monkeypatch.setattr(module, "_MASKED_CHUNK_ELEMENTS", 1)
    torch.testing.assert_close(masked_block_sparse(q, k, v, keep), whole, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- merge


@pytest.mark.parametrize("shape", LAYOUTS)
def test_merge_with_ratio_0_is_dense(shape, kernel):
    layout = make_layout(*shape)
    q, k, v = random_qkv(layout)
    got = merge_attention(q, k, v, layout, kernel=kernel, ratio=0.0, protected=0.1, seed=0)
    torch.testing.assert_close(got, softmax_attention(q, k, v), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", LAYOUTS)
def test_merge_roles_follow_the_definition(shape):
    layout = make_layout(*shape)
    target, guarded = token_roles(layout, protected=0.1, seed=7)
    P, h, w = layout.tokens_per_frame, *layout.grid
    for f in range(layout.frames):
        block = target[f * P : (f + 1) * P]
        assert block[: layout.special_tokens].all()
        patches = block[layout.special_tokens :].view(h, w)
        if f == layout.reference_frame:
            assert patches.all()
            continue
        for r in range(0, h, 2):
            for c in range(0, w, 2):
                assert patches[r : r + 2, c : c + 2].sum() == 1, (f, r, c)
    count = int(layout.num_tokens * 0.1)
    assert guarded.sum() == count
    if count:
        step = max(1, layout.num_tokens // count)
        assert guarded.nonzero().squeeze(1).tolist() == list(range(0, step * count, step))


def test_merge_roles_depend_on_the_seed_only():
    layout = make_layout(5, 5, (8, 8), 0)
    assert torch.equal(token_roles(layout, 0.1, 3)[0], token_roles(layout, 0.1, 3)[0])
    assert not torch.equal(token_roles(layout, 0.1, 3)[0], token_roles(layout, 0.1, 4)[0])


def merge_by_hand(q, k, v, layout, ratio, protected, seed) -> torch.Tensor:
    """Match, merge, attend and unmerge one batch element at a time with explicit loops."""
    target, guarded = token_roles(layout, protected, seed)
    targets = target.nonzero().squeeze(1).tolist()
    sources = (~target & ~guarded).nonzero().squeeze(1).tolist()
    merges = min(int(ratio * layout.num_tokens), len(sources))
    out = torch.empty_like(q)
    for b in range(q.shape[0]):
        metric = k[b].transpose(0, 1).reshape(layout.num_tokens, -1)
        metric = metric / metric.norm(dim=-1, keepdim=True)
        best = {s: max(targets, key=lambda t: float(metric[s] @ metric[t])) for s in sources}
        score = {s: float(metric[s] @ metric[best[s]]) for s in sources}
        merged = sorted(sources, key=lambda s: -score[s])[:merges]
        groups = {i: [i] for i in range(layout.num_tokens) if i not in merged}
        for s in merged:
            groups[best[s]].append(s)
        heads = list(groups)
        mq, mk, mv = (torch.stack([x[b][:, groups[g]].mean(1) for g in heads], dim=1) for x in (q, k, v))
        attended = softmax_attention(mq, mk, mv)
        for slot, g in enumerate(heads):
            for member in groups[g]:
                out[b, :, member] = attended[:, slot]
    return out


@pytest.mark.parametrize("shape", [(3, 2, (5, 7), 0), (2, 5, (4, 6), None)])
@pytest.mark.parametrize("ratio", [0.2, 0.9])
def test_merge_matches_explicit_merging(shape, ratio, kernel):
    layout = make_layout(*shape)
    q, k, v = random_qkv(layout, seed=11)
    got = merge_attention(q, k, v, layout, kernel=kernel, ratio=ratio, protected=0.1, seed=5)
    torch.testing.assert_close(got, merge_by_hand(q, k, v, layout, ratio, 0.1, 5), rtol=0, atol=1e-12)


def test_merge_matching_chunks_give_the_same_result(monkeypatch, kernel):
    import bench.methods.merge as module

    layout = make_layout(3, 2, (5, 7), 0)
    q, k, v = random_qkv(layout, seed=2)
    whole = merge_attention(q, k, v, layout, kernel=kernel, ratio=0.9, protected=0.1, seed=0)
    monkeypatch.setattr(module, "_MATCH_CHUNK_ELEMENTS", 1)
    torch.testing.assert_close(merge_attention(q, k, v, layout, kernel=kernel, ratio=0.9, protected=0.1, seed=0), whole, rtol=0, atol=0)
