"""Opt-in compilation of the memory-bound stages of a forward pass.

A module with such a stage (a block's per-token work, a dense head's chunk of frames) keeps its
stage as a plain function of the module and sets `stages_compiled`; `compiled(stage)` is the one
compilation of that function, shared by every module that runs it (parameters are graph inputs)
and made with dynamic shapes, so new frame counts and chunk sizes do not recompile. Compilation is
lazy: a run that never asks for it never needs a compiler.

Attention operators have such stages too (the merge of extra terms after a kernel call); they are
not modules, so a compiled model's forward opens `stages_compiled_within` and an operator runs
`stage(function)`, compiled exactly when the forward that calls it is.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Callable, Iterator, TypeVar

import torch
from torch import nn

Stage = TypeVar("Stage", bound=Callable[..., object])


@lru_cache(maxsize=None)
def compiled(stage: Stage) -> Stage:
    """`stage` compiled once for all modules and shapes.

    Python floats (norm epsilons, scales) compile as constants, as they are for a model: traced as
    symbols, every graph with one was traced twice (dynamo restarts when it cannot turn them into
    tensors), a third of the tracing a warm-cache start of VGGT-1B pays. The setting is
    process-wide, for any compiled code after this."""
    torch._dynamo.config.specialize_float = True
    return torch.compile(stage, dynamic=True)


def compile_stages(model: nn.Module) -> None:
    """Switch every module inside `model` that has compilable stages to their compiled form."""
    for module in model.modules():
        if hasattr(type(module), "stages_compiled"):
            module.stages_compiled = True


_FORWARD_COMPILED: ContextVar[bool] = ContextVar("forward_compiled", default=False)


@contextmanager
def stages_compiled_within(enabled: bool) -> Iterator[None]:
    """Inside: `stage` hands out compiled stages when `enabled`."""
    token = _FORWARD_COMPILED.set(enabled)
    try:
        yield
    finally:
        _FORWARD_COMPILED.reset(token)


def constant_heads(*tensors: torch.Tensor | None, per_query: tuple[torch.Tensor, ...] = ()) -> None:
    """Inside a stage: compile the head count and head size (dim 1 and the last) of these
    (B, heads, [tokens,] head_dim) tensors as the constants they are for a model, so only the token
    count stays symbolic; of the (B, heads, tokens) tensors in `per_query` (a log-sum-exp), the head
    count. A stage with parameters gets this from their shapes; an operator's stage has none, and
    with those sizes symbolic its reductions over head_dim compile as looped kernels, about three
    times slower at two frames on an H200 (`results/graphs-h200/subsample-kernels/`). Only while
    compiling: an eager forward does nothing here."""
    if not torch.compiler.is_compiling():
        return
    for tensor in tensors:
        if tensor is not None:
            torch._dynamo.mark_static(tensor, 1)
            torch._dynamo.mark_static(tensor, tensor.dim() - 1)
    for tensor in per_query:
        torch._dynamo.mark_static(tensor, 1)


def stage(function: Stage) -> Stage:
    """`function` as the current forward runs its stages: compiled or as written."""
    return compiled(function) if _FORWARD_COMPILED.get() else function
