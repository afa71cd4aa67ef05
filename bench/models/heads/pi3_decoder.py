"""pi3's dense heads: a small per-frame transformer, then a linear map from each token to its patch's pixels.

`FrameDecoder` projects the decoder output (two layers concatenated) to its width, runs a few
RoPE blocks within each frame (no LayerScale, no qk-norm) and maps every token to `out_dim`.
`PixelShuffleHead` turns each patch token into the `channels` values of its p×p pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.layers import Block, RopeTable


class FrameDecoder(nn.Module):
    def __init__(self, in_dim: int, dim: int, out_dim: int, depth: int = 5, num_heads: int = 16, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.projects = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, norm_eps=1e-6) for _ in range(depth))
        self.linear_out = nn.Linear(dim, out_dim)

    @property
    def head_dim(self) -> int:
        return self.blocks[0].attn.head_dim

    def forward(self, tokens: torch.Tensor, rope: RopeTable) -> torch.Tensor:
        """(N frames, P, in_dim) → (N, P, out_dim); attention within each frame."""
        x = self.projects(tokens)
        for block in self.blocks:
            x = block(x, rope)
        return self.linear_out(x)


class PixelShuffleHead(nn.Module):
    def __init__(self, dim: int, channels: int, patch_size: int = 14) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(dim, channels * patch_size**2)

    def forward(self, patch_tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(N, h·w, dim) patch tokens → (N, h·p, w·p, channels)."""
        frames = patch_tokens.shape[0]
        x = self.proj(patch_tokens).transpose(1, 2).reshape(frames, -1, *grid)
        return F.pixel_shuffle(x, self.patch_size).permute(0, 2, 3, 1)
