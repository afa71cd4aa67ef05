"""VGGT's camera head: iterative refinement of a 9-d pose encoding from each frame's camera token.

Each of the iterations embeds the current encoding (a learned empty one first), turns it into
adaLN shift/scale/gate for the normed camera tokens, runs a small transformer across the frames,
and adds a predicted delta to the encoding. Translation and quaternion stay linear; the two
fields of view go through ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.layers import Block, Mlp

POSE_ENCODING_DIM = 9  # absT_quaR_FoV: t (3), quaternion xyzw (4), fov_h, fov_w


class CameraHead(nn.Module):
    def __init__(self, dim_in: int = 2048, trunk_depth: int = 4, num_heads: int = 16, mlp_ratio: float = 4.0, init_values: float = 0.01) -> None:
        super().__init__()
        # Registration order is the checkpoint's state_dict order.
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_ENCODING_DIM))
        self.trunk = nn.ModuleList(Block(dim_in, num_heads, mlp_ratio, init_values=init_values) for _ in range(trunk_depth))
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.embed_pose = nn.Linear(POSE_ENCODING_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, POSE_ENCODING_DIM)

    def forward(self, camera_tokens: torch.Tensor, num_iterations: int = 4) -> torch.Tensor:
        """Camera tokens of the last aggregator layer (B, S, dim_in) → pose encoding (B, S, 9)."""
        tokens = self.token_norm(camera_tokens)
        batch, frames, _ = tokens.shape
        encoding = None
        for _ in range(num_iterations):
            previous = self.empty_pose_tokens.expand(batch, frames, -1) if encoding is None else encoding
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(previous)).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            for block in self.trunk:
                x = block(x)
            delta = self.pose_branch(self.trunk_norm(x))
            encoding = delta if encoding is None else encoding + delta
        return activate_pose(encoding)


def activate_pose(encoding: torch.Tensor) -> torch.Tensor:
    """Linear translation and quaternion, ReLU on the fields of view (they must be positive)."""
    return torch.cat([encoding[..., :7], F.relu(encoding[..., 7:])], dim=-1)
