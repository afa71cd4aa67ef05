"""What VGGT and pi3 share around their layers: input checks, precision, and the plan hookup.

Both run their transformers under bf16 autocast on GPUs that support it (fp16 on older ones)
and their heads in float32; both hand every global layer's attention to an attention plan;
both bound per-token work to chunks of whole frames.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from bench.methods.layout import AttentionPlan, Layout
from bench.models.layers import Attend
from bench.models.weights import build_with_weights

M = TypeVar("M", bound=nn.Module)

# The ImageNet statistics both DINOv2 encoders were trained with (π³ also stores them as buffers).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_AUTOCAST_DTYPES: dict[torch.device, torch.dtype] = {}


def cuda_autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the GPU supports it (compute capability ≥ 8), else fp16; asked once per device."""
    if device.type != "cuda":
        return torch.bfloat16
    if device not in _AUTOCAST_DTYPES:
        major, _ = torch.cuda.get_device_capability(device)
        _AUTOCAST_DTYPES[device] = torch.bfloat16 if major >= 8 else torch.float16
    return _AUTOCAST_DTYPES[device]


def plan_attend(plan: AttentionPlan, layer: int, layout: Layout) -> Attend:
    """The attention callable of global layer `layer`: the plan decides how it attends."""
    return lambda q, k, v: plan.attend(layer, q, k, v, layout)


def chunk_rows(chunk_frames: int | None, tokens_per_frame: int) -> int | None:
    """Token rows in a chunk of `chunk_frames` whole frames (None: no chunking)."""
    return None if not chunk_frames else chunk_frames * tokens_per_frame


def check_images(images: torch.Tensor, patch_size: int, model: str, preprocess_mode: str | None) -> torch.Tensor:
    """(S, 3, H, W) or (B, S, 3, H, W) → (B, S, 3, H, W), or one error saying what to change."""
    if images.ndim == 4:
        images = images[None]
    if images.ndim != 5 or images.shape[2] != 3:
        raise ValueError(f"{model} takes images shaped (S, 3, H, W) or (B, S, 3, H, W), got {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size:
        hint = f"; preprocess with mode {preprocess_mode!r}" if preprocess_mode else ""
        raise ValueError(f"{model} needs image sides divisible by {patch_size}, got {height}×{width}{hint}")
    return images


def model_factory(cls: type[M], cfg: Any, skip_prefixes: tuple[str, ...] = ()) -> Callable[..., M]:
    """The registered builder of `cls` at `cfg`: weights and seed, then the class's own keyword
    options; the model comes in eval mode without gradients, where it was built (the CPU, or the
    meta device when the harness only reads a model's traits), for the caller to move. The builder
    shows the options in its signature, so a suite naming an option the model does not take fails
    when it is loaded, not when the model is built."""

    def build(weights: str = "random", seed: int = 0, **options: Any) -> M:
        model = build_with_weights(lambda: cls(cfg, **options), weights, seed=seed, skip_prefixes=skip_prefixes)
        return model.eval().requires_grad_(False)

    shared = [p for p in inspect.signature(build).parameters.values() if p.kind is not p.VAR_KEYWORD]
    own = [p.replace(kind=p.KEYWORD_ONLY) for name, p in inspect.signature(cls).parameters.items() if name != "cfg"]
    build.__signature__ = inspect.Signature(shared + own)
    return build
