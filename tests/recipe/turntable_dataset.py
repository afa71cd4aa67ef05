"""A new dataset adapter: "turntable" scenes, one folder each, in their own small format.

    <root>/<scene>/cameras.txt     one line per frame: 12 numbers, the 3×4 world-to-camera (OpenCV)
    <root>/<scene>/K.txt           the 3×3 pixel intrinsics of every frame
    <root>/<scene>/<i>.png         the frames, i = 0, 1, … in line order

Its options are its signature; it reads files through datasets_adapters.io so that every bad
file is one error naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets_adapters.base import DATASETS, DatasetError, ScannedAdapter, SceneInventory
from datasets_adapters.io import read_matrix, read_rgb, stack_frames
from datasets_adapters.sequence import Sequence


@DATASETS.register("turntable")
class TurntableAdapter(ScannedAdapter):
    """Turntable scenes: a camera file, one K, the frames in line order (a recipe example)."""

    name = "turntable"
    root_variable = "TURNTABLE_ROOT"

    def __init__(self, root: str | Path | None = None, *, min_frames: int = 1, workers: int | None = None) -> None:
        super().__init__(root)
        self.min_frames, self.workers = min_frames, workers

    def scenes(self) -> list[str]:
        names = sorted(d.name for d in self.root.iterdir() if (d / "cameras.txt").is_file())
        if not names:
            raise DatasetError(f"{self.root}: no turntable scenes (expected <root>/<scene>/cameras.txt)")
        return self._long_enough(names, self.min_frames)

    def _cameras(self, scene: str) -> np.ndarray:
        path = self.root / scene / "cameras.txt"
        count = sum(1 for line in path.read_text().splitlines() if line.strip())
        return read_matrix(path, (count, 12)).reshape(-1, 3, 4)

    def scan(self, scene: str) -> SceneInventory:
        cameras = self._cameras(scene)
        missing = [str(self.root / scene / f"{i}.png") for i in range(len(cameras)) if not (self.root / scene / f"{i}.png").is_file()]
        return SceneInventory(scene=scene, frames=[str(i) for i in range(len(cameras))] if not missing else [], missing=missing)

    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        cameras, k = self._cameras(scene), read_matrix(self.root / scene / "K.txt", (3, 3))
        paths = [self.root / scene / f"{i}.png" for i in frame_ids]
        (images,) = stack_frames([str(p) for p in paths], lambda i: (read_rgb(paths[i]),), self.workers)
        rows = [int(i) for i in frame_ids]
        return Sequence(self.name, scene, images, cameras[rows], np.repeat(k[None], len(rows), axis=0), frame_ids=list(frame_ids))
