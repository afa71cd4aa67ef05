"""The FLOP model: how many floating-point operations a model does on S frames under a plan.

Global attention is counted per layer by the plan's operators (closed-form, bench/methods/operators.py);
everything else the model computes (linear layers, convolutions, frame attention, the heads) is
counted by PyTorch's FlopCounterMode on a forward over fake tensors, so nothing is allocated and
1000 frames count as fast as 2. That rest is split by the kind of kernel that runs it on a GPU: the
attention calls within frames (frame layers, π³'s decoders), the heads' float32 part
(`bench.models.runtime.heads_autocast`, TF32 convolutions) and the bf16 matrix products. Dividing
each part by the rate of its kernels measured on one GPU (`Rates`, `scripts/kernel_rates.py`)
gives the time a method should take, which the speed sweep compares with what it measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_flop_count, shape_wrapper

from bench.methods.layout import Layout
from bench.methods.plan import Plan
from bench.models import BenchModel, create_model
from bench.models.runtime import HeadsDtype, in_float32_heads


def _sdpa_shapes_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# On the CPU, SDPA runs as this op, which FlopCounterMode does not know by default.
_CPU_SDPA = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_shapes_flops}


@dataclass(frozen=True)
class Rates:
    """Sustained rates (FLOP/s) of the kernels a forward runs, measured on one GPU at the model's
    shapes (`scripts/kernel_rates.py`)."""

    global_attention: float  # attention over many frames' tokens (long sequences)
    frame_attention: float  # attention within one frame (a thousand tokens a sequence)
    gemm: float  # bf16 matrix products
    float32: float  # the heads' float32 work (TF32 convolutions)


@dataclass(frozen=True)
class FlopCount:
    global_attention: float  # the plan's global-attention layers
    frame_attention: float  # every other attention call of the bf16 part (frame layers, decoders)
    other: float  # the rest of the bf16 part: linear layers, convolutions
    float32: float  # the heads' float32 part (0 with heads_dtype=bfloat16)

    @property
    def total(self) -> float:
        return self.global_attention + self.frame_attention + self.other + self.float32

    def seconds(self, rates: Rates) -> float:
        """Predicted time: each part at the sustained rate of the kernels it runs on."""
        return (
            self.global_attention / rates.global_attention
            + self.frame_attention / rates.frame_attention
            + self.other / rates.gemm
            + self.float32 / rates.float32
        )


_ATTENTION_OPS = {op for op in flop_registry if "attention" in str(op)} | set(_CPU_SDPA)


class _PlanIndependentFlops:
    """FlopCounterMode's formulas, wrapped to add up apart what the FLOP model times at other rates:
    attention calls, and whatever runs inside the heads' float32 region (`in_float32_heads`)."""

    def __init__(self) -> None:
        self.attention = 0
        self.float32 = 0

    def mapping(self) -> dict:
        formulas = {**flop_registry, **{op: shape_wrapper(count) for op, count in _CPU_SDPA.items()}}
        return {op: self._wrap(count, op in _ATTENTION_OPS) for op, count in formulas.items()}

    def _wrap(self, count, attention: bool):
        def counted(*args, **kwargs):
            flops = count(*args, **kwargs)
            if in_float32_heads():
                self.float32 += flops
            elif attention:
                self.attention += flops
            return flops

        counted._get_raw = True  # FlopCounterMode calls it with the op's raw arguments, as registered
        return counted


class _RecordingPlan:
    """Stands in for a plan during a fake forward: notes each global layer's call, computes nothing."""

    is_dense = True

    def __init__(self) -> None:
        self.calls: list[tuple[int, Layout, int]] = []

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout) -> torch.Tensor:
        self.calls.append((layer, layout, q.shape[1] * q.shape[3]))
        return torch.empty_like(q)


@lru_cache(maxsize=4)
def _fake_model(name: str, heads_dtype: HeadsDtype | None) -> tuple[BenchModel, FakeTensorMode]:
    with torch.device("meta"):
        model = create_model(name, weights="random", **({} if heads_dtype is None else {"heads_dtype": heads_dtype}))
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        model = model.to_empty(device="cpu").eval()
    return model, mode


@lru_cache(maxsize=64)
def _plan_independent(model_name: str, frames: int, image_size: tuple[int, int], heads_dtype: HeadsDtype | None) -> tuple[dict[str, float], tuple[tuple[int, Layout, int], ...]]:
    """FLOPs outside global attention (the same under every plan) by `FlopCount` field, and the
    global-attention calls."""
    model, mode = _fake_model(model_name, heads_dtype)
    recording = _RecordingPlan()
    parts = _PlanIndependentFlops()
    with mode, torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=parts.mapping()) as counter:
        model(torch.empty(frames, 3, *image_size), plan=recording)
    rest = counter.get_total_flops() - parts.attention - parts.float32
    return {"frame_attention": float(parts.attention), "other": float(rest), "float32": float(parts.float32)}, tuple(recording.calls)


def count_flops(
    model_name: str, plan: Plan, frames: int, image_size: tuple[int, int], observed: dict[str, float] | None = None, heads_dtype: HeadsDtype | None = None
) -> FlopCount:
    """FLOPs of one forward of registered model `model_name` on `frames` images of `image_size`
    (H, W); `observed`: what a run of the plan recorded (`Plan.layer_flops`); `heads_dtype`: the
    model option, for models that have it (None: the model's default)."""
    parts, calls = _plan_independent(model_name, frames, tuple(image_size), heads_dtype)
    attention = sum(plan.layer_flops(layer, layout, dim, observed) for layer, layout, dim in calls)
    return FlopCount(global_attention=attention, **parts)
