"""Methods as attention plans: operators over (q, k, v, layout) and named presets."""

from bench.methods.kernels import AttentionKernel
from bench.methods.operators import OPERATORS
from bench.methods.params import parse_overrides
from bench.methods.layout import AttentionPlan, LayerRule, Layout
from bench.methods.plan import DensePlan, Plan
from bench.methods.presets import METHODS, MethodNotApplicable, describe_method, method_summary, resolve_plan

__all__ = [
    "AttentionKernel",
    "AttentionPlan",
    "DensePlan",
    "LayerRule",
    "Layout",
    "METHODS",
    "MethodNotApplicable",
    "OPERATORS",
    "Plan",
    "describe_method",
    "method_summary",
    "parse_overrides",
    "resolve_plan",
]
