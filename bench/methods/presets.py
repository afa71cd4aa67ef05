"""Named methods (presets) and their resolution into an attention plan for one model."""

from __future__ import annotations

from typing import Any

from bench.methods.plan import DensePlan
from bench.registry import Registry


class MethodNotApplicable(ValueError):
    """A preset that does not apply to this model family (e.g. `vggt` on pi3): the cell is skipped."""


METHODS: Registry = Registry("method")


def _dense(family: str, num_global_layers: int, **params: Any) -> DensePlan:
    if params:
        raise ValueError(f"method dense takes no parameters, got {sorted(params)}")
    return DensePlan()


METHODS.register("dense", _dense, help="exact softmax attention over all tokens in every global layer")


def resolve_plan(name: str, params: dict[str, Any], family: str, num_global_layers: int):
    """The plan of preset `name` with `params` overrides, for a model of `family`."""
    return METHODS.get(name)(family, num_global_layers, **params)
