"""Methods as attention plans: operators over (q, k, v, layout) and named presets."""

from bench.methods.plan import AttentionPlan, DensePlan, Layout
from bench.methods.presets import METHODS, MethodNotApplicable, resolve_plan

__all__ = ["AttentionPlan", "DensePlan", "Layout", "METHODS", "MethodNotApplicable", "resolve_plan"]
