"""Metrics: arrays in, plain floats out. No metric imports a model or an adapter.

Registry contract (what the runner calls): ``METRICS.get(name)(pred, gt, **options) -> dict[str, float]``
where ``pred`` and ``gt`` are plain dicts of numpy arrays in the harness conventions:

- pred: ``extrinsics`` (S,3,4) w2c, ``intrinsics`` (S,3,3), and when the model has them ``depth``,
  ``depth_conf`` (S,H,W), ``world_points`` (S,H,W,3), ``world_points_conf`` (S,H,W)
- gt: ``extrinsics``, ``intrinsics``, ``depth`` (S,H,W, 0 = invalid), ``valid`` (S,H,W bool)

A metric that cannot be computed for a cell returns NaN values plus a ``<metric>_note`` string,
never raises on degenerate predictions.
"""

from bench.registry import Registry

METRICS: Registry = Registry("metric")
