"""Neural RGB-D synthetic scenes (Azinović et al.) as unzipped from neural_rgbd_data.zip.

    <root>/<scene>/images/img<i>.png            640×480 colour, i = 0, 1, … (not zero-padded)
                   depth/depth<i>.png           uint16 millimetres, 0 = invalid: the rendered ground truth
                   depth_filtered/, depth_with_noise/   simulated sensor depth: NOT ground truth, never read
                   focal.txt                    one number: fx = fy in pixels
                   poses.txt                    ground truth: 4 lines per frame, a 4×4 camera-to-world
                                                in OpenGL axes (x right, y up, z backward)
                   trainval_poses.txt           the paper's optimised poses: NOT ground truth, never read

Scenes are the folders that hold poses.txt (breakfast_room, complete_kitchen, green_room,
grey_white_room, kitchen, morning_apartment, staircase, thin_geometry, whiteroom). Frame i needs
image i, depth i and pose i (lines 4i … 4i+3, blank lines between matrices tolerated); frames
are numbered from 0 in numeric order (img2 before img10) and their ids are those numbers. A
pose with a non-finite entry is skipped and counted. Poses beyond the last image are ignored
and noted; a missing image, depth map or pose is reported.

Poses go to OpenCV axes by negating the camera's y and z axes (rotation columns 1 and 2), then
are inverted to world-to-camera. K has fx = fy = focal and c = (320, 240), the numbers π³'s
evaluation uses; a Blender render would put the centre at (319.5, 239.5) with integer pixel
centres, which is unverified for these scenes, so the published numbers are kept. Images and
depth must be 640×480 (π³ asserts it, and c describes that size). Depth outside [`min_depth`,
`max_depth`] metres is made invalid (π³'s rule, set by `pi3-mv-recon`, is 0.001 and 10).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from datasets_adapters.base import DATASETS, DatasetError, ScannedAdapter, SceneInventory
from datasets_adapters.cameras import is_finite_pose, w2c_from_c2w
from datasets_adapters.io import image_size, read_rgb, read_text, read_uint16_png, stack_frames, wxh
from datasets_adapters.sequence import Sequence

IMAGE_HW = (480, 640)
PRINCIPAL_POINT = (320.0, 240.0)  # π³'s numbers (see the module docstring)
DEPTH_SCALE = 1000.0  # depth PNG units per metre
_OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])  # right-multiplied: flips the camera's y and z axes


def _indices(folder: Path, prefix: str) -> set[int]:
    """The numbers i of the files <prefix><i>.png in `folder`."""
    pattern = re.compile(rf"^{prefix}(\d+)\.png$")
    return {int(m.group(1)) for m in map(pattern.match, (e.name for e in os.scandir(folder))) if m}


def read_poses(path: Path) -> tuple[np.ndarray, list[int]]:
    """poses.txt as (N, 4, 4) camera-to-world matrices (OpenGL axes, non-finite entries kept) and
    the line number where each matrix starts."""
    text = read_text(path, "NRGBD ground-truth poses")
    rows, numbers = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if len(words) != 4:
            raise DatasetError(f"{path}: line {number}: expected 4 numbers (a row of a 4x4 camera-to-world), found {len(words)}: {line.strip()!r}")
        try:
            rows.append([float(w) for w in words])
            numbers.append(number)
        except ValueError:
            raise DatasetError(f"{path}: line {number}: not numbers: {line.strip()!r}") from None
    if len(rows) % 4:
        raise DatasetError(f"{path}: {len(rows)} matrix rows, not a multiple of 4 (each frame's pose is 4 rows of 4 numbers)")
    return np.array(rows, dtype=np.float64).reshape(-1, 4, 4), numbers[::4]


def read_focal(path: Path) -> float:
    """focal.txt: one positive number, the focal length in pixels (fx = fy)."""
    words = read_text(path, "NRGBD focal length").split()
    try:
        focal = float(words[0]) if len(words) == 1 else None
    except ValueError:
        focal = None
    if focal is None or not np.isfinite(focal) or focal <= 0:
        raise DatasetError(f"{path}: expected one positive number (the focal length in pixels), found {' '.join(words)[:60]!r}")
    return focal


def w2c_from_opengl_c2w(c2w: np.ndarray, source: Path | str) -> np.ndarray:
    """OpenCV world-to-camera [R|t] (3×4) of an OpenGL camera-to-world (camera y up, z backward)."""
    return w2c_from_c2w(c2w @ _OPENGL_TO_OPENCV, source)


@DATASETS.register("nrgbd")
class NeuralRgbdAdapter(ScannedAdapter):
    """Neural RGB-D synthetic scenes: GT depth (mm → m), OpenGL GT poses converted, K from focal.txt."""

    name = "nrgbd"
    root_variable = "NRGBD_ROOT"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        min_depth: float | None = None,
        max_depth: float | None = None,
        min_frames: int = 1,
        workers: int | None = None,
    ) -> None:
        super().__init__(root)
        self.min_frames, self.workers = min_frames, workers
        self.depth_range = (0.0 if min_depth is None else min_depth, np.inf if max_depth is None else max_depth)
        self._poses: dict[str, tuple[np.ndarray, list[int]]] = {}
        self._focal: dict[str, float] = {}

    def scenes(self) -> list[str]:
        names = sorted(d.name for d in self.root.iterdir() if d.is_dir() and (d / "poses.txt").is_file())
        if not names:
            raise DatasetError(f"{self.root}: no NRGBD scene folders (expected <root>/<scene>/poses.txt, focal.txt, images/, depth/)")
        return self._long_enough(names, self.min_frames)

    def scan(self, scene: str) -> SceneInventory:
        folder = self.root / scene
        absent = [str(folder / f) for f in ("poses.txt", "focal.txt") if not (folder / f).is_file()]
        absent += [f"{folder / d} (folder)" for d in ("images", "depth") if not (folder / d).is_dir()]
        if absent:
            return SceneInventory(scene=scene, frames=[], missing=absent)
        self._focal[scene] = read_focal(folder / "focal.txt")
        self._poses[scene] = read_poses(folder / "poses.txt")
        poses = self._poses[scene][0]
        images, depths = _indices(folder / "images", "img"), _indices(folder / "depth", "depth")
        count = max(images | depths, default=-1) + 1
        inv = SceneInventory(scene=scene, frames=[])
        if count == 0:
            inv.missing.append(f"{folder}/images/img<i>.png (no frames)")
        for i in range(count):
            lacking = [str(p) for p, have in ((self._image(scene, i), images), (self._depth(scene, i), depths)) if i not in have]
            if i >= len(poses):
                lacking.append(f"{folder / 'poses.txt'}: pose {i} (the file holds {len(poses)} poses for {count} frames)")
            if lacking:
                inv.missing.extend(lacking)
            elif is_finite_pose(poses[i]):
                inv.frames.append(str(i))
            else:
                inv.invalid.append(str(i))
        if len(poses) > count:
            self._notes.append(f"{scene}: poses.txt holds {len(poses)} poses for {count} frames; the last {len(poses) - count} are ignored")
        return inv

    def _image(self, scene: str, i: int) -> Path:
        return self.root / scene / "images" / f"img{i}.png"

    def _depth(self, scene: str, i: int) -> Path:
        return self.root / scene / "depth" / f"depth{i}.png"

    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        usable = set(self.frame_ids(scene))  # scans the scene; missing files or no usable frames fail here
        unknown = [f for f in frame_ids if f not in usable]
        if unknown:
            raise DatasetError(f"nrgbd/{scene}: {unknown[0]!r} is not a usable frame (an index with an image, a depth map and a finite pose)")
        (poses, first_lines), focal = self._poses[scene], self._focal[scene]
        k = np.array([[focal, 0.0, PRINCIPAL_POINT[0]], [0.0, focal, PRINCIPAL_POINT[1]], [0.0, 0.0, 1.0]])
        poses_path = self.root / scene / "poses.txt"

        def read(j: int) -> tuple[np.ndarray, ...]:
            i = int(frame_ids[j])
            image_path, depth_path = self._image(scene, i), self._depth(scene, i)
            hw = image_size(image_path)
            if hw != IMAGE_HW:
                raise DatasetError(f"{image_path}: image is {wxh(hw)}, NRGBD frames are 640x480 (π³ asserts it; c = (320, 240) describes that size)")
            raw = read_uint16_png(depth_path)
            if raw.shape != IMAGE_HW:
                raise DatasetError(f"{depth_path}: depth is {wxh(raw.shape)}, NRGBD frames are 640x480 (π³ asserts it)")
            depth = raw.astype(np.float32) / np.float32(DEPTH_SCALE)
            depth[(depth < self.depth_range[0]) | (depth > self.depth_range[1])] = 0.0
            return read_rgb(image_path), depth, w2c_from_opengl_c2w(poses[i], f"{poses_path}: line {first_lines[i]} (pose {i})")

        images, depth, extrinsics = stack_frames([str(self._image(scene, int(f))) for f in frame_ids], read, self.workers)
        return Sequence(
            dataset=self.name,
            scene=scene,
            images=images,
            extrinsics=extrinsics,
            intrinsics=np.repeat(k[None], len(frame_ids), axis=0),
            depth=depth,
            valid=depth > 0,
            frame_ids=list(frame_ids),
        )
