"""The one exact-attention kernel every operator of a plan runs on.

Speedups are only honest when the dense baseline and each accelerated operator call the same
softmax-attention kernel, so a plan owns one `AttentionKernel` and hands it to every operator.
It resolves a backend per input (cuDNN, FlashAttention, memory-efficient, math), records which ones
actually ran, and also offers attention that returns the log-sum-exp of each query's scores, which
`subsample` needs to merge extra keys in closed form.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = ("cudnn", "flash", "efficient", "math")
KERNEL_CHOICES = ("auto",) + BACKENDS

_SDP_BACKEND = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
_CPU_FLASH_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
_MATH_CHUNK_ELEMENTS = 1 << 24  # score-matrix entries per chunk of the math path


class AttentionKernel:
    """Exact softmax attention on one chosen SDPA backend; `requested` is "auto" or a backend name.

    "auto" picks, per device and dtype, the fastest exact backend that can run the inputs: on CUDA
    cuDNN, then FlashAttention, then memory-efficient (cuDNN measured fastest on the H100, see
    REFERENCE.md); on CPU the CPU FlashAttention kernel. A named backend that cannot run the
    inputs is an error, never a silent fallback.
    """

    def __init__(self, requested: str = "auto") -> None:
        if requested not in KERNEL_CHOICES:
            raise ValueError(f"kernel {requested!r} is not known; choose one of {', '.join(KERNEL_CHOICES)}")
        self.requested = requested
        self.used: set[str] = set()  # backends (and "flex" for block-sparse) that actually ran
        self._observed: dict[str, tuple[torch.Tensor, int]] = {}  # name → (running sum on device, calls)

    def backend_for(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
        """The backend that runs these inputs; raises ValueError if the requested one cannot."""
        if self.requested == "auto":
            return next(b for b in BACKENDS if _can_run(b, q, k, v))
        if not _can_run(self.requested, q, k, v):
            raise ValueError(
                f"kernel {self.requested!r} cannot run attention on {q.device.type} with dtype "
                f"{q.dtype} and head dim {q.shape[-1]}; set kernel=auto or another of {', '.join(BACKENDS)}"
            )
        return self.requested

    def record(self, name: str) -> None:
        """Note a kernel that ran outside this class (FlexAttention for block-sparse attention)."""
        self.used.add(name)

    def observe(self, name: str, value: torch.Tensor) -> None:
        """Add one call's value of a data-dependent statistic (block-sparse's share of key blocks
        kept). Summed where it was computed, so a timed forward never waits on the host."""
        total, calls = self._observed.get(name, (0.0, 0))
        self._observed[name] = (value.detach().double() + total, calls + 1)

    def observations(self) -> dict[str, float]:
        """Each statistic's mean over the calls since the last reset."""
        return {name: float(total) / calls for name, (total, calls) in sorted(self._observed.items())}

    def reset_observations(self) -> None:
        """Start a new cell: the kernels used and the statistics observed cover the calls after this."""
        self.used.clear()
        self._observed.clear()

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q·kᵀ/√d)·v over (B, heads, L, d) inputs."""
        backend = self.backend_for(q, k, v)
        self.used.add(backend)
        with sdpa_kernel([_SDP_BACKEND[backend]]):
            return F.scaled_dot_product_attention(q, k, v)

    def attend_with_lse(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention output and each query's log-sum-exp of scaled scores, (B, heads, L), float32 or wider."""
        backend = self.backend_for(q, k, v)
        self.used.add(backend)
        out, lse = _attention_with_lse(backend, q, k, v)
        _check_lse_once(backend, q)
        return out, lse


def _can_run(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    if backend == "math":
        return True
    if q.device.type == "cpu":
        return backend == "flash" and q.dtype in _CPU_FLASH_DTYPES
    if q.device.type != "cuda":
        return False
    params = torch.backends.cuda.SDPAParams(q, k, v, None, 0.0, False, False)
    check = {
        "cudnn": torch.backends.cuda.can_use_cudnn_attention,
        "flash": torch.backends.cuda.can_use_flash_attention,
        "efficient": torch.backends.cuda.can_use_efficient_attention,
    }[backend]
    return bool(check(params, False))


def _attention_with_lse(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused kernels return the log-sum-exp they computed anyway; the math path computes it."""
    aten = torch.ops.aten
    if backend == "math":
        return _math_attention_with_lse(q, k, v)
    if backend == "flash" and q.device.type == "cpu":
        out, lse = aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
    elif backend == "flash":
        out, lse = aten._scaled_dot_product_flash_attention(q, k, v)[:2]
    elif backend == "cudnn":
        out, lse = aten._scaled_dot_product_cudnn_attention(q, k, v, None, True)[:2]
    else:  # efficient
        out, lse = aten._scaled_dot_product_efficient_attention(q, k, v, None, True)[:2]
    if lse.dim() == 4:  # cuDNN returns (B, heads, L, 1)
        lse = lse.squeeze(-1)
    return out, lse[..., : q.shape[-2]]  # memory-efficient pads L to a multiple of 32


def _math_attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit scores, chunked over queries so memory stays bounded; float32 or wider accumulation."""
    acc = torch.promote_types(q.dtype, torch.float32)
    scale = 1.0 / math.sqrt(q.shape[-1])
    rows = max(1, _MATH_CHUNK_ELEMENTS // max(1, k.shape[-2] * q.shape[0] * q.shape[1]))
    kt, va = k.to(acc).transpose(-1, -2), v.to(acc)
    outs, lses = [], []
    for start in range(0, q.shape[-2], rows):
        scores = (q[..., start : start + rows, :].to(acc) @ kt) * scale
        lse = torch.logsumexp(scores, dim=-1)
        outs.append((torch.exp(scores - lse[..., None]) @ va).to(q.dtype))
        lses.append(lse)
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)


_LSE_CHECKED: set[tuple[str, str, torch.dtype, int]] = set()


def _check_lse_once(backend: str, like: torch.Tensor) -> None:
    """Check once per backend, device, dtype and head dim that the private ops' log-sum-exp is the
    natural-log LSE of scaled scores; a convention change in a PyTorch release must fail loudly
    rather than skew `subsample` silently."""
    key = (backend, like.device.type, like.dtype, like.shape[-1])
    if key in _LSE_CHECKED:
        return
    gen = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(1, 2, 80, like.shape[-1], generator=gen).to(like.device, like.dtype) for _ in range(3))
    _, lse = _attention_with_lse(backend, q, k, v)
    ref = torch.logsumexp((q.double() @ k.double().transpose(-1, -2)) / math.sqrt(q.shape[-1]), dim=-1)
    tol = 1e-6 if like.dtype == torch.float64 else 1e-3 if like.dtype == torch.float32 else 5e-2
    err = (lse.double() - ref).abs().max().item()
    if not err <= tol:
        raise RuntimeError(
            f"attention backend {backend!r} on {like.device.type}/{like.dtype} returned a log-sum-exp off by {err:.3g} "
            f"from the reference; this PyTorch build changed its convention: set kernel= to another backend"
        )
    _LSE_CHECKED.add(key)
