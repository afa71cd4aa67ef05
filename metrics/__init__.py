"""Metrics: arrays in, plain floats (and raw per-item arrays) out. No metric imports a model or an adapter.

Registry contract (what the runner calls): ``METRICS.get(name)(pred, gt, **options) -> dict``
where ``pred`` and ``gt`` are plain dicts of numpy arrays in the harness conventions:

- pred: ``extrinsics`` (S,3,4) w2c, ``intrinsics`` (S,3,3), and when the model has them ``depth``,
  ``depth_conf`` (S,H,W), ``world_points`` (S,H,W,3), ``world_points_conf`` (S,H,W)
- gt: ``extrinsics``, ``intrinsics``, ``depth`` (S,H,W, 0 = invalid), ``valid`` (S,H,W bool)

The returned dict is flat: metric values are floats (NaN when not computable); the options the
metric used are recorded under ``<metric>_<option>`` (numbers, strings, None when unset); numpy
arrays are raw per-pair or per-frame values that the results store keeps beside the row. A metric
that cannot be computed for a cell returns NaN values plus a ``<metric>_note`` string, never raises
on degenerate predictions; malformed input (wrong shapes, unknown option values) raises
`MetricInputError` naming the field.

Every metric declares its keys where it is defined (`metrics.registry.register_metric`): which way
is better, what is diagnostic, what is an option, what is raw. `direction("pose.auc30")` reads it.

Registered: ``pose`` (RRA/RTA/AUC over all pairs), ``trajectory`` (ATE/RPE via evo), ``depth``
(AbsRel, δ, RMSE...), ``pointmap`` (Acc, Comp, NC, Chamfer).
"""

from __future__ import annotations

from metrics import pose  # noqa: F401, I001  (each module registers itself in METRICS, in this listing order)
from metrics import trajectory  # noqa: F401
from metrics import depth  # noqa: F401
from metrics import pointmap  # noqa: F401
from metrics.inputs import MetricInputError, MetricRow
from metrics.registry import METRICS, Key, Metric, column_key, direction, register_metric, split_raw

__all__ = ["METRICS", "Key", "Metric", "MetricInputError", "MetricRow", "column_key", "direction", "register_metric", "split_raw"]
