"""DTU multi-view stereo, as MVSNet's test set with Spann3R's rendered depths and masks.

    <root>/scanN/images/00000000.jpg          the 49 views, 1600×1200
                 cams/00000000_cam.txt        MVSNet camera: "extrinsic", 4×4 world-to-camera (mm),
                                              "intrinsic", 3×3 K, then the depth-range line
                                              DEPTH_MIN DEPTH_INTERVAL [DEPTH_NUM [DEPTH_MAX]] (mm)
                 depths/00000000.npy          float32 z-depth in mm at image size, 0 = none
                 binary_masks/00000000.png    8-bit single channel, 255 = evaluate
                 pair.txt                     MVSNet's view pairs (not used)

Scenes are the `scanN` folders in scan-number order; frames are the 8-digit stems of the images
in numeric order. A cam.txt is read by word index (29, 30 or 31 words: the depth-range line has 2,
3 or 4 numbers); its depth range is kept on `DtuCamera` though no protocol uses it.

Units: DTU is in millimetres; like every metric dataset here it is delivered in metres
(translation / 1000, depth / 1000, K unchanged). Protocols report DTU in millimetres
(`pi3-mv-recon` scales its distance columns by 1000, and its ICP threshold of 100 mm is 0.1).

Ground truth as the published evaluations take it (`mask`, default "eroded"): depth × mask, the
mask thresholded at 0.5 of 0..1 (value > 127.5), resized by nearest neighbour (OpenCV's
INTER_NEAREST, as the published code resizes) to the depth's size if it differs, then eroded once,
at that native size, by a 10×10 square with OpenCV's conventions (anchor at (5, 5): offsets
−5…+4; pixels outside the image do not erode). "plain" skips the erosion, "none" keeps the depth
as is (and does not need the masks). Non-finite or negative depth is 0.

Trap: MVSNet's training `Cameras/*_cam.txt` have the same extrinsics but a K for 160×128
images (fx ≈ 361.54); a K whose principal point lies outside the middle half of the image is
refused, naming the cam file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from datasets_adapters.base import DATASETS, DatasetError, ScannedAdapter, SceneInventory
from datasets_adapters.cameras import check_rigid, is_finite_pose
from datasets_adapters.io import image_size, read_rgb, read_text, read_uint8_png, require_dir, stack_frames, wxh
from datasets_adapters.sequence import Sequence

MM_PER_METRE = 1000.0
CAM_WORDS = (29, 30, 31)  # "extrinsic" + 16 + "intrinsic" + 9 + 2, 3 or 4 depth-range numbers
MASKS = {"eroded": "thresholded, resized and eroded 10x10 (the protocol)", "plain": "thresholded and resized", "none": "depth as is"}
MASK_THRESHOLD = 127.5  # 0.5 of an 8-bit 0..255 mask
EROSION = np.ones((10, 10), dtype=bool)  # scipy's origin 0 puts an even kernel's anchor at (5, 5), as OpenCV does
TRAINING_K_HW = (128, 160)  # the image size of the K in MVSNet's training Cameras/
_SCAN = re.compile(r"^scan(\d+)$")
_VIEW = re.compile(r"^(\d{8})\.jpg$")


@dataclass(frozen=True)
class DtuCamera:
    """One cam.txt as written: millimetres, OpenCV axes, K in pixels of the image it was made for."""

    extrinsic: np.ndarray  # (4, 4) world-to-camera, translation in mm
    intrinsic: np.ndarray  # (3, 3)
    depth_min: float  # mm
    depth_interval: float  # mm
    depth_num: int | None = None  # depth planes, when the line has a third number
    depth_max: float | None = None  # mm, when the line has a fourth number

    def extrinsics_metres(self) -> np.ndarray:
        """The 3×4 world-to-camera in metres (translation / 1000; rotation as is)."""
        w2c = np.array(self.extrinsic[:3], dtype=np.float64)
        w2c[:, 3] /= MM_PER_METRE
        return w2c


def read_cam(path: Path) -> DtuCamera:
    """An MVSNet cam.txt, parsed by word index; a malformed file is one `DatasetError` naming it."""
    words = read_text(path, "MVSNet camera").split()
    expected = "'extrinsic', 16 numbers, 'intrinsic', 9 numbers, then DEPTH_MIN DEPTH_INTERVAL [DEPTH_NUM [DEPTH_MAX]]"
    if len(words) not in CAM_WORDS:
        raise DatasetError(f"{path}: malformed MVSNet camera, {len(words)} words; expected 29, 30 or 31: {expected}")
    if words[0].lower() != "extrinsic" or words[17].lower() != "intrinsic":
        raise DatasetError(f"{path}: malformed MVSNet camera, words 1 and 18 are {words[0]!r} and {words[17]!r}; expected {expected}")
    try:
        values = np.array(words[1:17] + words[18:], dtype=np.float64)
    except ValueError:
        raise DatasetError(f"{path}: malformed MVSNet camera, a word that is not a number; expected {expected}") from None
    extrinsic, intrinsic, depth_range = values[:16].reshape(4, 4), values[16:25].reshape(3, 3), values[25:]
    depth_num = None
    if len(depth_range) > 2:
        if not float(depth_range[2]).is_integer():
            raise DatasetError(f"{path}: malformed MVSNet camera, DEPTH_NUM is {depth_range[2]}, expected a whole number of depth planes")
        depth_num = int(depth_range[2])
    return DtuCamera(
        extrinsic=extrinsic,
        intrinsic=intrinsic,
        depth_min=float(depth_range[0]),
        depth_interval=float(depth_range[1]),
        depth_num=depth_num,
        depth_max=float(depth_range[3]) if len(depth_range) > 3 else None,
    )


def check_intrinsics(k: np.ndarray, image_hw: tuple[int, int], source: Path | str) -> None:
    """Refuse a K that cannot describe an image of `image_hw`: above all one whose principal point
    lies outside the middle half of the image, as the K of MVSNet's 160×128 training cameras does
    for the 1600×1200 test images."""
    h, w = image_hw
    if not np.isfinite(k).all() or not np.allclose(k[2], [0.0, 0.0, 1.0]) or k[1, 0] != 0 or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise DatasetError(f"{source}: malformed intrinsic {k.tolist()}, expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")
    cx, cy = k[0, 2], k[1, 2]
    if not (w / 4 <= cx <= 3 * w / 4 and h / 4 <= cy <= 3 * h / 4):
        looks = wxh((round(2 * cy + 1), round(2 * cx + 1)))
        raise DatasetError(
            f"{source}: principal point ({cx:.2f}, {cy:.2f}) is outside the middle half of the {wxh(image_hw)} image, "
            f"so this K is for images of about {looks}, not these; MVSNet's training Cameras/*_cam.txt have such a K "
            f"(for {wxh(TRAINING_K_HW)}, fx ≈ 361.54): use the test set's cams/"
        )


def read_depth_npy(path: Path) -> np.ndarray:
    """A depth .npy as a 2-D float array (millimetres as stored)."""
    try:
        depth = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing file (depth)") from None
    except (ValueError, OSError, EOFError) as err:
        raise DatasetError(f"{path}: cannot read .npy ({err}); expected a float32 (H, W) depth map in mm") from None
    if not isinstance(depth, np.ndarray) or depth.ndim != 2 or depth.dtype.kind != "f":
        raise DatasetError(f"{path}: expected a float32 (H, W) depth map in mm, got {getattr(depth, 'dtype', type(depth))} of shape {getattr(depth, 'shape', ())}")
    return depth


def resize_nearest(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest neighbour as OpenCV's INTER_NEAREST does it (the published evaluation's resize):
    output pixel i takes input pixel floor(i·n_in / n_out), not the one under its centre."""
    rows = np.minimum(np.floor(np.arange(size_hw[0]) * (mask.shape[0] / size_hw[0])).astype(np.int64), mask.shape[0] - 1)
    cols = np.minimum(np.floor(np.arange(size_hw[1]) * (mask.shape[1] / size_hw[1])).astype(np.int64), mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]


