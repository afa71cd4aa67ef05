"""ScanNet v2 as exported from the .sens files (the ScanNet SensReader layout).

    <root>/sceneXXXX_YY/color/<i>.jpg          colour, usually 1296×968
                        depth/<i>.png          uint16 millimetres at 640×480, 0 = invalid
                        pose/<i>.txt           4×4 camera-to-world; -inf / NaN where tracking failed
                        intrinsic/intrinsic_{color,depth}.txt   4×4

Frame indices are not zero-padded and are sorted numerically. Frames with a non-finite pose are
skipped and counted. Colour is resized to the depth size so that depth, images and K describe the
same pixels; K is intrinsic_depth (common evaluation practice) or, with `intrinsics: color`,
intrinsic_color scaled to that size.

Protocols: the pose subset of MonST3R/CUT3R/π³ (`pi3-relpose-distance`) is scenes
scene0707_00..scene0806_00, raw frames 0, 3, …, 267 whether or not their pose is valid
(`invalid_poses: keep`: such a frame keeps its image and depth and gets NaN extrinsics, and the
trajectory metric then skips the scene, as the published evaluation does when its GT file fails
to load); by default (`drop`) invalid frames are left out before sampling. FastVGGT's ScanNet-50
is `spread_scenes: 50` (scenes at even stride through the sorted list); `min_frames` then leaves
out scenes too short for the largest frame count asked for.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from datasets_adapters.base import DATASETS, DatasetError, ScannedAdapter, SceneInventory
from datasets_adapters.cameras import is_finite_pose, scale_intrinsics, w2c_from_c2w
from datasets_adapters.io import image_size, read_matrix, read_rgb, read_uint16_png, require_dir, stack_frames
from datasets_adapters.sequence import Sequence

FOLDERS = ("color", "depth", "pose", "intrinsic")
INTRINSICS = ("depth", "color")
INVALID_POSES = ("drop", "keep")
_SCENE = re.compile(r"^scene\d{4}_\d{2}$")


def _numeric_stems(folder: Path, suffix: str) -> set[int]:
    names = (entry.name for entry in os.scandir(folder))
    return {int(n[: -len(suffix)]) for n in names if n.endswith(suffix) and n[: -len(suffix)].isdigit()}


@DATASETS.register("scannet")
class ScanNetAdapter(ScannedAdapter):
    """ScanNet v2 exported scenes (color/, depth/, pose/, intrinsic/), depth in metres at depth resolution."""

    name = "scannet"
    root_variable = "SCANNET_ROOT"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        intrinsics: str = "depth",
        first_scene: str | None = None,
        last_scene: str | None = None,
        spread_scenes: int | None = None,
        min_frames: int = 1,
        invalid_poses: str = "drop",
        workers: int | None = None,
    ) -> None:
        if intrinsics not in INTRINSICS:
            raise DatasetError(f"scannet option intrinsics={intrinsics!r}: choose 'depth' or 'color'")
        if invalid_poses not in INVALID_POSES:
            raise DatasetError(f"scannet option invalid_poses={invalid_poses!r}: choose 'drop' (leave such frames out) or 'keep' (NaN extrinsics)")
        if spread_scenes is not None and spread_scenes < 1:
            raise DatasetError(f"scannet option spread_scenes={spread_scenes}: must be >= 1")
        super().__init__(root)
        self.intrinsics_source, self.min_frames, self.workers = intrinsics, min_frames, workers
        self.keep_invalid = invalid_poses == "keep"
        self.first_scene, self.last_scene, self.spread_scenes = first_scene, last_scene, spread_scenes

    def scenes(self) -> list[str]:
        names = sorted(d.name for d in self.root.iterdir() if d.is_dir() and _SCENE.match(d.name))
        if not names:
            raise DatasetError(f"{self.root}: no ScanNet scene folders (expected <root>/sceneXXXX_YY/{{{','.join(FOLDERS)}}}/)")
        names = [n for n in names if (self.first_scene or n) <= n <= (self.last_scene or n)]
        if self.spread_scenes is not None and len(names) > self.spread_scenes:
            names = names[:: max(1, len(names) // self.spread_scenes)][: self.spread_scenes]
        if not names:
            raise DatasetError(f"{self.root}: no ScanNet scenes between {self.first_scene} and {self.last_scene}")
        return self._long_enough(names, self.min_frames)

    def scan(self, scene: str) -> SceneInventory:
        scene_dir = self.root / scene
        absent = [f"{scene_dir / f} (folder)" for f in FOLDERS if not (scene_dir / f).is_dir()]
        k_file = self._intrinsics_file(scene)
        if not absent and not k_file.is_file():
            absent.append(str(k_file))
        if absent:
            return SceneInventory(scene=scene, frames=[], missing=absent)
        colors = _numeric_stems(scene_dir / "color", ".jpg")
        companions = {"depth": (_numeric_stems(scene_dir / "depth", ".png"), "png"), "pose": (_numeric_stems(scene_dir / "pose", ".txt"), "txt")}
        inv = SceneInventory(scene=scene, frames=[])
        for i in sorted(colors):
            lacking = [str(scene_dir / f"{folder}/{i}.{ext}") for folder, (have, ext) in companions.items() if i not in have]
            if lacking:
                inv.missing.extend(lacking)
            elif is_finite_pose(read_matrix(scene_dir / f"pose/{i}.txt", (4, 4))):
                inv.frames.append(str(i))
            else:
                inv.invalid.append(str(i))
                if self.keep_invalid:
                    inv.frames.append(str(i))
        if not colors:
            inv.missing.append(f"{scene_dir}/color/<i>.jpg (no frames)")
        return inv

    def _intrinsics_file(self, scene: str) -> Path:
        return self.root / scene / "intrinsic" / f"intrinsic_{self.intrinsics_source}.txt"

    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        scene_dir = require_dir(self.root / scene, "a ScanNet scene")
        k_native = read_matrix(self._intrinsics_file(scene), (4, 4))[:3, :3]

        def read(i: int) -> tuple[np.ndarray, ...]:
            color_path = scene_dir / f"color/{frame_ids[i]}.jpg"
            pose_path = scene_dir / f"pose/{frame_ids[i]}.txt"
            raw = read_uint16_png(scene_dir / f"depth/{frame_ids[i]}.png")
            depth_hw = raw.shape
            k = k_native if self.intrinsics_source == "depth" else scale_intrinsics(k_native, image_size(color_path), depth_hw)
            c2w = read_matrix(pose_path, (4, 4))
            w2c = w2c_from_c2w(c2w, pose_path) if is_finite_pose(c2w) else np.full((3, 4), np.nan)  # kept invalid: NaN
            return read_rgb(color_path, depth_hw), raw.astype(np.float32) / 1000.0, w2c, k

        images, depth, extrinsics, intrinsics = stack_frames([f"{scene_dir}/depth/{f}.png" for f in frame_ids], read, self.workers)
        return Sequence(
            dataset=self.name,
            scene=scene,
            images=images,
            extrinsics=extrinsics,
            intrinsics=intrinsics,
            depth=depth,
            valid=depth > 0,
            frame_ids=list(frame_ids),
        )
