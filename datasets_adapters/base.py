"""The adapter interface: list a dataset's scenes, then load chosen frames of one as a `Sequence`.

Adapters read native formats and convert them to the harness conventions; they know nothing of
models. Sampling is decided here, once, so every adapter samples the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from bench.registry import Registry
from datasets_adapters.sampling import Sampling
from datasets_adapters.sequence import Sequence


class DatasetError(ValueError):
    """Data on disk that cannot be read as the dataset says it should be; the message names the file."""


class DatasetAdapter(ABC):
    name: str = ""

    def __init__(self, root: str | Path | None = None, **options) -> None:
        self.root = Path(root) if root is not None else None
        self.options = options

    @abstractmethod
    def scenes(self) -> list[str]:
        """Scene (sequence) names this adapter serves, after the protocol's filters."""

    @abstractmethod
    def frame_ids(self, scene: str) -> list[str]:
        """All usable frames of `scene` in temporal order (invalid frames already dropped)."""

    @abstractmethod
    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        """Read exactly these frames of `scene`."""

    def load(self, scene: str, num_frames: int | None, sampling: Sampling) -> Sequence:
        ids = self.frame_ids(scene)
        try:
            idx = sampling.select(len(ids), num_frames)
        except ValueError as err:
            raise DatasetError(f"{self.name}/{scene}: {err}") from None
        seq = self.load_frames(scene, [ids[i] for i in idx])
        seq.sampling = {**sampling.as_row(), "frames_available": len(ids)}
        return seq


DATASETS: Registry = Registry("dataset")
