"""A new metric: the mean distance between predicted and true camera centres, no alignment.

It declares its keys (a value that is better lower, a raw per-frame array) where it is defined.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from metrics.geometry import camera_centres
from metrics.inputs import compute_or_note, num_frames, prediction
from metrics.registry import lower, raw, register_metric


@register_metric(
    "centre",
    keys=(lower("centre_error", "mean distance of camera centres, GT units"), raw("frame_centre_error", "per frame")),
    help="camera-centre distance without alignment (a recipe example)",
)
def centre_metrics(pred: Mapping[str, Any], gt: Mapping[str, Any]) -> dict[str, Any]:
    frames = num_frames(gt)

    def compute() -> dict[str, Any]:
        distances = np.linalg.norm(camera_centres(prediction(pred, "extrinsics", (frames, 3, 4))) - camera_centres(np.asarray(gt["extrinsics"])), axis=1)
        return {"centre_error": float(distances.mean()), "frame_centre_error": distances}

    return compute_or_note("centre", ("centre_error",), compute)
