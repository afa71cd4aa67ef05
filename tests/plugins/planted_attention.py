"""A plugin for the analysis tests: model `planted`, whose global attention is planted from the
ground truth, so the analysis has a known answer.

It has four global layers and no weights. Layer 0 attends uniformly (q = 0: every statistic has a
closed form); layer 1 attends within each query's own frame; layer 2 attends to the ground-truth
3-D point of the query in the other frames (scores −B·(|X_q − X_k|² + γ·[same frame]), through q
and k built from the depth and cameras), so its correspondence hit rate must be near 1; layer 3
has small random scores (near uniform, argmax at random: hit rate near chance). The prediction is
the ground truth with a rotation error that grows as layer 2's output loses the other frames, so
turning layer 2 into frame attention costs accuracy and turning layers 0, 1 or 3 costs none.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from bench.methods.layout import Layout
from bench.models import MODELS
from bench.models.base import BenchModel, Prediction, WeightsInfo
from metrics.geometry import camera_centres, unproject_depth

PATCH = 14
HEADS = 2
HEAD_DIM = 16  # 3-D point (3), its square norm (1), one-hot frame (up to 12 frames)
MAX_FRAMES = HEAD_DIM - 4
UNIFORM, WITHIN_FRAME, CORRESPONDING, NEAR_UNIFORM = 0, 1, 2, 3
SHARPNESS = 20.0  # B, per square metre
SAME_FRAME = 3.0  # γ, square metres: the own frame's keys are out of reach
MAX_ERROR_DEG = 30.0  # rotation error when layer 2 sees no other frame


class PlantedAttention(BenchModel):
    """Ground truth through planted global attention (see the module docstring)."""

    family = "planted"
    num_global_layers = 4
    reference_frame = 0
    preprocess_mode = None

    def __init__(self, weights: str = "none", *, seed: int = 0) -> None:
        if weights not in ("none", "random"):
            raise ValueError(f"planted: no weights to load, got {weights!r}")
        super().__init__()
        self.weights_info = WeightsInfo(id="none", sha256=None, random=False)
        self.seed = seed

    def run(self, images, plan=None, sequence=None):
        frames, _, height, width = images.shape
        if sequence is None or frames > MAX_FRAMES:
            raise ValueError(f"planted: needs the sequence and at most {MAX_FRAMES} frames")
        grid = (height // PATCH, width // PATCH)
        layout = Layout(frames=frames, tokens_per_frame=1 + grid[0] * grid[1], special_tokens=1, grid=grid, reference_frame=0)
        points, frame = self._token_points(sequence, grid)
        generator = torch.Generator().manual_seed(self.seed)
        one_hot = torch.nn.functional.one_hot(frame, MAX_FRAMES).double()
        cross = None
        for layer in range(self.num_global_layers):
            q, k, v = self._qkv(layer, points, frame, one_hot, generator)
            out = plan.attend(layer, *(t.to(images.device) for t in (q, k, v)), layout)
            if layer == CORRESPONDING:  # v is the key's frame, one-hot: the output is each query's mass per frame
                own = out[0, 0, :, 4:].gather(1, frame[:, None].to(images.device)).squeeze(1)
                patches = torch.arange(layout.num_tokens) % layout.tokens_per_frame >= 1
                valid = patches & (points[:, 0] < 1e3)
                cross = float((1.0 - own.cpu())[valid].mean())
        return self._prediction(sequence, MAX_ERROR_DEG * (1.0 - cross), images.device)

    @staticmethod
    def _token_points(sequence, grid):
        """Each token's ground-truth point (patch centre; far away where there is no depth or for the
        special token) and frame."""
        world = unproject_depth(sequence.depth, sequence.intrinsics, sequence.extrinsics)
        rows, cols = np.arange(grid[0]) * PATCH + PATCH // 2, np.arange(grid[1]) * PATCH + PATCH // 2
        centre = world[:, rows][:, :, cols].reshape(sequence.num_frames, -1, 3)
        valid = sequence.valid[:, rows][:, :, cols].reshape(sequence.num_frames, -1)
        centre = np.where(valid[..., None], centre, 1e4)
        tokens = np.concatenate([np.full((sequence.num_frames, 1, 3), 1e4), centre], axis=1)
        frame = np.repeat(np.arange(sequence.num_frames), tokens.shape[1])
        return torch.from_numpy(tokens.reshape(-1, 3)), torch.from_numpy(frame)

    @staticmethod
    def _qkv(layer, points, frame, one_hot, generator):
        n = len(points)
        scale = HEAD_DIM**0.5
        v = torch.cat([torch.zeros(n, 4, dtype=torch.float64), one_hot], dim=1)
        if layer == UNIFORM:
            q, k = torch.zeros(n, HEAD_DIM, dtype=torch.float64), torch.randn(n, HEAD_DIM, generator=generator, dtype=torch.float64)
        elif layer == WITHIN_FRAME:
            q = k = torch.cat([torch.zeros(n, 4, dtype=torch.float64), one_hot * (40.0 * scale) ** 0.5], dim=1)
        elif layer == CORRESPONDING:
            near = points.clamp(max=1e3)  # no depth: far from every point, but finite
            q = SHARPNESS * scale * torch.cat([near, torch.ones(n, 1, dtype=torch.float64), one_hot], dim=1)
            k = torch.cat([2 * near, -(near**2).sum(1, keepdim=True), -SAME_FRAME * one_hot], dim=1)
        else:
            q, k = (0.05 * torch.randn(n, HEAD_DIM, generator=generator, dtype=torch.float64) for _ in range(2))
        return (t.float()[None, None].expand(1, HEADS, n, HEAD_DIM).contiguous() for t in (q, k, v))

    def _prediction(self, sequence, error_deg, device):
        rng = np.random.default_rng(self.seed)
        axes = rng.normal(size=(sequence.num_frames, 3))
        axes[0] = 0.0  # the reference camera stays exact
        turn = Rotation.from_rotvec(np.deg2rad(error_deg) * axes / np.maximum(np.linalg.norm(axes, axis=1, keepdims=True), 1e-12)).as_matrix()
        rotation = turn @ sequence.extrinsics[:, :, :3]
        extrinsics = np.concatenate([rotation, -np.einsum("sij,sj->si", rotation, camera_centres(sequence.extrinsics))[:, :, None]], axis=2)
        out = {"extrinsics": extrinsics, "intrinsics": sequence.intrinsics, "depth": sequence.depth, "depth_conf": sequence.valid.astype(np.float64)}
        return {key: torch.from_numpy(np.ascontiguousarray(value)).to(device) for key, value in out.items()}

    def to_prediction(self, raw) -> Prediction:
        arrays = {key: value.cpu().numpy() for key, value in raw.items()}
        return Prediction(extrinsics=arrays["extrinsics"], intrinsics=arrays["intrinsics"], depth=arrays["depth"], depth_conf=arrays["depth_conf"])


MODELS.register("planted", PlantedAttention, help="ground truth through planted global attention (tests of the analysis)")
