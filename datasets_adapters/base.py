"""The adapter interface: list a dataset's scenes, then load chosen frames of one as a `Sequence`.

Adapters read native formats and convert them to the harness conventions; they know nothing of
models. Sampling is decided here, once, so every adapter samples the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from bench.registry import OPTIONS_AFTER, OptionError, Registry, check_options
import numpy as np

from datasets_adapters.sampling import Sampling, stream_map
from datasets_adapters.sequence import Sequence


class DatasetError(ValueError):
    """Data on disk that cannot be read as the dataset says it should be; the message names the file."""


@dataclass
class SceneInventory:
    """What is on disk for one scene: the usable frames, and what `check-data` reports about the rest."""

    scene: str
    frames: list[str]  # usable frame ids in temporal order
    invalid: list[str] = field(default_factory=list)  # frames dropped because their pose is -inf / NaN
    missing: list[str] = field(default_factory=list)  # paths of files or folders the layout requires


class DatasetAdapter(ABC):
    name: str = ""

    def __init__(self, root: str | Path | None = None) -> None:
        """Subclasses declare their options as keyword arguments of their own __init__ (the one
        signature suites and check-data validate against) and keep what they use."""
        self.root = Path(root) if root is not None else None
        self._streams: dict[tuple[Sampling, int], dict[str, np.ndarray]] = {}

    @abstractmethod
    def scenes(self) -> list[str]:
        """Scene (sequence) names this adapter serves, after the protocol's filters."""

    @abstractmethod
    def frame_ids(self, scene: str) -> list[str]:
        """All usable frames of `scene` in temporal order (invalid frames already dropped)."""

    @abstractmethod
    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        """Read exactly these frames of `scene`."""

    def inventory(self, scene: str) -> SceneInventory:
        """What is on disk for `scene`; adapters that can find invalid poses or missing files override it."""
        return SceneInventory(scene=scene, frames=self.frame_ids(scene))

    def notes(self) -> list[str]:
        """Lines for `check-data` about what the protocol filters dropped (e.g. short sequences)."""
        return []

    def stream(self, sampling: Sampling, num_frames: int) -> dict[str, np.ndarray]:
        """The frames a `stream` sampling draws for every scene this adapter serves (made once)."""
        key = (sampling, num_frames)
        if key not in self._streams:
            walk = sampling.walk(self.scenes())
            try:
                self._streams[key] = stream_map([(scene, len(self.frame_ids(scene))) for scene in walk], num_frames, sampling.seed)
            except ValueError as err:
                raise DatasetError(f"{self.name}: {err}; leave such scenes out with the adapter's min_frames") from None
        return self._streams[key]

    def select(self, scene: str, num_frames: int | None, sampling: Sampling) -> np.ndarray:
        """Indices into `frame_ids(scene)` of the frames `sampling` takes, in the order they are used."""
        if sampling.kind == "stream":
            if num_frames is None:
                raise DatasetError(f"{self.name}/{scene}: stream sampling draws a fixed number of frames per scene; give a frame count, not all")
            drawn = self.stream(sampling, num_frames)
            if scene not in drawn:
                raise DatasetError(f"{self.name}/{scene}: not one of the scenes the stream walks (the adapter's scenes after its filters)")
            return drawn[scene]
        try:
            return sampling.select(len(self.frame_ids(scene)), num_frames)
        except ValueError as err:
            raise DatasetError(f"{self.name}/{scene}: {err}") from None

    def load(self, scene: str, num_frames: int | None, sampling: Sampling) -> Sequence:
        ids = self.frame_ids(scene)
        idx = self.select(scene, num_frames, sampling)
        seq = self.load_frames(scene, [ids[i] for i in idx])
        seq.sampling = {
            **sampling.as_row(),
            "frames_available": len(ids),
            "frames_skipped": len(self.inventory(scene).invalid),
        }
        return seq


class ScannedAdapter(DatasetAdapter):
    """An adapter whose frame list comes from scanning the scene on disk once (cached per scene).

    Subclasses implement `scan`; frames with invalid poses are dropped there and counted, and a
    scene with missing files fails with one error listing them.
    """

    root_variable: str = "DATA_ROOT"  # the environment variable the shipped suites read the root from

    def __init__(self, root: str | Path | None = None) -> None:
        super().__init__(root)
        if self.root is None:
            raise DatasetError(f"dataset {self.name!r} needs a root folder (suite field `root:`, e.g. ${{{self.root_variable}}}, or ROOT of check-data)")
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: missing folder (the {self.name} root)")
        self._inventories: dict[str, SceneInventory] = {}
        self._notes: list[str] = []

    def notes(self) -> list[str]:
        return list(self._notes)

    def _long_enough(self, scenes: list[str], min_frames: int) -> list[str]:
        """`scenes` without those that have fewer than `min_frames` usable frames (noted for check-data).

        Scenes with missing files stay, so that running or checking them reports the missing files.
        """
        if min_frames <= 1:
            return scenes
        kept = [s for s in scenes if self.inventory(s).missing or len(self.inventory(s).frames) >= min_frames]
        if len(kept) < len(scenes):
            short = [s for s in scenes if s not in kept]
            note = f"{len(short)} scene(s) with fewer than min_frames={min_frames} usable frames left out: {', '.join(short)}"
            if note not in self._notes:
                self._notes.append(note)
        return kept

    @abstractmethod
    def scan(self, scene: str) -> SceneInventory:
        """Walk `scene` on disk: usable frames, frames with invalid poses, missing files."""

    def inventory(self, scene: str) -> SceneInventory:
        if scene not in self._inventories:
            self._inventories[scene] = self.scan(scene)
        return self._inventories[scene]

    def frame_ids(self, scene: str) -> list[str]:
        inv = self.inventory(scene)
        if inv.missing:
            more = f" (and {len(inv.missing) - 1} more)" if len(inv.missing) > 1 else ""
            raise DatasetError(f"{inv.missing[0]}: missing{more}; run `avggt-bench check-data {self.name} {self.root}` for the full list")
        if not inv.frames:
            raise DatasetError(f"{self.name}/{scene}: no usable frames ({len(inv.invalid)} with invalid poses)")
        return inv.frames


DATASETS: Registry = Registry("dataset")


def create_adapter(name: str, root: str | Path | None = None, **options) -> DatasetAdapter:
    """The registered adapter `name` for `root`; an option its constructor does not take is a clear error."""
    cls = DATASETS.get(name)
    try:
        check_options(cls, options, leading=OPTIONS_AFTER["datasets"])
    except OptionError as err:
        raise DatasetError(f"dataset {name!r}: {err}") from None
    return cls(root=root, **options)
