"""A model that answers with the ground truth, plus seeded noise of a chosen size.

It proves the path from data through runner to metrics: with no noise every metric must report a
perfect score, and with noise the scores must degrade as the noise grows. It has no weights and
no attention, so no method changes it; its timings measure only the harness's own overhead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from bench.models.base import MODELS, BenchModel, Prediction, WeightsInfo
from datasets_adapters.sequence import Sequence
from metrics.geometry import camera_centres, unproject_depth


class OracleModel(BenchModel):
    """Ground truth with seeded noise on rotation, camera position and depth (timing is meaningless)."""

    family = "oracle"
    num_global_layers = 0
    preprocess_mode = None

    def __init__(
        self,
        weights: str = "none",
        *,
        rotation_noise_deg: float = 0.0,
        translation_noise: float = 0.0,
        depth_noise: float = 0.0,
        seed: int = 0,
    ) -> None:
        """Noise: each rotation-vector component ~ N(0, rotation_noise_deg); each camera-centre
        coordinate ~ N(0, translation_noise) in scene units; depth × exp(N(0, depth_noise))."""
        if weights not in ("none", "random"):
            raise ValueError(f"the oracle has no weights, got weights {weights!r}; use weights: none")
        for name, value in (("rotation_noise_deg", rotation_noise_deg), ("translation_noise", translation_noise), ("depth_noise", depth_noise)):
            if not value >= 0:
                raise ValueError(f"oracle: {name} must be >= 0, got {value!r}")
        super().__init__()
        self.weights_info = WeightsInfo(id="none", sha256=None, random=False)
        self.rotation_noise_deg = float(rotation_noise_deg)
        self.translation_noise = float(translation_noise)
        self.depth_noise = float(depth_noise)
        self.seed = seed

    def run(self, images: torch.Tensor, plan: Any = None, sequence: Sequence | None = None) -> dict[str, torch.Tensor]:
        """The ground truth of `sequence` with this model's noise; the same every call (seeded)."""
        if sequence is None:
            raise ValueError("the oracle answers from the ground truth: pass the sequence to run()")
        if tuple(images.shape) != sequence.images.shape:
            raise ValueError(f"oracle: images {tuple(images.shape)} do not match the sequence's {sequence.images.shape}")
        rng = np.random.default_rng(self.seed)
        extrinsics = sequence.extrinsics  # exact when there is no pose noise
        if self.rotation_noise_deg or self.translation_noise:
            s = sequence.num_frames
            rot = Rotation.from_rotvec(rng.normal(0.0, np.deg2rad(self.rotation_noise_deg), (s, 3))).as_matrix() @ extrinsics[:, :, :3]
            centres = camera_centres(extrinsics) + rng.normal(0.0, self.translation_noise, (s, 3))
            extrinsics = np.concatenate([rot, -np.einsum("sij,sj->si", rot, centres)[:, :, None]], axis=2)
        out = {"extrinsics": extrinsics, "intrinsics": sequence.intrinsics}
        if sequence.depth is not None:
            depth = sequence.depth * np.exp(rng.normal(0.0, self.depth_noise, sequence.depth.shape))
            out["depth"] = depth
            out["depth_conf"] = sequence.valid.astype(np.float64)
            out["world_points"] = unproject_depth(depth, sequence.intrinsics, extrinsics)
            out["world_points_conf"] = out["depth_conf"]
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(images.device) for k, v in out.items()}

    def to_prediction(self, raw: dict[str, torch.Tensor]) -> Prediction:
        arrays = {k: v.cpu().numpy() for k, v in raw.items()}
        return Prediction(
            extrinsics=arrays["extrinsics"],
            intrinsics=arrays["intrinsics"],
            depth=arrays.get("depth"),
            depth_conf=arrays.get("depth_conf"),
            world_points=arrays.get("world_points"),
            world_points_conf=arrays.get("world_points_conf"),
        )


MODELS.register("oracle", OracleModel, help="ground truth plus seeded noise: proves the metric path (no weights)")