def evaluation_mask(values: np.ndarray, size_hw: tuple[int, int], erode: bool = True) -> np.ndarray:
    """The pixels the protocol evaluates: `values` (0..255) > 127.5, resized by nearest neighbour to
    `size_hw`, then (with `erode`) eroded once by a 10×10 square whose anchor is (5, 5), so pixel p
    keeps its value only if p−5 … p+4 are all set in both axes; outside the image counts as set."""
    mask = values > MASK_THRESHOLD
    if mask.shape != tuple(size_hw):
        mask = resize_nearest(mask, size_hw)
    if erode:
        mask = ndimage.binary_erosion(mask, structure=EROSION, border_value=1, origin=0)
    return mask


@DATASETS.register("dtu")
class DtuAdapter(ScannedAdapter):
    """DTU test scans (MVSNet cams, Spann3R depths and masks), in metres, depth × eroded mask."""

    name = "dtu"
    root_variable = "DTU_ROOT"

    def __init__(self, root: str | Path | None = None, *, mask: str = "eroded", min_frames: int = 1, workers: int | None = None) -> None:
        if mask not in MASKS:
            raise DatasetError(f"dtu option mask={mask!r}: choose one of " + ", ".join(f"{k!r} ({v})" for k, v in MASKS.items()))
        super().__init__(root)
        self.mask, self.min_frames, self.workers = mask, min_frames, workers
        self.folders = ("images", "cams", "depths") + (("binary_masks",) if mask != "none" else ())

    def scenes(self) -> list[str]:
        numbered = sorted((int(m.group(1)), m.group(0)) for m in (_SCAN.match(d.name) for d in self.root.iterdir() if d.is_dir()) if m)
        if not numbered:
            raise DatasetError(f"{self.root}: no DTU scan folders (expected <root>/scanN/{{images,cams,depths,binary_masks}}/)")
        return self._long_enough([name for _, name in numbered], self.min_frames)

    def paths(self, scene: str, frame: str) -> dict[str, Path]:
        """The files of one view, by folder."""
        d = self.root / scene
        return {
            "images": d / "images" / f"{frame}.jpg",
            "cams": d / "cams" / f"{frame}_cam.txt",
            "depths": d / "depths" / f"{frame}.npy",
            "binary_masks": d / "binary_masks" / f"{frame}.png",
        }

    def camera(self, scene: str, frame: str) -> DtuCamera:
        """The cam.txt of one view as written (millimetres, with its depth range)."""
        return read_cam(self.paths(scene, frame)["cams"])

    def scan(self, scene: str) -> SceneInventory:
        scene_dir = self.root / scene
        if not scene_dir.is_dir():
            return SceneInventory(scene=scene, frames=[], missing=[f"{scene_dir} (folder)"])
        absent = [f"{scene_dir / f} (folder)" for f in self.folders if not (scene_dir / f).is_dir()]
        if absent:
            return SceneInventory(scene=scene, frames=[], missing=absent)
        ids = sorted((m.group(1) for m in (_VIEW.match(p.name) for p in (scene_dir / "images").iterdir()) if m), key=int)
        if not ids:
            return SceneInventory(scene=scene, frames=[], missing=[f"{scene_dir}/images/XXXXXXXX.jpg (no views)"])
        inv = SceneInventory(scene=scene, frames=[])
        for frame in ids:
            paths = self.paths(scene, frame)
            lacking = [str(paths[f]) for f in self.folders if not paths[f].is_file()]
            if lacking:
                inv.missing.extend(lacking)
            elif is_finite_pose(self.camera(scene, frame).extrinsic):
                inv.frames.append(frame)
            else:
                inv.invalid.append(frame)
        return inv

    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        require_dir(self.root / scene, "a DTU scan")

        def read(i: int) -> tuple[np.ndarray, ...]:
            paths = self.paths(scene, frame_ids[i])
            cam = read_cam(paths["cams"])
            if not is_finite_pose(cam.extrinsic):
                raise DatasetError(f"{paths['cams']}: non-finite extrinsic; the view is not usable (frame_ids leaves it out)")
            check_rigid(cam.extrinsic, paths["cams"])
            hw = image_size(paths["images"])
            check_intrinsics(cam.intrinsic, hw, paths["cams"])
            raw = read_depth_npy(paths["depths"])
            if raw.shape != hw:
                raise DatasetError(f"{paths['depths']}: depth is {wxh(raw.shape)}, the image {paths['images'].name} is {wxh(hw)}")
            depth = np.where(np.isfinite(raw) & (raw > 0), raw, 0).astype(np.float32) / np.float32(MM_PER_METRE)
            if self.mask != "none":
                depth[~self._mask(paths["binary_masks"], hw)] = 0.0
            return read_rgb(paths["images"]), depth, cam.extrinsics_metres(), np.array(cam.intrinsic)

        labels = [str(self.paths(scene, f)["images"]) for f in frame_ids]
        images, depth, extrinsics, intrinsics = stack_frames(labels, read, self.workers)
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

    def _mask(self, path: Path, depth_hw: tuple[int, int]) -> np.ndarray:
        values = read_uint8_png(path, "mask")
        h, w = values.shape
        if abs(h * depth_hw[1] - w * depth_hw[0]) > 0.01 * w * depth_hw[0]:  # aspect ratios differ by more than 1 %
            raise DatasetError(f"{path}: mask is {wxh(values.shape)}, not the shape of the {wxh(depth_hw)} depth map it masks")
        return evaluation_mask(values, depth_hw, erode=self.mask == "eroded")
