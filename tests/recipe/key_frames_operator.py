"""A new method: global layers whose keys are the tokens of every k-th frame only.

One operator (a function of q, k, v and the layout, with its FLOP count) and one preset (its
parameters and which global layers it takes); both register themselves on import.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.methods.kernels import AttentionKernel
from bench.methods.layout import LayerRule, Layout
from bench.methods.operators import OPERATORS, Operator
from bench.methods.params import Param, integer
from bench.methods.presets import ALL_LAYERS, METHODS, Preset


def key_frames(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout, *, kernel: AttentionKernel, every: int) -> torch.Tensor:
    """Every query attends to the tokens of frames 0, every, 2·every, …"""
    frames = torch.arange(0, layout.frames, every, device=k.device)
    keep = (frames[:, None] * layout.tokens_per_frame + torch.arange(layout.tokens_per_frame, device=k.device)).flatten()
    return kernel.attend(q, k[:, :, keep], v[:, :, keep])


def key_frames_flops(params: dict[str, Any], layout: Layout, dim: int) -> float:
    kept = len(range(0, layout.frames, params["every"])) * layout.tokens_per_frame
    return 4.0 * layout.num_tokens * kept * dim


def rules(settings: dict[str, Any], layers: int) -> list[LayerRule]:
    return [LayerRule("key_frames", settings["layers"].indices(layers, "layers"), {"every": settings["every"]})]


OPERATORS.register("key_frames", Operator(key_frames, key_frames_flops), help="keys from every k-th frame only")
METHODS.register(
    "key-frames",
    Preset("key-frames", {"layers": ALL_LAYERS, "every": Param(integer, 2, "keep the keys of every k-th frame")}, rules),
    help="toy method: global layers attend to every k-th frame",
)
