"""Metrics that declare themselves: name, version, every key they report, and how keys aggregate.

A metric is a function ``fn(pred, gt, **options) -> dict`` registered with `register_metric` next to
its definition. The declaration is the one place that says what each returned key is:

- a **value** (a score: which way is better, and how a table row aggregates it over scenes),
- a **diagnostic** (a number worth keeping that is never compared: counts, fitted scales),
- an **option** (a setting the metric recorded so the row says how it was scored),
- a **raw** array (per pair or per frame, kept beside the row so protocols can re-aggregate and
  users can plot distributions without re-running a model, as evo keeps its raw errors).

A key whose name ends in ``{t}`` is a family over whole-degree thresholds (``rra{t}`` covers
``rra5``, ``rra30``...). Every metric may also return ``<name>_note`` (why it gave NaN). A metric
returning a key it did not declare fails loudly: declarations cannot drift from the code.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from bench.registry import Registry
from metrics.inputs import MetricRow

KeyKind = Literal["value", "diagnostic", "option", "raw"]
AGGREGATIONS = ("mean", "sum", "max")


@dataclass(frozen=True)
class Key:
    """One key a metric returns; `name` may end in ``{t}`` for a family over thresholds."""

    name: str
    kind: KeyKind = "value"
    better: Literal["higher", "lower"] | None = None
    aggregate: str = "mean"  # how a report row combines the scenes of a group
    help: str = ""

    def __post_init__(self) -> None:
        if (self.kind == "value") != (self.better is not None):
            raise ValueError(f"metric key {self.name!r}: a value says which way is better (higher or lower); other kinds do not")
        if self.aggregate not in AGGREGATIONS:
            raise ValueError(f"metric key {self.name!r}: aggregate {self.aggregate!r} is not one of {AGGREGATIONS}")

    @property
    def family(self) -> str:
        """The name a tolerances file uses: ``rra`` for ``rra{t}``."""
        return self.name.removesuffix("{t}")

    def matches(self, key: str) -> bool:
        if self.name.endswith("{t}"):
            return re.fullmatch(re.escape(self.family) + r"\d+", key) is not None
        return key == self.name


def higher(name: str, help: str = "", aggregate: str = "mean") -> Key:
    return Key(name, "value", "higher", aggregate, help)


def lower(name: str, help: str = "", aggregate: str = "mean") -> Key:
    return Key(name, "value", "lower", aggregate, help)


def diagnostic(name: str, help: str = "", aggregate: str = "mean") -> Key:
    return Key(name, "diagnostic", None, aggregate, help)


def option(name: str, help: str = "") -> Key:
    return Key(name, "option", help=help)


def raw(name: str, help: str = "") -> Key:
    return Key(name, "raw", help=help)


@dataclass(frozen=True)
class Metric:
    """A registered metric: calling it calls `fn` and checks that it returned only declared keys."""

    name: str
    fn: Callable[..., MetricRow]
    keys: tuple[Key, ...]
    version: int
    help: str
    _by_name: dict[str, Key] = field(default_factory=dict, repr=False, compare=False)

    @property
    def __signature__(self) -> inspect.Signature:  # the options a suite may set are the function's
        return inspect.signature(self.fn, eval_str=True)

    def __call__(self, pred: Any, gt: Any, **options: Any) -> MetricRow:
        row = self.fn(pred, gt, **options)
        undeclared = [key for key in row if self.key(key) is None]
        if undeclared:
            raise TypeError(f"metric {self.name!r} returned undeclared keys {undeclared}; declare them in its register_metric call")
        return row

    def key(self, key: str) -> Key | None:
        """The declaration of `key` (None if undeclared); ``<name>_note`` is declared for every metric."""
        if key == f"{self.name}_note":
            return Key(key, "option", help="why the values are NaN")
        if key not in self._by_name:
            found = next((k for k in self.keys if k.matches(key)), None)
            if found is None:
                return None
            self._by_name[key] = found
        return self._by_name[key]

    def family(self, family: str) -> Key | None:
        """The declaration a tolerances file names: ``rra`` for the family ``rra{t}``, or a plain key."""
        return next((k for k in self.keys if k.family == family), None)


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, *, keys: tuple[Key, ...], version: int = 1, help: str = "") -> Callable[[Callable], Callable]:
    """Register the decorated function as metric `name` with its declared `keys`; returns the
    function unchanged, so it stays directly callable."""

    def add(fn: Callable[..., MetricRow]) -> Callable[..., MetricRow]:
        metric = Metric(name, fn, tuple(keys), version, help or (fn.__doc__ or "").strip().split("\n")[0])
        METRICS.register(name, metric, help=metric.help)
        return fn

    return add


def column_key(column: str) -> Key | None:
    """The declaration behind a row column ``<metric>.<key>`` (None: not a column of a registered metric)."""
    metric, sep, key = column.partition(".")
    if not sep or metric not in METRICS:
        return None
    return METRICS.get(metric).key(key)


def direction(column: str) -> str | None:
    """"higher" or "lower" for a value column ``<metric>.<key>``; None for anything else."""
    key = column_key(column)
    return key.better if key is not None else None


def split_raw(row: MetricRow) -> tuple[MetricRow, dict[str, np.ndarray]]:
    """A metric's output as (scalars for the result row, raw arrays to keep beside it)."""
    arrays = {key: value for key, value in row.items() if isinstance(value, np.ndarray)}
    return {key: value for key, value in row.items() if key not in arrays}, arrays
