"""The contract between models and methods: a model calls `plan.attend` once per global layer.

q, k, v arrive as (B, heads, N, head_dim) with N = frames × tokens_per_frame, already normed and
rotated (RoPE); the plan returns the attention output of the same shape. `layout` tells the
operator how the N tokens are organised, so the model never knows which method runs.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.methods.dense import dense
from bench.methods.kernels import AttentionKernel
from bench.methods.layout import AttentionPlan, LayerRule, Layout
from bench.methods.operators import OPERATORS
from bench.methods.params import json_value




class DensePlan:
    """Exact softmax attention over all tokens in every layer: the published models."""

    is_dense = True
    capturable = True

    def __init__(self, kernel: str = "auto") -> None:
        self.kernel = AttentionKernel(kernel)

    def describe(self, frames: int | None = None) -> dict:
        return {"operator": "dense", "kernel": self.kernel.requested, "kernels_used": sorted(self.kernel.used)}

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout) -> torch.Tensor:
        return dense(q, k, v, layout, kernel=self.kernel)

    def reset_observations(self) -> None:
        self.kernel.reset_observations()


class Plan:
    """A method resolved for one model: each global layer's operator and parameters, one kernel.

    Layers no rule covers run `dense`. `settings` are the method's resolved parameters, recorded
    with the per-layer assignment so a result can always be traced to what produced it.
    """

    capturable = True  # every operator's per-layer host work is cached per layout

    def __init__(
        self,
        method: str,
        family: str,
        num_global_layers: int,
        rules: list[LayerRule],
        kernel: str = "auto",
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.method, self.family, self.num_global_layers = method, family, num_global_layers
        self.kernel = AttentionKernel(kernel)
        self.settings = dict(settings or {})
        dense_rule = LayerRule("dense", ())
        assigned: list[LayerRule | None] = [None] * num_global_layers
        for rule in rules:
            OPERATORS.get(rule.operator)
            for layer in rule.layers:
                if not 0 <= layer < num_global_layers:
                    raise ValueError(f"method {method}: global layer {layer} does not exist (layers 0-{num_global_layers - 1})")
                if assigned[layer] is not None:
                    raise ValueError(f"method {method}: global layer {layer} is assigned both {assigned[layer].operator} and {rule.operator}")
                assigned[layer] = rule
        self.layers: list[LayerRule] = [rule or dense_rule for rule in assigned]
        operators = [rule.operator for rule in (self.layers or rules)]
        self.is_dense = all(op == "dense" for op in operators)  # a model without global layers: the rules decide

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout) -> torch.Tensor:
        if not 0 <= layer < self.num_global_layers:
            raise ValueError(f"method {self.method}: the plan covers global layers 0-{self.num_global_layers - 1}, got layer {layer}")
        if q.shape[2] != layout.num_tokens:
            raise ValueError(f"method {self.method}: q has {q.shape[2]} tokens but the layout says {layout.num_tokens}")
        rule = self.layers[layer]
        return OPERATORS.get(rule.operator).run(q, k, v, layout, kernel=self.kernel, **rule.params)

    def reset_observations(self) -> None:
        self.kernel.reset_observations()

    def layer_flops(self, layer: int, layout: Layout, dim: int, observed: dict[str, float] | None = None) -> float:
        """Floating-point operations of global layer `layer`'s attention (dim = heads × head_dim).

        `observed` (a result row's `plan.observed`) gives data-dependent operators the work they
        measured doing instead of the bound their parameters set."""
        rule = self.layers[layer]
        return OPERATORS.get(rule.operator).flops({**rule.params, **(observed or {})}, layout, dim)

    def describe(self, frames: int | None = None) -> dict:
        """Method, settings, kernel, and consecutive layers with the same operator and parameters."""
        groups: list[tuple[int, int, LayerRule]] = []
        for index, rule in enumerate(self.layers):
            if groups and groups[-1][2] is rule:
                groups[-1] = (groups[-1][0], index, rule)
            else:
                groups.append((index, index, rule))
        observed = self.kernel.observations()
        return {
            "method": self.method,
            "family": self.family,
            "global_layers": self.num_global_layers,
            "kernel": self.kernel.requested,
            "kernels_used": sorted(self.kernel.used),
            "settings": {name: json_value(value) for name, value in self.settings.items()},
            **({"observed": observed} if observed else {}),
            "layers": [
                {
                    "layers": f"{first}-{last}" if last > first else f"{first}",
                    "operator": rule.operator,
                    "params": OPERATORS.get(rule.operator).describe(rule.params, frames),
                }
                for first, last, rule in groups
            ],
        }
