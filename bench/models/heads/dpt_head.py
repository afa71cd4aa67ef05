"""DPT dense head (Ranftl et al.) as VGGT uses it for depth and for world points.

Four aggregator layers' patch tokens are normed, projected to four widths, resized to strides
4, 8, 16 and 32 of the patch grid, fused coarse-to-fine by RefineNet blocks, upsampled to the
image size and mapped to (prediction channels + 1 confidence channel). A fixed sin/cos map of
normalised (u, v) pixel coordinates is added after each projection and before the last
convolutions. Frames go through in chunks: the head's full-resolution activations are the
largest tensors of a forward pass; compiled, a chunk's resizes, residual adds and activations
fuse around the convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.stages import compiled

_INTERPOLATE_MAX_ELEMENTS = 1_610_612_736  # F.interpolate overflows int32 indexing beyond this


class DPTHead(nn.Module):
    stages_compiled = False  # run each chunk of frames compiled (`bench.stages`)

    def __init__(
        self,
        dim_in: int = 2048,
        output_dim: int = 4,
        activation: str = "inv_log",
        patch_size: int = 14,
        features: int = 256,
        out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024),
        last_features: int = 32,
        layers: tuple[int, int, int, int] = (4, 11, 17, 23),
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown DPT activation {activation!r}; known: {', '.join(_ACTIVATIONS)}")
        self.activation = activation
        self.patch_size = patch_size
        self.layers = tuple(layers)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, oc, kernel_size=1) for oc in out_channels)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = _Scratch(out_channels, features, output_dim, last_features)

    def forward(self, layer_tokens: dict[int, torch.Tensor], height: int, width: int, patch_start: int, frames_per_chunk: int | None = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """Aggregator outputs by layer (B, S, P, dim_in) → prediction (B, S, H, W, C) and confidence (B, S, H, W)."""
        batch, frames = layer_tokens[self.layers[0]].shape[:2]
        step = frames if not frames_per_chunk else frames_per_chunk
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        like = self.norm.weight
        tables = [uv_tables(project.out_channels, grid_h, grid_w, width / height, like) for project in self.projects]
        tables.append(uv_tables(self.scratch.output_conv1.out_channels, grid_h * self.patch_size, grid_w * self.patch_size, width / height, like))
        trunk, output = (compiled(dpt_trunk), compiled(dpt_output)) if self.stages_compiled else (dpt_trunk, dpt_output)
        chunks = [
            output(self, trunk(self, [layer_tokens[layer][:, start : start + step, patch_start:].flatten(0, 1) for layer in self.layers], tables))
            for start in range(0, frames, step)
        ]
        preds, confs = ([t.unflatten(0, (batch, -1)) for t in outputs] for outputs in zip(*chunks))
        return torch.cat(preds, dim=1), torch.cat(confs, dim=1)


def dpt_trunk(head: DPTHead, patch_tokens: list[torch.Tensor], uv: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """One chunk of frames: patch tokens of each read layer (frames, h·w, dim_in) → the last
    features at full size (frames, last_features, H, W), before the output convolution.

    `uv` holds the position tables (`uv_tables`) of the four projections and of the full-size map.
    Every parameter here has the same shape in the depth and the point head, so compiled, the two
    heads share one compilation; `dpt_output` holds what differs.
    """
    grid_w, grid_h = uv[0][0].shape[1], uv[0][1].shape[1]
    features = []
    for x, project, resize, tables in zip(patch_tokens, head.projects, head.resize_layers, uv):
        x = head.norm(x).permute(0, 2, 1).unflatten(2, (grid_h, grid_w))
        features.append(resize(_add_uv_embedding(project(x), tables)))
    out = head.scratch.fuse(*features)
    out = _interpolate(out, (grid_h * head.patch_size, grid_w * head.patch_size))
    return head.scratch.output_conv2[:-1](_add_uv_embedding(out, uv[-1]))


def dpt_output(head: DPTHead, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's own output convolution and activations: (frames, H, W, C) and confidence (frames, H, W)."""
    out = head.scratch.output_conv2[-1](features)
    return _ACTIVATIONS[head.activation](out[:, :-1]).permute(0, 2, 3, 1), 1 + out[:, -1].exp()


