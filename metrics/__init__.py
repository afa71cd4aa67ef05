"""Metrics: arrays in, plain floats out. No metric imports a model or an adapter.

Registry contract (what the runner calls): ``METRICS.get(name)(pred, gt, **options) -> dict``
where ``pred`` and ``gt`` are plain dicts of numpy arrays in the harness conventions:

- pred: ``extrinsics`` (S,3,4) w2c, ``intrinsics`` (S,3,3), and when the model has them ``depth``,
  ``depth_conf`` (S,H,W), ``world_points`` (S,H,W,3), ``world_points_conf`` (S,H,W)
- gt: ``extrinsics``, ``intrinsics``, ``depth`` (S,H,W, 0 = invalid), ``valid`` (S,H,W bool)

The returned dict is flat: metric values are floats (NaN when not computable); the options the
metric used are recorded under ``<metric>_<option>`` (numbers, strings, None when unset). A metric
that cannot be computed for a cell returns NaN values plus a ``<metric>_note`` string, never raises
on degenerate predictions; malformed input (wrong shapes, unknown option values) raises
`MetricInputError` naming the field.

Registered: ``pose`` (RRA/RTA/AUC over all pairs), ``trajectory`` (ATE/RPE via evo), ``depth``
(AbsRel, δ, RMSE), ``pointmap`` (Acc, Comp, NC, Chamfer). `METRIC_DIRECTIONS` / `direction` say
whether higher or lower is better for every metric key, for regression checks.
"""

from __future__ import annotations

import re

from bench.registry import Registry
from metrics.depth import depth_metrics
from metrics.inputs import MetricInputError, MetricRow
from metrics.pointmap import pointmap_metrics
from metrics.pose import DEFAULT_THRESHOLDS, pose_metrics
from metrics.trajectory import trajectory_metrics

METRICS: Registry = Registry("metric")
METRICS.register("pose", pose_metrics, help="relative pose over all pairs: RRA@τ, RTA@τ, AUC@τ (percent)")
METRICS.register("trajectory", trajectory_metrics, help="ATE and RPE (Δ = 1 frame) after Sim(3) alignment, via evo")
METRICS.register("depth", depth_metrics, help="depth AbsRel, δ < 1.25ᵏ, RMSE after median or scale-shift alignment")
METRICS.register("pointmap", pointmap_metrics, help="point-map Acc, Comp, NC, Chamfer after Sim(3) + ICP")

METRIC_DIRECTIONS: dict[str, str] = {
    **{f"{name}{t}": "higher" for name in ("rra", "rta", "auc") for t in DEFAULT_THRESHOLDS},
    "pose_invalid_pairs": "lower",
    "ate": "lower",
    "rpe_trans": "lower",
    "rpe_rot": "lower",
    "abs_rel": "lower",
    "delta_1_25": "higher",
    "delta_1_25_2": "higher",
    "delta_1_25_3": "higher",
    "depth_rmse": "lower",
    "depth_pred_invalid": "lower",
    "acc": "lower",
    "acc_med": "lower",
    "comp": "lower",
    "comp_med": "lower",
    "chamfer": "lower",
    "nc1": "higher",
    "nc2": "higher",
    "nc": "higher",
}
"""Metric key → "higher" or "lower" (which way is better), for the default options."""

_POSE_SCORE = re.compile(r"(rra|rta|auc)\d+")


def direction(key: str) -> str | None:
    """"higher" or "lower" for a metric key (pose scores at any threshold included); None for keys
    that are not metrics (recorded options, notes)."""
    if key in METRIC_DIRECTIONS:
        return METRIC_DIRECTIONS[key]
    return "higher" if _POSE_SCORE.fullmatch(key) else None


__all__ = ["METRICS", "METRIC_DIRECTIONS", "MetricInputError", "MetricRow", "direction"]
