"""VGGT (Wang et al., CVPR 2025), checkpoint-compatible with the released VGGT-1B.

Frames are embedded by DINOv2, given a camera token and register tokens (one set for the
reference frame 0, another for all others), and passed through pairs of frame attention
(within each frame) and global attention (across all frames). The global layers' attention
is delegated to an attention plan, which is how every method in this harness changes the
model. Heads read four layers' outputs: a camera head for the 9-d pose encoding and two DPT
heads for depth and world points (in the frame of camera 0).

Memory: only the layers the heads read are kept (the released code keeps all 24), per-token
work runs in chunks of frames, and the DPT heads run in chunks of frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.methods.layout import AttentionPlan, Layout
from bench.methods.plan import DensePlan
from bench.models.base import MODELS, BenchModel, Prediction
from bench.models.heads import CameraHead, DPTHead
from bench.models.layers import Block, DinoVisionTransformer, grid_positions, rope_table
from bench.models.pose_encoding import pose_encoding_to_extri_intri
from bench.models.runtime import IMAGENET_MEAN, IMAGENET_STD, HeadsDtype, alternate_attention, check_images, chunk_rows, cuda_autocast_dtype, heads_autocast, model_factory
from bench.models.weights import drop_prefixes
from bench.stages import stages_compiled_within


REFERENCE_FRAME = 0  # the frame whose camera is the world frame (its own camera and register tokens)

@dataclass(frozen=True)
class VGGTConfig:
    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24  # frame/global block pairs
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    rope_frequency: float = 100.0
    init_values: float = 0.01
    patch_embed_depth: int = 24
    patch_embed_heads: int = 16
    head_layers: tuple[int, int, int, int] = (4, 11, 17, 23)  # what the DPT heads read
    camera_trunk_depth: int = 4
    camera_heads: int = 16
    camera_iterations: int = 4
    dpt_features: int = 256
    dpt_out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    dpt_last_features: int = 32

    @property
    def kept_layers(self) -> tuple[int, ...]:
        """Aggregator layers any head reads: the DPT layers and the last (camera head)."""
        return tuple(sorted({*self.head_layers, self.depth - 1}))


VGGT_1B = VGGTConfig()
VGGT_TINY = VGGTConfig(
    embed_dim=64,
    depth=4,
    num_heads=4,
    patch_embed_depth=2,
    patch_embed_heads=4,
    head_layers=(0, 1, 2, 3),
    camera_trunk_depth=1,
    camera_heads=4,
    dpt_features=16,
    dpt_out_channels=(8, 16, 32, 32),
    dpt_last_features=8,
)


class Aggregator(nn.Module):
    def __init__(self, cfg: VGGTConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.cfg = cfg
        # Parameters first, then modules in this order: the checkpoint's state_dict order.
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, cfg.num_register_tokens, dim))
        self.patch_embed = DinoVisionTransformer(
            cfg.img_size, cfg.patch_size, dim, cfg.patch_embed_depth, cfg.patch_embed_heads, cfg.mlp_ratio, cfg.num_register_tokens
        )
        self.frame_blocks = nn.ModuleList(self._block() for _ in range(cfg.depth))
        self.global_blocks = nn.ModuleList(self._block() for _ in range(cfg.depth))
        nn.init.normal_(self.camera_token, std=1e-6)
        nn.init.normal_(self.register_token, std=1e-6)

    def _block(self) -> Block:
        cfg = self.cfg
        return Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, init_values=cfg.init_values, norm_eps=1e-5, qk_norm=True)

    @property
    def special_tokens(self) -> int:
        return 1 + self.cfg.num_register_tokens

    def forward(self, images: torch.Tensor, plan: AttentionPlan, keep: tuple[int, ...], chunk_frames: int | None) -> dict[int, torch.Tensor]:
        """Images (B, S, 3, H, W) in [0, 1] → {layer: concat(frame out, global out) (B, S, P, 2·dim)} for `keep`."""
        batch, frames, _, height, width = images.shape
        dim, patch = self.cfg.embed_dim, self.cfg.patch_size
        grid = (height // patch, width // patch)

        patches = self.patch_embed(_normalize(images).flatten(0, 1), chunk_rows=chunk_rows(chunk_frames, grid[0] * grid[1] + 1 + self.cfg.num_register_tokens))
        special = torch.cat([_per_frame(self.camera_token, batch, frames), _per_frame(self.register_token, batch, frames)], dim=1)
        tokens = torch.cat([special, patches], dim=1)  # (B·S, P, dim)
        per_frame = tokens.shape[1]
        del patches  # else a full-size copy of the patch tokens stays alive for the whole pass

        rope = rope_table(grid_positions(*grid, self.special_tokens, device=images.device), dim // self.cfg.num_heads, self.cfg.rope_frequency)
        layout = Layout(frames=frames, tokens_per_frame=per_frame, special_tokens=self.special_tokens, grid=grid, reference_frame=REFERENCE_FRAME)
        handed_over = [tokens]
        del tokens
        return alternate_attention(self.frame_blocks, self.global_blocks, handed_over, batch, rope, plan, layout, chunk_rows(chunk_frames, per_frame), keep)


def _normalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of (..., 3, H, W), with per-channel Python constants (no buffers, no host copies)."""
    channels = [(images[..., c, :, :] - m) / s for c, (m, s) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD))]
    return torch.stack(channels, dim=-3)


