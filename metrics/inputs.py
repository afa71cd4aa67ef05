"""Reading the metric inputs: the arrays of `pred` / `gt`, their shapes, and why a metric cannot run.

Two kinds of trouble, kept apart: malformed input (a wrong shape, a bad option) is a bug in the
caller and raises `MetricInputError` naming the field; a cell whose prediction simply lacks what a
metric needs (no depth head, NaN poses) is a result, recorded as NaN values and a note.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable, Union

import numpy as np

MetricRow = dict[str, Union[float, str, None]]
"""What a metric returns: metric values (floats, NaN when not computable), the options it used
(numbers/strings, None for an unset option) and, when not computable, a ``<metric>_note``."""


class MetricInputError(ValueError):
    """Malformed metric input: a wrong shape, a missing ground-truth field, an invalid option."""


class MetricUnavailable(Exception):
    """The metric cannot be computed for this cell; the message is recorded as the note."""


def optional_array(data: Mapping[str, Any], key: str) -> np.ndarray | None:
    """`data[key]` as a numpy array, or None when absent."""
    value = data.get(key)
    return None if value is None else np.asarray(value)


def ground_truth(gt: Mapping[str, Any], key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """A required ground-truth array of the given shape; anything else is a caller error."""
    value = optional_array(gt, key)
    if value is None:
        raise MetricInputError(f"gt[{key!r}] is missing; the dataset adapter must provide it for this metric")
    check_shape(value, shape, f"gt[{key!r}]")
    return value


def prediction(pred: Mapping[str, Any], key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """A predicted array of the given shape; absent → MetricUnavailable (the model lacks that output)."""
    value = optional_array(pred, key)
    if value is None:
        raise MetricUnavailable(f"the prediction has no {key!r}")
    check_shape(value, shape, f"pred[{key!r}]")
    return value


def check_shape(value: np.ndarray, shape: tuple[int | None, ...], name: str) -> None:
    """`value` must have `shape`; a None entry matches any size."""
    if value.ndim != len(shape) or any(want is not None and got != want for got, want in zip(value.shape, shape)):
        expected = "(" + ", ".join("any" if want is None else str(want) for want in shape) + ")"
        raise MetricInputError(f"{name} has shape {value.shape}, expected {expected}")


def valid_depth(gt: Mapping[str, Any], depth: np.ndarray) -> np.ndarray:
    """GT pixels with a usable depth: finite and > 0, and inside ``gt['valid']`` when it is given."""
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    if optional_array(gt, "valid") is not None:
        valid &= ground_truth(gt, "valid", depth.shape).astype(bool)
    return valid


def num_frames(gt: Mapping[str, Any]) -> int:
    """S, read from the ground-truth extrinsics (S, 3, 4)."""
    extrinsics = optional_array(gt, "extrinsics")
    if extrinsics is None or extrinsics.ndim != 3 or extrinsics.shape[1:] != (3, 4):
        shape = None if extrinsics is None else extrinsics.shape
        raise MetricInputError(f"gt['extrinsics'] must be (S, 3, 4) world-to-camera, got {shape}")
    return int(extrinsics.shape[0])


def check_choice(value: Any, choices: Iterable[Any], option: str) -> None:
    """An option value must be one of `choices`; the error lists them."""
    choices = list(choices)
    if value not in choices:
        raise MetricInputError(f"option {option}={value!r} is not one of {choices}")


def compute_or_note(metric: str, keys: Iterable[str], compute: Callable[[], dict[str, float]]) -> MetricRow:
    """Run `compute`; if the metric is unavailable, every key is NaN and ``<metric>_note`` says why."""
    try:
        return dict(compute())
    except MetricUnavailable as reason:
        row: MetricRow = dict.fromkeys(keys, float("nan"))
        row[f"{metric}_note"] = str(reason)
        return row
