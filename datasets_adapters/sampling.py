"""Frame sampling shared by every adapter, seeded and recorded in each result row."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SAMPLING_KINDS = ("first-n", "stride", "uniform", "random", "stream")
STREAM_ORDERS = ("listed", "sorted")


@dataclass(frozen=True)
class Sampling:
    """How `num_frames` frames are taken from a sequence of `n` frames.

    - ``first-n``: frames 0 .. num_frames-1
    - ``stride``: frames start, start+stride, ... (num_frames of them, or all that fit)
    - ``uniform``: num_frames indices spread evenly over the whole sequence
    - ``random``: num_frames distinct indices drawn with `seed` by a generator of the sequence's
      own, returned in temporal order (this project's rule)
    - ``stream``: the published rule of VGGT and π³: one numpy legacy stream seeded once with
      `seed` walks the dataset's scenes (in the adapter's order, or sorted by name with `order:
      sorted`) and takes ``RandomState.choice(n, num_frames, replace=False)`` for each; the frames
      of a scene therefore depend on every scene before it, and are used in the drawn order
      (`stream_map`)
    """

    kind: str = "uniform"
    stride: int = 1
    start: int = 0
    seed: int = 0
    order: str = "listed"

    def __post_init__(self) -> None:
        if self.kind not in SAMPLING_KINDS:
            raise ValueError(f"sampling kind {self.kind!r} is not one of {', '.join(SAMPLING_KINDS)}")
        if self.stride < 1:
            raise ValueError(f"sampling stride must be >= 1, got {self.stride}")
        if self.start < 0:
            raise ValueError(f"sampling start must be >= 0, got {self.start}")
        if self.order not in STREAM_ORDERS:
            raise ValueError(f"sampling order {self.order!r} is not one of {', '.join(STREAM_ORDERS)}")
        if self.order != "listed" and self.kind != "stream":
            raise ValueError("sampling order only applies to kind stream")

    def as_dict(self) -> dict[str, Any]:
        """The fields that define the sampling (`order` only where it applies, so rows and cell
        identities of the other kinds read as before it existed)."""
        fields = asdict(self)
        if self.kind != "stream":
            del fields["order"]
        return fields

    def as_row(self) -> dict[str, Any]:
        return {f"sampling_{k}": v for k, v in self.as_dict().items()}

    def walk(self, scenes: list[str]) -> list[str]:
        """The scenes in the order a stream draws for them."""
        return sorted(scenes) if self.order == "sorted" else list(scenes)

    def select(self, n: int, num_frames: int | None) -> np.ndarray:
        """Indices into a sequence of `n` frames; `num_frames=None` means every frame the rule gives."""
        if self.kind == "stream":
            raise ValueError("stream sampling draws for a whole dataset at once: use stream_map")
        if n <= 0:
            raise ValueError("cannot sample frames from an empty sequence")
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"frame count must be >= 1, got {num_frames}")
        if self.kind == "stride":
            idx = np.arange(self.start, n, self.stride)
            if num_frames is not None:
                if len(idx) < num_frames:
                    raise ValueError(
                        f"stride {self.stride} from frame {self.start} gives {len(idx)} of {n} frames, fewer than the {num_frames} asked for"
                    )
                idx = idx[:num_frames]
            return idx
        k = n if num_frames is None else num_frames
        if k > n:
            raise ValueError(f"asked for {k} frames but the sequence has only {n}")
        if self.kind == "first-n":
            return np.arange(k)
        if self.kind == "uniform":
            return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64)) if k > 1 else np.array([0])
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(n, size=k, replace=False))


def stream_map(frame_counts: list[tuple[str, int]], num_frames: int, seed: int) -> dict[str, np.ndarray]:
    """Frames drawn for each (scene, frame count) in walk order from one legacy numpy stream seeded
    with `seed`: the first `num_frames` of a permutation of each scene's frames, unsorted (the
    published seq-id maps of VGGT and π³ are made this way). A scene with fewer frames than
    `num_frames` is an error: the published walks filter such scenes out before drawing."""
    stream = np.random.RandomState(seed)
    drawn = {}
    for scene, count in frame_counts:
        if count < num_frames:
            raise ValueError(f"{scene} has {count} frames, fewer than the {num_frames} each scene of the stream draws")
        drawn[scene] = stream.choice(count, num_frames, replace=False)
    return drawn
