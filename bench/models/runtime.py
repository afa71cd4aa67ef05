"""What VGGT and pi3 share around their layers: input checks, precision, and the plan hookup.

Both run their transformers under bf16 autocast on GPUs that support it (fp16 on older ones)
and their heads in float32 (model option `heads_dtype: bfloat16`: under bf16 autocast); both hand
every global layer's attention to an attention plan; both bound per-token work to chunks of whole
frames.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Literal, TypeVar

import torch
from torch import nn

from bench.methods.layout import AttentionPlan, Layout
from bench.models.layers import Attend
from bench.models.weights import build_with_weights
from bench.registry import OPTIONS_AFTER, check_options

M = TypeVar("M", bound=nn.Module)

# The ImageNet statistics both DINOv2 encoders were trained with (π³ also stores them as buffers).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_AUTOCAST_DTYPES: dict[torch.device, torch.dtype] = {}

# Model option `heads_dtype`: float32 is the released recipe; bfloat16 trades head accuracy for speed.
HeadsDtype = Literal["float32", "bfloat16"]


def cuda_autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the GPU supports it (compute capability ≥ 8), else fp16; asked once per device."""
    if device.type != "cuda":
        return torch.bfloat16
    if device not in _AUTOCAST_DTYPES:
        major, _ = torch.cuda.get_device_capability(device)
        _AUTOCAST_DTYPES[device] = torch.bfloat16 if major >= 8 else torch.float16
    return _AUTOCAST_DTYPES[device]


_IN_FLOAT32_HEADS: ContextVar[bool] = ContextVar("in_float32_heads", default=False)


@contextmanager
def heads_autocast(device: torch.device, heads_dtype: HeadsDtype) -> Iterator[None]:
    """The region the heads' float32 part of the released recipe runs in: autocast off for
    "float32" (full precision whatever the backbone ran in), bf16 autocast for "bfloat16" (on the
    CPU too, where the backbone runs in float32, so the difference can be measured there).

    Inside a float32 region `in_float32_heads()` is true: the FLOP model counts that work at the
    GPU's float32 (TF32) rate, not at its bf16 rate (`bench.flops`)."""
    token = _IN_FLOAT32_HEADS.set(heads_dtype == "float32")
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=heads_dtype == "bfloat16"):
            yield
    finally:
        _IN_FLOAT32_HEADS.reset(token)


def in_float32_heads() -> bool:
    """Whether the code running now is the heads' float32 part (`heads_autocast`)."""
    return _IN_FLOAT32_HEADS.get()


def plan_attend(plan: AttentionPlan, layer: int, layout: Layout) -> Attend:
    """The attention callable of global layer `layer`: the plan decides how it attends."""
    return lambda q, k, v: plan.attend(layer, q, k, v, layout)


def alternate_attention(
    frame_blocks: list[nn.Module],
    global_blocks: list[nn.Module],
    handed_over: list[torch.Tensor],
    batch: int,
    rope: Any,
    plan: AttentionPlan,
    layout: Layout,
    rows: int | None,
    keep: tuple[int, ...],
    kept_dtype: torch.dtype | None = None,
) -> dict[int, torch.Tensor]:
    """The alternating transformer both models share: pair i is frame block i (attention within
    each frame) then global block i (attention across frames, as the plan's layer i says).

    The tokens (B·S, P, dim) come as the one element of `handed_over`, which the loop empties: the
    caller then holds no reference, and each layer's input is freed once its output exists (at
    1000 frames one copy of the stream is 4 GB). Returns {i: concat(frame out, global out)
    (B, S, P, 2·dim)} for the pairs in `keep`, stored at `kept_dtype` (default: the tokens');
    only those are kept, so memory does not grow with the depth.
    """
    tokens = handed_over.pop()
    frames, per_frame, dim = layout.frames, layout.tokens_per_frame, tokens.shape[-1]
    kept: dict[int, torch.Tensor] = {}
    for layer, (frame_block, global_block) in enumerate(zip(frame_blocks, global_blocks)):
        tokens = frame_block(tokens.view(batch * frames, per_frame, dim), rope, chunk_rows=rows)
        if layer in keep:
            kept[layer] = tokens.new_empty(batch, frames, per_frame, 2 * dim, dtype=kept_dtype or tokens.dtype)
            kept[layer][..., :dim] = tokens.view(batch, frames, per_frame, dim)
        tokens = global_block(tokens.view(batch, frames * per_frame, dim), rope, plan_attend(plan, layer, layout), rows)
        if layer in keep:
            kept[layer][..., dim:] = tokens.view(batch, frames, per_frame, dim)
    return kept


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


def model_factory(cls: type[M], cfg: Any) -> Callable[..., M]:
    """The registered builder of `cls` at `cfg`: weights and seed, then the class's own keyword
    options; the model comes in eval mode without gradients, where it was built (the CPU, or the
    meta device when the harness only reads a model's traits), for the caller to move. The builder
    shows the options in its signature, so a suite naming an option the model does not take, or a
    value its annotation does not allow, fails when it is loaded, not when the model is built."""

    def build(weights: str = "random", seed: int = 0, **options: Any) -> M:
        check_options(build, options, OPTIONS_AFTER["models"])  # the suite's check, for direct callers too
        model = build_with_weights(lambda: cls(cfg, **options), weights, seed=seed, checkpoint_filter=cls.checkpoint_filter)
        return model.eval().requires_grad_(False)

    shared = [p for p in inspect.signature(build, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
    own = [p.replace(kind=p.KEYWORD_ONLY) for name, p in inspect.signature(cls, eval_str=True).parameters.items() if name != "cfg"]
    build.__signature__ = inspect.Signature(shared + own)
    return build
