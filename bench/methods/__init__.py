"""Methods as attention plans: operators over (q, k, v, layout) and named presets."""

from bench.methods.plan import AttentionPlan, DensePlan, Layout

__all__ = ["AttentionPlan", "DensePlan", "Layout"]