def _per_frame(token: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """(1, 2, n, dim) → (B·S, n, dim): slot 0 for frame 0, slot 1 for every other frame."""
    first = token[:, :1].expand(batch, 1, *token.shape[2:])
    others = token[:, 1:].expand(batch, frames - 1, *token.shape[2:])
    return torch.cat([first, others], dim=1).flatten(0, 1)


class VGGT(BenchModel):
    """VGGT with pose, depth and point heads (no track head)."""

    family = "vggt"
    num_global_layers = 24
    reference_frame = REFERENCE_FRAME
    early_global_layers = 9
    published_global_layers = 24
    preprocess_mode = "crop"
    default_weights = "facebook/VGGT-1B"

    @classmethod
    def checkpoint_filter(cls, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """The released checkpoint without the track head, which this harness does not evaluate."""
        return drop_prefixes(state, ("track_head.",), source)

    def __init__(self, cfg: VGGTConfig = VGGT_1B, head_frames_per_chunk: int | None = 8, token_chunk_frames: int | None = 128, compile: bool = False, heads_dtype: HeadsDtype = "float32", cuda_graph_frames: int = 0) -> None:
        super().__init__(cuda_graph_frames)
        self.cfg = cfg
        self.num_global_layers = cfg.depth
        self.heads_dtype = heads_dtype
        self.head_frames_per_chunk = head_frames_per_chunk
        self.token_chunk_frames = token_chunk_frames
        dim_in = 2 * cfg.embed_dim
        dpt = dict(dim_in=dim_in, patch_size=cfg.patch_size, features=cfg.dpt_features, out_channels=cfg.dpt_out_channels, last_features=cfg.dpt_last_features, layers=cfg.head_layers)
        self.aggregator = Aggregator(cfg)
        self.camera_head = CameraHead(dim_in, cfg.camera_trunk_depth, cfg.camera_heads, cfg.mlp_ratio, cfg.init_values)
        self.point_head = DPTHead(output_dim=4, activation="inv_log", **dpt)
        self.depth_head = DPTHead(output_dim=2, activation="exp", **dpt)
        if compile:
            self.compile_stages()

    def forward(self, images: torch.Tensor, plan: AttentionPlan | None = None) -> dict[str, torch.Tensor]:
        """Images (S, 3, H, W) or (B, S, 3, H, W) in [0, 1], H and W multiples of the patch size.

        Returns pose_enc (B, S, 9), depth (B, S, H, W, 1), depth_conf (B, S, H, W),
        world_points (B, S, H, W, 3), world_points_conf (B, S, H, W), in float32 (in bf16 with
        `heads_dtype="bfloat16"`).
        """
        images = check_images(images, self.cfg.patch_size, "VGGT", self.preprocess_mode)
        height, width = images.shape[-2:]
        with torch.autocast("cuda", dtype=cuda_autocast_dtype(images.device), enabled=images.is_cuda), stages_compiled_within(self.compiled):
            layers = self.aggregator(images, plan or DensePlan(), self.cfg.kept_layers, self.token_chunk_frames)
        with heads_autocast(images.device, self.heads_dtype):
            pose_enc = self.camera_head(layers[self.cfg.depth - 1][:, :, 0], self.cfg.camera_iterations)
            special = self.aggregator.special_tokens
            depth, depth_conf = self.depth_head(layers, height, width, special, self.head_frames_per_chunk)
            points, points_conf = self.point_head(layers, height, width, special, self.head_frames_per_chunk)
        return {"pose_enc": pose_enc, "depth": depth, "depth_conf": depth_conf, "world_points": points, "world_points_conf": points_conf}

    def to_prediction(self, raw: dict[str, torch.Tensor]) -> Prediction:
        """Batch entry 0 of `forward`'s outputs as numpy, with cameras decoded from the pose encoding."""
        if raw["pose_enc"].shape[0] != 1:
            raise ValueError(f"to_prediction converts one sequence, got a batch of {raw['pose_enc'].shape[0]}")
        height, width = raw["depth"].shape[2:4]
        pose_enc = raw["pose_enc"][0].float()
        extrinsics, intrinsics = pose_encoding_to_extri_intri(pose_enc, (height, width))

        def numpy(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy()

        return Prediction(
            extrinsics=numpy(extrinsics).astype(np.float64),
            intrinsics=numpy(intrinsics).astype(np.float64),
            depth=numpy(raw["depth"][0, ..., 0]),
            depth_conf=numpy(raw["depth_conf"][0]),
            world_points=numpy(raw["world_points"][0]),
            world_points_conf=numpy(raw["world_points_conf"][0]),
            raw={"pose_enc": numpy(pose_enc)},
        )


MODELS.register("vggt-1b", model_factory(VGGT, VGGT_1B), help="VGGT-1B as released (facebook/VGGT-1B), without the track head")
MODELS.register("vggt-tiny", model_factory(VGGT, VGGT_TINY), help="VGGT architecture at toy size (dim 64, 4 layer pairs) for CPU tests")
