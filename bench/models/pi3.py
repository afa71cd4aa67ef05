"""pi3 (Wang et al., 2025), checkpoint-compatible with the released yyfz233/Pi3.

Frames are embedded by DINOv2 (normalised with the checkpoint's own `image_mean`/`image_std`),
given the same five register tokens each (no camera token, no reference frame: the model is
equivariant to the order of its frames), and passed through 36 decoder blocks alternating frame
attention (even blocks) and global attention (odd blocks; their attention is the plan's). The
last two blocks' outputs, concatenated, feed three per-frame heads: local points (camera frame,
z = exp), a confidence logit per pixel, and a camera-to-world pose per frame. World points are
the local points moved by their frame's pose.

Memory: only the last two blocks' outputs are kept, per-token work runs in chunks of frames,
and the heads run in chunks of frames into preallocated outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.methods.layout import AttentionPlan, Layout
from bench.methods.plan import DensePlan
from bench.models.base import MODELS, BenchModel, Prediction
from bench.models.heads.pi3_camera_head import Pi3CameraHead, nearest_rotation
from bench.models.heads.pi3_decoder import FrameDecoder, PixelShuffleHead
from bench.models.intrinsics import intrinsics_from_local_points
from bench.models.layers import Block, DinoVisionTransformer, RopeTable, grid_positions, rope_table
from bench.models.runtime import IMAGENET_MEAN, IMAGENET_STD, HeadsDtype, alternate_attention, check_images, chunk_rows, cuda_autocast_dtype, heads_autocast, model_factory
from bench.stages import stages_compiled_within


@dataclass(frozen=True)
class Pi3Config:
    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024  # encoder and decoder width (the encoder's tokens enter the decoder as they are)
    encoder_depth: int = 24
    encoder_heads: int = 16
    encoder_registers: int = 4
    depth: int = 36  # decoder blocks: even ones frame attention, odd ones global attention
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 5
    rope_frequency: float = 100.0
    init_values: float = 0.01
    head_width: int = 1024  # the per-frame head decoders
    head_depth: int = 5
    head_heads: int = 16
    point_features: int = 1024  # point and confidence decoders' output width
    camera_features: int = 512  # camera decoder's output width

    @property
    def num_global_layers(self) -> int:
        return self.depth // 2


PI3 = Pi3Config()
PI3_TINY = Pi3Config(
    embed_dim=64,
    encoder_depth=2,
    encoder_heads=4,
    depth=8,
    num_heads=4,
    head_width=32,
    head_depth=1,
    head_heads=2,
    point_features=32,
    camera_features=16,
)


class Pi3(BenchModel):
    """pi3: local points, confidence and camera-to-world poses; no reference frame."""

    family = "pi3"
    num_global_layers = 18
    reference_frame = None
    early_global_layers = 10
    published_global_layers = 18
    preprocess_mode = "pi3"
    default_weights = "yyfz233/Pi3"

    def __init__(self, cfg: Pi3Config = PI3, head_frames_per_chunk: int | None = 8, token_chunk_frames: int | None = 128, compile: bool = False, heads_dtype: HeadsDtype = "float32", cuda_graph_frames: int = 0) -> None:
        super().__init__(cuda_graph_frames)
        if cfg.depth < 2 or cfg.depth % 2:
            raise ValueError(f"pi3 alternates frame and global blocks: decoder depth must be even and at least 2, got {cfg.depth}")
        self.cfg = cfg
        self.num_global_layers = cfg.num_global_layers
        self.heads_dtype = heads_dtype
        self.head_frames_per_chunk = head_frames_per_chunk
        self.token_chunk_frames = token_chunk_frames
        dim = cfg.embed_dim
        # Registration order is the checkpoint's state_dict order.
        self.register_token = nn.Parameter(torch.zeros(1, 1, cfg.num_register_tokens, dim))
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.encoder = DinoVisionTransformer(
            cfg.img_size, cfg.patch_size, dim, cfg.encoder_depth, cfg.encoder_heads, cfg.mlp_ratio, cfg.encoder_registers, mask_token=False
        )
        self.decoder = nn.ModuleList(
            Block(dim, cfg.num_heads, cfg.mlp_ratio, init_values=cfg.init_values, norm_eps=1e-6, qk_norm=True) for _ in range(cfg.depth)
        )
        head = dict(in_dim=2 * dim, dim=cfg.head_width, depth=cfg.head_depth, num_heads=cfg.head_heads, mlp_ratio=cfg.mlp_ratio)
        self.point_decoder = FrameDecoder(out_dim=cfg.point_features, **head)
        self.point_head = PixelShuffleHead(cfg.point_features, 3, cfg.patch_size)
        self.conf_decoder = FrameDecoder(out_dim=cfg.point_features, **head)
        self.conf_head = PixelShuffleHead(cfg.point_features, 1, cfg.patch_size)
        self.camera_decoder = FrameDecoder(out_dim=cfg.camera_features, **head)
        self.camera_head = Pi3CameraHead(cfg.camera_features)
        nn.init.normal_(self.register_token, std=1e-6)
        if compile:
            self.compile_stages()

    @property
    def special_tokens(self) -> int:
        return self.cfg.num_register_tokens

    def queue(self, images: torch.Tensor, plan: AttentionPlan | None = None) -> dict[str, torch.Tensor]:
        """The forward up to the heads' raw outputs (B, S, ...): rotation (3×3, not yet a
        rotation), translation, local_points, conf; nothing in it waits on the host."""
        images = check_images(images, self.cfg.patch_size, "pi3", self.preprocess_mode)
        batch, frames, _, height, width = images.shape
        grid = (height // self.cfg.patch_size, width // self.cfg.patch_size)
        autocast_dtype = cuda_autocast_dtype(images.device)
        with torch.autocast("cuda", dtype=autocast_dtype, enabled=images.is_cuda), stages_compiled_within(self.compiled):
            hidden = self._decode(images, grid, plan or DensePlan())
        outputs = self._heads(hidden, grid, autocast_dtype)
        return {name: t.unflatten(0, (batch, frames)) for name, t in outputs.items()}

    def forward(self, images: torch.Tensor, plan: AttentionPlan | None = None) -> dict[str, torch.Tensor]:
        """Images (S, 3, H, W) or (B, S, 3, H, W) in [0, 1], H and W multiples of the patch size.

        Returns camera_poses (B, S, 4, 4) camera-to-world, local_points (B, S, H, W, 3) in each
        camera's frame, points (B, S, H, W, 3) in the world frame, conf (B, S, H, W, 1) logits.
        """
        return self.finish(self.queue(images, plan))

    def finish(self, queued: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The cameras and world points from `queue`'s head outputs: the rotation fit (an SVD,
        which checks its result on the host on CUDA) runs once, after all the GPU work is queued."""
        batch, frames = queued["rotation"].shape[:2]
        rotation, translation, local_points = (queued[name].flatten(0, 1) for name in ("rotation", "translation", "local_points"))
        with torch.autocast(rotation.device.type, enabled=False):
            poses = rotation.new_zeros(rotation.shape[0], 4, 4)
            poses[:, :3, :3] = nearest_rotation(rotation)
            poses[:, :3, 3] = translation
            poses[:, 3, 3] = 1.0
            points = torch.einsum("nij,nhwj->nhwi", poses[:, :3, :3], local_points) + poses[:, None, None, :3, 3]
        outputs = {"camera_poses": poses, "local_points": local_points, "points": points}
        return {name: t.unflatten(0, (batch, frames)) for name, t in outputs.items()} | {"conf": queued["conf"]}

    def _decode(self, images: torch.Tensor, grid: tuple[int, int], plan: AttentionPlan) -> torch.Tensor:
        """Images (B, S, 3, H, W) → concat(block depth−2, block depth−1) outputs (B·S, P, 2·dim).

        The residual stream stays float32 under autocast (as released); only the two kept outputs
        are stored at the autocast width.
        """
        batch, frames = images.shape[:2]
        cfg, dim = self.cfg, self.cfg.embed_dim
        normalized = (images.flatten(0, 1) - self.image_mean) / self.image_std
        encoder_tokens = grid[0] * grid[1] + 1 + cfg.encoder_registers
        patches = self.encoder(normalized, chunk_rows=chunk_rows(self.token_chunk_frames, encoder_tokens))
        registers = self.register_token[0].expand(batch * frames, -1, -1)  # the same for every frame
        tokens = torch.cat([registers, patches], dim=1)  # (B·S, P, dim)
        per_frame = tokens.shape[1]
        del normalized, patches  # else full-size copies stay alive for the whole pass

        rope = self._rope(grid, dim // cfg.num_heads, images.device)
        layout = Layout(frames=frames, tokens_per_frame=per_frame, special_tokens=self.special_tokens, grid=grid, reference_frame=self.reference_frame)
        rows = chunk_rows(self.token_chunk_frames, per_frame)
        # The heads' first layer casts its input to the autocast dtype anyway: keep it at that width.
        device_type = images.device.type
        kept_dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else tokens.dtype
        last_pair = cfg.depth // 2 - 1  # decoder blocks 2i (frame) and 2i + 1 (global) are pair i
        handed_over = [tokens]
        del tokens
        kept = alternate_attention(self.decoder[0::2], self.decoder[1::2], handed_over, batch, rope, plan, layout, rows, (last_pair,), kept_dtype)
        return kept[last_pair].flatten(0, 1)

    def _rope(self, grid: tuple[int, int], head_dim: int, device: torch.device) -> RopeTable:
        return rope_table(grid_positions(*grid, self.special_tokens, device=device), head_dim, self.cfg.rope_frequency)

    def _heads(self, hidden: torch.Tensor, grid: tuple[int, int], autocast_dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Decoder output (N frames, P, 2·dim) → per-frame outputs, in chunks of frames.

        The head decoders run under the backbone's autocast (as released); the linear heads and
        the exp of depth in float32 (as released) or under bf16 autocast (`heads_dtype`), into
        float32 outputs; `finish` makes the poses and world points from them, in float32.
        """
        count, device = hidden.shape[0], hidden.device
        height, width = grid[0] * self.cfg.patch_size, grid[1] * self.cfg.patch_size
        rope = self._rope(grid, self.point_decoder.head_dim, device)
        dtype = self.point_head.proj.weight.dtype
        local_points = hidden.new_empty(count, height, width, 3, dtype=dtype)
        conf = hidden.new_empty(count, height, width, 1, dtype=dtype)
        translation = hidden.new_empty(count, 3, dtype=dtype)
        rotation = hidden.new_empty(count, 3, 3, dtype=dtype)
        step = self.head_frames_per_chunk or count
        patches = slice(self.special_tokens, None)
        for span in (slice(start, start + step) for start in range(0, count, step)):
            with torch.autocast("cuda", dtype=autocast_dtype, enabled=device.type == "cuda"):
                point_tokens = self.point_decoder(hidden[span], rope)
                conf_tokens = self.conf_decoder(hidden[span], rope)
                camera_tokens = self.camera_decoder(hidden[span], rope)
            with heads_autocast(device, self.heads_dtype):
                xy, log_z = self.point_head(point_tokens[:, patches].to(dtype), grid).split([2, 1], dim=-1)
                z = log_z.exp()
                local_points[span] = torch.cat([xy * z, z], dim=-1)
                conf[span] = self.conf_head(conf_tokens[:, patches].to(dtype), grid)
                translation[span], rotation[span] = self.camera_head(camera_tokens[:, patches].to(dtype))
        return {"rotation": rotation, "translation": translation, "local_points": local_points, "conf": conf}

    def to_prediction(self, raw: dict[str, torch.Tensor]) -> Prediction:
        """Batch entry 0 of `forward`'s outputs in the harness conventions.

        extrinsics = inverse(camera_poses) (world-to-camera), depth = z of the local points,
        confidence = sigmoid(conf) for both depth and points, intrinsics recovered from the
        local points (`bench.models.intrinsics`, weighted by that confidence). The raw outputs
        stay in `raw`: camera_poses, local_points, conf (logits).
        """
        if raw["camera_poses"].shape[0] != 1:
            raise ValueError(f"to_prediction converts one sequence, got a batch of {raw['camera_poses'].shape[0]}")
        poses = raw["camera_poses"][0].double()
        local_points = raw["local_points"][0].float()
        confidence = torch.sigmoid(raw["conf"][0, ..., 0].float())
        intrinsics = intrinsics_from_local_points(local_points, confidence)

        def numpy(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy()

        return Prediction(
            extrinsics=numpy(torch.linalg.inv(poses)[:, :3]),
            intrinsics=numpy(intrinsics),
            depth=numpy(local_points[..., 2]),
            depth_conf=numpy(confidence),
            world_points=numpy(raw["points"][0].float()),
            world_points_conf=numpy(confidence),
            raw={
                "camera_poses": numpy(raw["camera_poses"][0].float()),
                "local_points": numpy(local_points),
                "conf": numpy(raw["conf"][0].float()),
            },
        )


MODELS.register("pi3", model_factory(Pi3, PI3), help="pi3 as released (yyfz233/Pi3): local points, confidence, camera-to-world poses")
MODELS.register("pi3-tiny", model_factory(Pi3, PI3_TINY), help="pi3 architecture at toy size (dim 64, 8 decoder blocks) for CPU tests")
