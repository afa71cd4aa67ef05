"""DINOv2 vision transformer with register tokens, as both VGGT and pi3 embed their frames.

Token order: [cls, registers, patches]; the learned position embedding covers cls and a square
patch grid and is resized (bicubic, antialiased) to the input's grid. Only the normed patch
tokens leave the module: that is all either model reads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.layers.block import Block
from bench.models.layers.patch_embed import PatchEmbed


def interpolate_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """(1, 1 + M², dim) embedding → (1, 1 + grid_h·grid_w, dim); unchanged for an M×M grid."""
    num_patches = pos_embed.shape[1] - 1
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"position embedding covers {num_patches} patches, not a square grid")
    if (grid_h, grid_w) == (side, side):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:].float()
    grid = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", antialias=True)
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=1)


class DinoVisionTransformer(nn.Module):
    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
        init_values: float = 1.0,
        norm_eps: float = 1e-6,
        mask_token: bool = True,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        # Parameters first, in this order: it is the checkpoints' state_dict order.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (img_size // patch_size) ** 2, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        # Unused at inference (masked pretraining); kept so the released checkpoints load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim)) if mask_token else None
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, norm_eps=norm_eps) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)

    @property
    def num_register_tokens(self) -> int:
        return self.register_tokens.shape[1]

    def forward(self, images: torch.Tensor, chunk_rows: int | None = None) -> torch.Tensor:
        """Normalised images (N, 3, H, W) → normed patch tokens (N, H/p · W/p, dim)."""
        n, _, height, width = images.shape
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(n, -1, -1), x], dim=1)
        x = x + interpolate_pos_embed(self.pos_embed, height // self.patch_size, width // self.patch_size)
        x = torch.cat([x[:, :1], self.register_tokens.expand(n, -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x, chunk_rows=chunk_rows)
        return self.norm(x[:, 1 + self.num_register_tokens :])
