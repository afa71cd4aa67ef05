"""What each global attention layer attends to, read from the q and k a plan receives.

For query patches sampled where the ground truth has depth, a layer's attention rows
softmax(q·Kᵀ/√d) are computed a chunk of queries at a time (never the N×N matrix) and reduced at
once, per head, to:

- **correspondence**: for every other frame in which the query's ground-truth 3-D point is visible
  (projected with the true cameras, in front of the surface the true depth sees there), the share
  of the attention on that frame's patches that lands within `radius` patches (Chebyshev) of the
  true patch, and whether that frame's most attended patch does (top-1 hit). Chance, for both, is
  the share of that frame's patches within `radius` of the true patch: what uniform attention
  scores, exactly;
- **where the mass goes**: other frames' patches, the query's own frame's patches, special tokens
  (camera, registers; every frame's), and the reference frame (all its tokens, for queries outside
  it; models without one report NaN);
- **entropy** of the row as a share of its maximum, log N (uniform attention: 1).

`AttentionRecorder` is a plan: it measures each global layer on the way and then runs dense
attention, so the model code is the same as for any method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.methods.layout import Layout
from bench.methods.plan import DensePlan
from datasets_adapters import Sequence
from metrics.geometry import unproject_depth

STATISTICS = ("hit", "mass", "other", "own", "special", "reference", "entropy")  # per layer and head
DEPTH_AGREEMENT = 0.05  # a projected point is visible where the true depth there is within 5 % of its own
CHUNK_ELEMENTS = 1 << 25  # attention-row entries per chunk of queries (128 MiB in float32)


@dataclass(frozen=True)
class QueryTargets:
    """Sampled query patches and where their ground-truth points are seen in the other frames."""

    tokens: np.ndarray  # (Q,) each query's index in the S·P token sequence
    frames: np.ndarray  # (Q,) its frame
    pair_query: np.ndarray  # (M,) a query (index into the Q) ...
    pair_frame: np.ndarray  # (M,) ... an other frame in which its point is visible ...
    pair_patch: np.ndarray  # (M,) ... and the patch (row-major) it projects into there
    chance: np.ndarray  # (M,) share of that frame's patches within `radius` of the true patch

    @property
    def chance_levels(self) -> dict[str, float]:
        """What uniform attention scores on these pairs (hit and mass alike)."""
        level = float(self.chance.mean()) if len(self.chance) else math.nan
        return {"hit": level, "mass": level}


def query_targets(sequence: Sequence, layout: Layout, queries: int, radius: int, seed: int) -> QueryTargets:
    """Sample `queries` patches (seeded) among those whose centre pixel has ground-truth depth, and
    find each one's true patch in every other frame that sees its point."""
    if sequence.depth is None:
        raise ValueError(f"attention analysis needs ground-truth depth; dataset {sequence.dataset!r} gives none for scene {sequence.scene!r}")
    frames, (height, width), (rows, cols) = sequence.num_frames, sequence.image_size, layout.grid
    if frames != layout.frames or height % rows or width % cols or height // rows != width // cols:
        raise ValueError(f"attention analysis: images {height}×{width} of {frames} frames do not tile as the model's {layout.frames} frames of {rows}×{cols} patches")
    patch = height // rows
    centre_rows = np.arange(rows) * patch + patch // 2
    centre_cols = np.arange(cols) * patch + patch // 2
    centre_valid = sequence.valid[:, centre_rows][:, :, centre_cols]  # (S, rows, cols)
    candidates = np.flatnonzero(centre_valid.ravel())
    if not len(candidates):
        raise ValueError(f"attention analysis: no patch of scene {sequence.scene!r} has ground-truth depth at its centre")
    chosen = np.sort(np.random.default_rng(seed).choice(candidates, size=min(queries, len(candidates)), replace=False))
    frame, cell = np.divmod(chosen, rows * cols)
    mask = np.zeros(sequence.depth.shape, dtype=bool)
    mask[frame, centre_rows[cell // cols], centre_cols[cell % cols]] = True
    points = unproject_depth(sequence.depth, sequence.intrinsics, sequence.extrinsics, mask)  # frame-major, as `chosen`

    extrinsics, intrinsics = sequence.extrinsics.astype(np.float64), sequence.intrinsics.astype(np.float64)
    camera = np.einsum("sij,qj->sqi", extrinsics[:, :, :3], points) + extrinsics[:, None, :, 3]  # (S, Q, 3)
    z = camera[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.rint(intrinsics[:, None, 0, 0] * camera[..., 0] / z + intrinsics[:, None, 0, 2])
        v = np.rint(intrinsics[:, None, 1, 1] * camera[..., 1] / z + intrinsics[:, None, 1, 2])
    inside = (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    pixel_v, pixel_u = np.where(inside, v, 0).astype(int), np.where(inside, u, 0).astype(int)
    seen = sequence.depth[np.arange(frames)[:, None], pixel_v, pixel_u]
    visible = inside & sequence.valid[np.arange(frames)[:, None], pixel_v, pixel_u] & (np.abs(seen - z) <= DEPTH_AGREEMENT * z)
    visible[frame, np.arange(len(chosen))] = False  # its own frame is not a correspondence
    pair_frame, pair_query = np.nonzero(visible)
    order = np.lexsort((pair_frame, pair_query))  # query-major: a chunk of queries takes a run of pairs
    pair_frame, pair_query = pair_frame[order], pair_query[order]
    true_row, true_col = pixel_v[pair_frame, pair_query] // patch, pixel_u[pair_frame, pair_query] // patch
    window_rows = np.minimum(true_row + radius, rows - 1) - np.maximum(true_row - radius, 0) + 1
    window_cols = np.minimum(true_col + radius, cols - 1) - np.maximum(true_col - radius, 0) + 1
    return QueryTargets(
        tokens=frame * layout.tokens_per_frame + layout.special_tokens + cell,
        frames=frame,
        pair_query=pair_query,
        pair_frame=pair_frame,
        pair_patch=true_row * cols + true_col,
        chance=window_rows * window_cols / (rows * cols),
    )


def layer_statistics(q: torch.Tensor, k: torch.Tensor, layout: Layout, targets: QueryTargets, radius: int, chunk_elements: int = CHUNK_ELEMENTS) -> dict[str, np.ndarray]:
    """Each of `STATISTICS` per head (heads,) for one layer's q, k (1, heads, S·P, head_dim).

    Scores are float32 (autocast off: a model's bf16 region would round them); sums accumulate in
    float64 on the device, and the host reads them once, at the end.
    """
    with torch.autocast(q.device.type, enabled=False):
        return _layer_statistics(q, k, layout, targets, radius, chunk_elements)


def _layer_statistics(q: torch.Tensor, k: torch.Tensor, layout: Layout, targets: QueryTargets, radius: int, chunk_elements: int) -> dict[str, np.ndarray]:
    if q.shape[0] != 1:
        raise ValueError(f"attention analysis reads one sequence at a time, got a batch of {q.shape[0]}")
    heads, tokens, head_dim = q.shape[1], q.shape[2], q.shape[3]
    frames, per_frame, special = layout.frames, layout.tokens_per_frame, layout.special_tokens
    rows, cols = layout.grid
    device = q.device
    keys = k[0].float()
    query_tokens = torch.as_tensor(targets.tokens, device=device)
    query_frames = torch.as_tensor(targets.frames, device=device)
    pair_query = torch.as_tensor(targets.pair_query, device=device)
    pair_frame = torch.as_tensor(targets.pair_frame, device=device)
    pair_patch = torch.as_tensor(targets.pair_patch, device=device)
    patch_row = torch.arange(rows * cols, device=device) // cols
    patch_col = torch.arange(rows * cols, device=device) % cols
    reference = layout.reference_frame

    sums = {name: torch.zeros(heads, dtype=torch.float64, device=device) for name in STATISTICS}
    reference_queries = 0
    step = max(1, chunk_elements // (heads * tokens))
    scale = head_dim**-0.5
    for first in range(0, len(targets.tokens), step):
        chunk = slice(first, first + step)
        local_frames = query_frames[chunk]
        count = len(local_frames)
        probs = torch.softmax(q[0, :, query_tokens[chunk]].float() @ keys.transpose(1, 2) * scale, dim=-1)  # (heads, c, N)
        sums["entropy"] += torch.special.entr(probs).sum(-1).sum(-1, dtype=torch.float64) / math.log(tokens)
        per_frame_probs = probs.view(heads, count, frames, per_frame)
        del probs
        sums["special"] += per_frame_probs[..., :special].sum((-1, -2)).sum(-1, dtype=torch.float64)
        patch_mass = per_frame_probs[..., special:].sum(-1)  # (heads, c, S)
        own = patch_mass.gather(2, local_frames.view(1, count, 1).expand(heads, count, 1)).squeeze(2)
        sums["own"] += own.sum(-1, dtype=torch.float64)
        sums["other"] += (patch_mass.sum(-1) - own).sum(-1, dtype=torch.float64)
        if reference is not None:
            outside = local_frames != reference
            reference_queries += int(outside.sum())
            sums["reference"] += per_frame_probs[:, outside, reference].sum(-1).sum(-1, dtype=torch.float64)

        in_chunk = (pair_query >= first) & (pair_query < first + count)
        local_query, target_frame, true_patch = pair_query[in_chunk] - first, pair_frame[in_chunk], pair_patch[in_chunk]
        target = per_frame_probs[:, local_query, target_frame, special:]  # (heads, m, rows·cols)
        near = ((patch_row - (true_patch // cols)[:, None]).abs() <= radius) & ((patch_col - (true_patch % cols)[:, None]).abs() <= radius)  # (m, rows·cols)
        frame_total = target.sum(-1)  # a frame that gets no attention at all (underflow) scores 0
        share = torch.where(frame_total > 0, torch.where(near, target, 0.0).sum(-1) / frame_total, 0.0)
        sums["mass"] += share.sum(-1, dtype=torch.float64)
        sums["hit"] += near.gather(1, target.argmax(-1).T).T.sum(-1, dtype=torch.float64)

    queries, pairs = len(targets.tokens), len(targets.pair_query)
    counts = {"hit": pairs, "mass": pairs, "reference": reference_queries if reference is not None else 0}
    return {name: (total / counts.get(name, queries)).cpu().numpy() if counts.get(name, queries) else np.full(heads, np.nan) for name, total in sums.items()}


def uniform_levels(layout: Layout) -> dict[str, float]:
    """Where uniform attention puts its mass in `layout`: the closed-form reference for the mass statistics."""
    frames, per_frame, special = layout.frames, layout.tokens_per_frame, layout.special_tokens
    patches = per_frame - special
    return {
        "other": (frames - 1) * patches / (frames * per_frame),
        "own": patches / (frames * per_frame),
        "special": special / per_frame,
        "reference": 1.0 / frames if layout.reference_frame is not None else math.nan,
        "entropy": 1.0,
    }


class AttentionRecorder:
    """A plan that measures every global layer's attention (`layer_statistics`) and then attends
    densely. `prepare` gives it the sequence of the next forward."""

    is_dense = False  # dense attention, but its time includes the statistics: never a speedup's baseline
    capturable = False  # it reads every layer's attention on the host

    def __init__(self, queries: int, radius: int, seed: int, kernel: str = "auto", chunk_elements: int = CHUNK_ELEMENTS) -> None:
        self.queries, self.radius, self.seed, self.chunk_elements = queries, radius, seed, chunk_elements
        self.plan = DensePlan(kernel)
        self.sequence: Sequence | None = None
        self.targets: QueryTargets | None = None
        self.layout: Layout | None = None
        self.layers: dict[int, dict[str, np.ndarray]] = {}

    def prepare(self, sequence: Sequence) -> None:
        self.sequence, self.targets, self.layout, self.layers = sequence, None, None, {}

    def describe(self, frames: int | None = None) -> dict:
        return {**self.plan.describe(frames), "records": "attention statistics", "queries": self.queries, "radius": self.radius, "seed": self.seed}

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout) -> torch.Tensor:
        if self.sequence is None:
            raise ValueError("AttentionRecorder: call prepare(sequence) before the forward")
        if layout != self.layout:
            self.targets, self.layout = query_targets(self.sequence, layout, self.queries, self.radius, self.seed), layout
        self.layers[layer] = layer_statistics(q, k, layout, self.targets, self.radius, self.chunk_elements)
        return self.plan.attend(layer, q, k, v, layout)

    def reset_observations(self) -> None:
        self.plan.reset_observations()

    def result(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(row fields, raw arrays) of the last forward: per-layer head means and chance levels in
        the row, (layers, heads) arrays per statistic beside it."""
        if self.targets is None or not self.layers:
            raise ValueError("AttentionRecorder: no global layer was measured (a model without global attention?)")
        layers = sorted(self.layers)
        arrays = {f"attention.{name}": np.stack([self.layers[i][name] for i in layers]) for name in STATISTICS}
        layout = self.layout
        row: dict[str, Any] = {
            "analysis": "attention",
            "attention.layers": layers,
            **{f"attention.{name}": [float(np.mean(self.layers[i][name])) for i in layers] for name in STATISTICS},
            **{f"attention.chance_{name}": value for name, value in self.targets.chance_levels.items()},
            **{f"attention.uniform_{name}": value for name, value in uniform_levels(layout).items()},
            "attention.queries": len(self.targets.tokens),
            "attention.pairs": len(self.targets.pair_query),
            "attention.heads": int(arrays["attention.hit"].shape[1]),
            "attention.layout": {"frames": layout.frames, "tokens_per_frame": layout.tokens_per_frame, "special_tokens": layout.special_tokens, "grid": list(layout.grid), "reference_frame": layout.reference_frame},
        }
        return row, arrays
