"""Microsoft RGB-D 7-Scenes in its distributed layout.

    <root>/<scene>/TestSplit.txt, TrainSplit.txt     lines "sequenceN"
    <root>/<scene>/seq-NN/frame-XXXXXX.color.png      640×480 RGB
                          frame-XXXXXX.depth.png      raw Kinect depth, uint16 mm, 65535 = invalid
                          frame-XXXXXX.depth.proj.png the depth re-projected into the colour camera
                          frame-XXXXXX.pose.txt       4×4 camera-to-world

Raw depth is not registered to the colour image, so evaluations (π³, CUT3R, Spann3R) use the
re-projected depth with fx = fy = 525, c = (320, 240); the raw depth's own intrinsics are 585.
Depth outside [`min_depth`, `max_depth`] metres is made invalid (the published `pi3-mv-recon`
rule is 0.001 and 10; by default only 65535 is invalid).
A scene of this adapter is one sequence, named "<scene>/seq-NN". Keyframe protocols are frame
sampling: sparse = stride 200, dense = stride 40 (π³); the AVGGT setting takes up to all 1000 frames.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from datasets_adapters.base import DATASETS, DatasetError, ScannedAdapter, SceneInventory
from datasets_adapters.cameras import is_finite_pose, w2c_from_c2w
from datasets_adapters.io import image_size, read_matrix, read_rgb, read_uint16_png, require_dir, stack_frames, wxh
from datasets_adapters.sequence import Sequence

IMAGE_HW = (480, 640)
INVALID_DEPTH = 65535
DEPTH_FILES = {"proj": ("depth.proj.png", 525.0), "raw": ("depth.png", 585.0)}  # suffix, focal length
SPLITS = {"test": ("TestSplit.txt",), "train": ("TrainSplit.txt",), "all": ("TrainSplit.txt", "TestSplit.txt")}
_FRAME = re.compile(r"^frame-(\d{6})\.color\.png$")
_SPLIT_LINE = re.compile(r"^sequence(\d+)$")


@DATASETS.register("7scenes")
class SevenScenesAdapter(ScannedAdapter):
    """Microsoft 7-Scenes (seq-NN folders, TestSplit.txt), depth in metres, projected or raw depth."""

    name = "7scenes"
    root_variable = "SEVEN_SCENES_ROOT"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        split: str = "test",
        depth: str = "proj",
        min_depth: float | None = None,
        max_depth: float | None = None,
        min_frames: int = 1,
        workers: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DatasetError(f"7scenes option split={split!r}: choose one of {', '.join(SPLITS)}")
        if depth not in DEPTH_FILES:
            raise DatasetError(f"7scenes option depth={depth!r}: choose 'proj' (re-projected, f=525) or 'raw' (f=585)")
        super().__init__(root)
        self.split, self.min_frames, self.workers = split, min_frames, workers
        self.depth_range = (0.0 if min_depth is None else min_depth, np.inf if max_depth is None else max_depth)
        self.depth_suffix, focal = DEPTH_FILES[depth]
        self.intrinsics = np.array([[focal, 0.0, 320.0], [0.0, focal, 240.0], [0.0, 0.0, 1.0]])

    def scenes(self) -> list[str]:
        scene_dirs = sorted(d for d in self.root.iterdir() if d.is_dir() and any((d / f).is_file() for f in SPLITS["all"]))
        if not scene_dirs:
            raise DatasetError(
                f"{self.root}: no 7-Scenes scene folders (expected <root>/<scene>/TestSplit.txt and seq-NN/ folders)"
            )
        names = [f"{d.name}/seq-{n:02d}" for d in scene_dirs for n in self._split_sequences(d)]
        return self._long_enough(names, self.min_frames)

    def _split_sequences(self, scene_dir: Path) -> list[int]:
        numbers: list[int] = []
        for filename in SPLITS[self.split]:
            path = scene_dir / filename
            if not path.is_file():
                raise DatasetError(f"{path}: missing file (the {self.split} split of {scene_dir.name})")
            for line in path.read_text().split():
                match = _SPLIT_LINE.match(line)
                if match is None:
                    raise DatasetError(f"{path}: malformed line {line!r}, expected 'sequenceN'")
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def scan(self, scene: str) -> SceneInventory:
        seq_dir = self.root / scene
        if not seq_dir.is_dir():
            return SceneInventory(scene=scene, frames=[], missing=[f"{seq_dir} (folder; unzip {Path(scene).name}.zip there)"])
        ids = sorted(m.group(1) for m in map(_FRAME.match, (p.name for p in seq_dir.iterdir())) if m)
        if not ids:
            return SceneInventory(scene=scene, frames=[], missing=[f"{seq_dir}/frame-XXXXXX.color.png (no frames)"])
        inv = SceneInventory(scene=scene, frames=[])
        for frame in ids:
            depth, pose = self._path(scene, frame, self.depth_suffix), self._path(scene, frame, "pose.txt")
            absent = [str(p) for p in (depth, pose) if not p.is_file()]
            if absent:
                inv.missing.extend(absent)
            elif is_finite_pose(read_matrix(pose, (4, 4))):
                inv.frames.append(frame)
            else:
                inv.invalid.append(frame)
        return inv

    def _path(self, scene: str, frame: str, suffix: str) -> Path:
        return self.root / scene / f"frame-{frame}.{suffix}"

    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        require_dir(self.root / scene, "a 7-Scenes sequence")

        def read(i: int) -> tuple[np.ndarray, ...]:
            color = self._path(scene, frame_ids[i], "color.png")
            depth_path = self._path(scene, frame_ids[i], self.depth_suffix)
            pose_path = self._path(scene, frame_ids[i], "pose.txt")
            h, w = image_size(color)
            if (h, w) != IMAGE_HW:
                raise DatasetError(f"{color}: image is {wxh((h, w))}, 7-Scenes frames are 640x480 (the fixed intrinsics describe that size)")
            raw = read_uint16_png(depth_path)
            if raw.shape != IMAGE_HW:
                raise DatasetError(f"{depth_path}: depth is {wxh(raw.shape)}, the colour image {color.name} is 640x480")
            depth = np.where(raw == INVALID_DEPTH, 0, raw).astype(np.float32) / 1000.0
            depth[(depth < self.depth_range[0]) | (depth > self.depth_range[1])] = 0.0
            w2c = w2c_from_c2w(read_matrix(pose_path, (4, 4)), pose_path)
            return read_rgb(color), depth, w2c

        images, depth, extrinsics = stack_frames([f"{self.root / scene}/frame-{f}" for f in frame_ids], read, self.workers)
        return Sequence(
            dataset=self.name,
            scene=scene,
            images=images,
            extrinsics=extrinsics,
            intrinsics=np.repeat(self.intrinsics[None], len(frame_ids), axis=0),
            depth=depth,
            valid=depth > 0,
            frame_ids=list(frame_ids),
        )
