"""What a protocol is: a named, versioned preset that reproduces one published evaluation.

A protocol says, for every dataset it covers (a `Setting`, one per variant such as 7-Scenes'
every-200th or every-40th keyframe), which scenes, how many frames and how they are chosen, the
adapter options and preprocessing, and which metrics run with which options; and, for the whole
protocol, how the per-scene rows aggregate into the numbers of the paper's table (`aggregate`) and
which columns that table has, in its order and units (`columns`).

A suite names a protocol on a dataset entry; anything the entry sets differently is recorded in
each row as ``protocol_overrides`` and the report marks those rows as not comparable with the
paper. Changing a protocol's definition changes its `version`, which every row records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from bench.registry import Registry
from datasets_adapters.sampling import Sampling


class SceneResult(NamedTuple):
    """One scored scene as an aggregation sees it: its row (``<metric>.<key>`` values) and raw arrays."""

    scene: str
    values: Mapping[str, Any]
    raw: Mapping[str, np.ndarray]


Aggregate = Callable[[list[SceneResult]], dict[str, float]]


@dataclass(frozen=True)
class Column:
    """A column of the paper's table: its heading, the aggregate it shows, and the factor from the
    aggregate's unit to the table's (100 for percent); `distance` columns also take the setting's
    `distance_scale` (DTU reports millimetres of a dataset delivered in metres)."""

    label: str
    key: str
    scale: float = 1.0
    better: str = "higher"
    distance: bool = False


@dataclass(frozen=True)
class Setting:
    """How one dataset is evaluated under a protocol (one variant of it)."""

    dataset: str
    variant: str
    frames: tuple[int | None, ...]
    sampling: Sampling
    metrics: Mapping[str, Mapping[str, Any]]
    options: Mapping[str, Any] = field(default_factory=dict)
    scenes: str | tuple[str, ...] = "all"
    preprocess: str | None = None  # None: the model's own
    distance_scale: float = 1.0
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.variant}"


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    summary: str
    reproduces: str  # paper, table and the official code it follows
    settings: tuple[Setting, ...]
    aggregate: Aggregate
    columns: tuple[Column, ...]
    notes: str = ""

    def settings_for(self, dataset: str) -> list[Setting]:
        return [s for s in self.settings if s.dataset == dataset]

    def setting(self, dataset: str, variant: str | None = None) -> Setting:
        """The setting of `dataset` (and `variant`, required when the dataset has several)."""
        candidates = self.settings_for(dataset)
        if not candidates:
            datasets = ", ".join(dict.fromkeys(s.dataset for s in self.settings))
            raise ValueError(f"protocol {self.name!r} does not cover dataset {dataset!r}; it covers {datasets}")
        if variant is None:
            if len(candidates) > 1:
                raise ValueError(f"protocol {self.name!r} has several variants for {dataset!r}: say which with `variant:` ({', '.join(s.variant for s in candidates)})")
            return candidates[0]
        for setting in candidates:
            if setting.variant == variant:
                return setting
        raise ValueError(f"protocol {self.name!r} has no variant {variant!r} for {dataset!r}; its variants: {', '.join(s.variant for s in candidates)}")

    def table_row(self, scenes: list[SceneResult], setting: Setting) -> dict[str, float]:
        """The numbers of one table row (column label → value in the table's units)."""
        values = self.aggregate(scenes)
        return {c.label: values[c.key] * c.scale * (setting.distance_scale if c.distance else 1.0) for c in self.columns}


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def register_protocol(protocol: Protocol) -> Protocol:
    PROTOCOLS.register(protocol.name, protocol, help=protocol.summary)
    return protocol