def _inverse_log(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


_ACTIVATIONS = {"exp": torch.exp, "inv_log": _inverse_log}


class _Scratch(nn.Module):
    """The fusion stage; named as the checkpoints name it (`scratch.layerN_rn`, `scratch.refinenetN`, ...)."""

    def __init__(self, in_channels: tuple[int, ...], features: int, output_dim: int, last_features: int) -> None:
        super().__init__()
        self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn = (
            nn.Conv2d(c, features, kernel_size=3, padding=1, bias=False) for c in in_channels
        )
        self.refinenet1 = _FusionBlock(features)
        self.refinenet2 = _FusionBlock(features)
        self.refinenet3 = _FusionBlock(features)
        self.refinenet4 = _FusionBlock(features, has_residual=False)
        self.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, last_features, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(last_features, output_dim, kernel_size=1),
        )

    def fuse(self, f1: torch.Tensor, f2: torch.Tensor, f3: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        r1, r2, r3, r4 = self.layer1_rn(f1), self.layer2_rn(f2), self.layer3_rn(f3), self.layer4_rn(f4)
        out = self.refinenet4(r4, size=r3.shape[2:])
        out = self.refinenet3(out, r3, size=r2.shape[2:])
        out = self.refinenet2(out, r2, size=r1.shape[2:])
        out = self.refinenet1(out, r1, size=(2 * r1.shape[2], 2 * r1.shape[3]))
        return self.output_conv1(out)


class _ResidualConvUnit(nn.Module):
    """relu → conv → relu → conv, plus the skip.

    The released model applies its first ReLU in place, so the skip carries relu(x), not x;
    reproduced here explicitly.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class _FusionBlock(nn.Module):
    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        self.resConfUnit1 = _ResidualConvUnit(features) if has_residual else None
        self.resConfUnit2 = _ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, *, size: tuple[int, int]) -> torch.Tensor:
        if self.resConfUnit1 is not None:
            x = x + self.resConfUnit1(skip)
        x = _interpolate(self.resConfUnit2(x), size)
        return self.out_conv(x)


def _interpolate(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners) resize, split over the batch where one call would overflow."""
    pieces = size[0] * size[1] * x.shape[0] * x.shape[1] // _INTERPOLATE_MAX_ELEMENTS + 1
    return torch.cat([F.interpolate(c, size=tuple(size), mode="bilinear", align_corners=True) for c in x.chunk(pieces)])


def uv_tables(channels: int, grid_h: int, grid_w: int, aspect_ratio: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sin/cos position embedding of an h×w map with C channels, as its two factors: (C/2, w) of
    the normalised u coordinate (the first C/2 channels) and (C/2, h) of v (the rest); coordinates
    span a unit half-diagonal, in the dtype and on the device of `like` (the head's parameters).

    The embedding of a pixel needs one entry of each, so a head chunk reads a few kilobytes
    instead of generating all (C, h, w) sines of the map (26 M at the image size) in every chunk.
    """
    diagonal = (aspect_ratio**2 + 1.0) ** 0.5
    span_u, span_v = aspect_ratio / diagonal, 1.0 / diagonal
    u = torch.linspace(-span_u * (grid_w - 1) / grid_w, span_u * (grid_w - 1) / grid_w, grid_w, dtype=like.dtype, device=like.device)
    v = torch.linspace(-span_v * (grid_h - 1) / grid_h, span_v * (grid_h - 1) / grid_h, grid_h, dtype=like.dtype, device=like.device)
    return _sincos(u, channels // 2).T.contiguous(), _sincos(v, channels // 2).T.contiguous()


def _add_uv_embedding(x: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor], ratio: float = 0.1) -> torch.Tensor:
    """x (N, C, h, w) + ratio · the position embedding whose factors `uv_tables` made."""
    u_table, v_table = tables
    half, grid_h, grid_w = u_table.shape[0], v_table.shape[1], u_table.shape[1]
    embedding = torch.cat([u_table[:, None, :].expand(half, grid_h, grid_w), v_table[:, :, None].expand(half, grid_h, grid_w)])
    return x + ratio * embedding


def _sincos(pos: torch.Tensor, dim: int, omega_0: float = 100.0) -> torch.Tensor:
    """(...,) positions → (..., dim): sin of dim/2 frequencies 1/omega_0^(2i/dim), then cos."""
    omega = 1.0 / omega_0 ** (torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0))
    angles = pos.double()[..., None] * omega
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()
