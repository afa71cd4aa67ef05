"""CO3D v2 in its distributed layout, with the pose protocol of the VGGT and π³ papers.

    <root>/<category>/frame_annotations.jgz        gzip JSON list, one entry per frame
    <root>/<category>/sequence_annotations.jgz     gzip JSON list, one entry per sequence
    <root>/<category>/set_lists/set_lists_<subset>.json   {"train"|"val"|"test": [[seq, frame_number, path]]}
    <root>/<category>/<sequence>/images/frameXXXXXX.jpg
                                 depths/frameXXXXXX.jpg.geometric.png   uint16 bits that are float16
                                 depth_masks/frameXXXXXX.png

Cameras are PyTorch3D's (row vectors: X_cam = X_world·R + T; +X left, +Y up) with focal length
and principal point in NDC. In OpenCV terms: R_cv = diag(-1,-1,1)·Rᵀ, t_cv = diag(-1,-1,1)·T,
f_px = f_ndc·s, c_px = (W/2, H/2) − p_ndc·s, where s = min(W, H)/2 for `ndc_isotropic` and
(W/2, H/2) per axis for `ndc_norm_image_bounds` (PyTorch3D's own conversion to pixels, which puts
no half-pixel shift on c). Depth is in CO3D's own units.

The pose protocol (the published evaluation, on the 41 categories listed in suites/sparse.yaml):
set list `fewview_dev`, split `test`, sequences with viewpoint_quality_score > 0.5, at least 50
frames, and no frame whose T components sum above 1e5; 10 frames per sequence drawn at random with
a seed (suite sampling `random`). These are the option defaults.
A scene of this adapter is "<category>/<sequence>"; a frame id is the frame_number.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datasets_adapters.base import DATASETS, DatasetError, ScannedAdapter, SceneInventory
from datasets_adapters.io import read_json, read_mask_png, read_rgb, read_uint16_png, require_dir, require_file, stack_frames, wxh
from datasets_adapters.sequence import Sequence

INTRINSICS_FORMATS = ("ndc_isotropic", "ndc_norm_image_bounds")
_FLIP_XY = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True, slots=True)
class Co3dFrame:
    """The fields of one frame annotation the adapter uses, already converted to OpenCV."""

    number: int
    image: str  # path relative to the root
    size_hw: tuple[int, int]
    extrinsics: np.ndarray | None  # (3, 4) w2c, None when the viewpoint is missing or non-finite
    intrinsics: np.ndarray | None  # (3, 3)
    t_sum: float  # sum of PyTorch3D T, for the protocol's sanity filter
    depth: str | None
    depth_scale: float
    depth_mask: str | None


def opencv_camera(viewpoint: dict[str, Any], size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(w2c 3×4, K 3×3) in OpenCV conventions from a CO3D viewpoint annotation of an H×W image."""
    fmt = viewpoint.get("intrinsics_format", "ndc_norm_image_bounds")
    if fmt not in INTRINSICS_FORMATS:
        raise ValueError(f"intrinsics_format {fmt!r} is not one of {', '.join(INTRINSICS_FORMATS)}")
    rot = np.asarray(viewpoint["R"], dtype=np.float64).reshape(3, 3)
    trans = np.asarray(viewpoint["T"], dtype=np.float64).reshape(3)
    focal = np.asarray(viewpoint["focal_length"], dtype=np.float64).reshape(2)
    principal = np.asarray(viewpoint["principal_point"], dtype=np.float64).reshape(2)
    half_wh = np.array([size_hw[1], size_hw[0]], dtype=np.float64) / 2.0
    scale = np.full(2, half_wh.min()) if fmt == "ndc_isotropic" else half_wh
    f_px, c_px = focal * scale, half_wh - principal * scale
    k = np.array([[f_px[0], 0.0, c_px[0]], [0.0, f_px[1], c_px[1]], [0.0, 0.0, 1.0]])
    w2c = np.concatenate([_FLIP_XY @ rot.T, (_FLIP_XY @ trans)[:, None]], axis=1)
    return w2c, k


def _parse_frame(entry: dict[str, Any], source: Path) -> tuple[str, Co3dFrame]:
    try:
        size_hw = (int(entry["image"]["size"][0]), int(entry["image"]["size"][1]))
        depth = entry.get("depth") or {}
        viewpoint = entry.get("viewpoint")
        extrinsics = intrinsics = None
        t_sum = float("nan")
        if viewpoint is not None:
            t_sum = float(np.sum(viewpoint["T"]))
            extrinsics, intrinsics = opencv_camera(viewpoint, size_hw)
            if not (np.isfinite(extrinsics).all() and np.isfinite(intrinsics).all()):
                extrinsics = intrinsics = None
        frame = Co3dFrame(
            number=int(entry["frame_number"]),
            image=str(entry["image"]["path"]),
            size_hw=size_hw,
            extrinsics=extrinsics,
            intrinsics=intrinsics,
            t_sum=t_sum,
            depth=depth.get("path"),
            depth_scale=float(depth.get("scale_adjustment", 1.0) or 1.0),
            depth_mask=depth.get("mask_path"),
        )
        return str(entry["sequence_name"]), frame
    except (KeyError, TypeError, ValueError, IndexError) as err:
        name = entry.get("sequence_name", "?") if isinstance(entry, dict) else "?"
        number = entry.get("frame_number", "?") if isinstance(entry, dict) else "?"
        raise DatasetError(f"{source}: frame {number} of sequence {name}: malformed annotation ({type(err).__name__}: {err})") from None


@DATASETS.register("co3d")
class Co3dAdapter(ScannedAdapter):
    """CO3D v2 (frame/sequence annotations, set lists), PyTorch3D cameras converted to OpenCV."""

    name = "co3d"
    root_variable = "CO3D_ROOT"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        categories: str | list[str] = "all",
        subset: str | None = "fewview_dev",
        split: str = "test",
        min_frames: int = 50,
        min_quality: float | None = 0.5,
        max_translation: float | None = 1e5,
        workers: int | None = None,
    ) -> None:
        super().__init__(
            root, categories=categories, subset=subset, split=split, min_frames=min_frames,
            min_quality=min_quality, max_translation=max_translation, workers=workers,
        )  # fmt: skip
        if isinstance(categories, str) and categories != "all":
            categories = [categories]
        self.categories = categories
        self.subset, self.split, self.workers = subset, split, workers
        self.min_frames, self.min_quality, self.max_translation = min_frames, min_quality, max_translation
        self._sequences: dict[str, dict[str, list[Co3dFrame]]] = {}  # category → sequence → frames

    def scenes(self) -> list[str]:
        if self.categories == "all":
            names = sorted(d.name for d in self.root.iterdir() if (d / "frame_annotations.jgz").is_file())
            if not names:
                raise DatasetError(f"{self.root}: no CO3D categories (expected <root>/<category>/frame_annotations.jgz)")
        else:
            names = list(self.categories)
        return [f"{category}/{seq}" for category in names for seq in sorted(self._category(category))]

    def _category(self, category: str) -> dict[str, list[Co3dFrame]]:
        if category not in self._sequences:
            self._sequences[category] = self._index_category(category)
        return self._sequences[category]

    def _index_category(self, category: str) -> dict[str, list[Co3dFrame]]:
        """The category's sequences that pass the protocol filters, each with its set-list frames in order."""
        cat_dir = require_dir(self.root / category, f"CO3D category {category!r}")
        frame_file = require_file(cat_dir / "frame_annotations.jgz", "CO3D frame annotations")
        seq_file = require_file(cat_dir / "sequence_annotations.jgz", "CO3D sequence annotations")
        set_file = cat_dir / "set_lists" / f"set_lists_{self.subset}.json"
        wanted = None if self.subset is None else self._set_list(set_file)
        frames: dict[str, dict[int, Co3dFrame]] = {}
        for entry in self._json_list(frame_file):
            if not isinstance(entry, dict):
                raise DatasetError(f"{frame_file}: expected annotation objects, found {type(entry).__name__} {entry!r:.40}")
            if wanted is None or (entry.get("sequence_name"), entry.get("frame_number")) in wanted:  # convert only what is used
                seq, frame = _parse_frame(entry, frame_file)
                frames.setdefault(seq, {})[frame.number] = frame
        for seq, number in wanted or ():
            if number not in frames.get(seq, {}):
                raise DatasetError(f"{set_file}: frame {number} of sequence {seq} is not in {frame_file}")
        quality = {str(s.get("sequence_name")): s.get("viewpoint_quality_score") for s in self._json_list(seq_file) if isinstance(s, dict)}

        dropped: Counter[str] = Counter()
        kept: dict[str, list[Co3dFrame]] = {}
        for seq, by_number in frames.items():
            seq_frames = [by_number[n] for n in sorted(by_number)]
            score = quality.get(seq)
            if self.min_quality is not None and (score is None or not score > self.min_quality):
                dropped[f"viewpoint_quality_score <= {self.min_quality}"] += 1
            elif self.max_translation is not None and any(f.t_sum > self.max_translation for f in seq_frames):
                dropped[f"a frame with sum(T) > {self.max_translation:g}"] += 1
            elif sum(f.extrinsics is not None for f in seq_frames) < self.min_frames:
                dropped[f"fewer than {self.min_frames} frames"] += 1
            else:
                kept[seq] = seq_frames
        if dropped:
            reasons = ", ".join(f"{n} for {why}" for why, n in dropped.items())
            self._notes.append(f"{category}: {len(kept)} of {len(frames)} sequences kept ({reasons})")
        return kept

    def _set_list(self, set_file: Path) -> set[tuple[str, int]]:
        """(sequence_name, frame_number) of every frame in the chosen split of the set list."""
        set_lists = read_json(require_file(set_file, f"CO3D set list {self.subset!r}"))
        if not isinstance(set_lists, dict) or self.split not in set_lists:
            keys = ", ".join(set_lists) if isinstance(set_lists, dict) else "none"
            raise DatasetError(f"{set_file}: no split {self.split!r} (found: {keys})")
        try:
            return {(str(item[0]), int(item[1])) for item in set_lists[self.split]}
        except (TypeError, ValueError, IndexError, KeyError):
            raise DatasetError(f"{set_file}: malformed entry in {self.split!r}, expected [sequence_name, frame_number, image_path]") from None

    @staticmethod
    def _json_list(path: Path) -> list[Any]:
        data = read_json(path)
        if not isinstance(data, list):
            raise DatasetError(f"{path}: expected a JSON list of annotations, found {type(data).__name__}")
        return data

    def _frames(self, scene: str) -> dict[str, Co3dFrame]:
        category, _, seq = scene.partition("/")
        seq_frames = self._category(category).get(seq)
        if seq_frames is None:
            raise DatasetError(f"co3d: no sequence {scene!r} after the protocol filters (check the name, or run check-data)")
        return {str(f.number): f for f in seq_frames}

    def scan(self, scene: str) -> SceneInventory:
        inv = SceneInventory(scene=scene, frames=[])
        for frame_id, frame in self._frames(scene).items():
            files = [frame.image] + [p for p in (frame.depth, frame.depth_mask) if p]
            absent = [str(self.root / p) for p in files if not (self.root / p).is_file()]
            if absent:
                inv.missing.extend(absent)
            elif frame.extrinsics is None:
                inv.invalid.append(frame_id)
            else:
                inv.frames.append(frame_id)
        return inv

    def _read_depth(self, frame: Co3dFrame) -> np.ndarray:
        """Depth in CO3D units, 0 where not finite or outside the depth mask; all 0 without a depth map."""
        if frame.depth is None:
            return np.zeros(frame.size_hw, dtype=np.float32)
        path = self.root / frame.depth
        depth = read_uint16_png(path).view(np.float16).astype(np.float32) * np.float32(frame.depth_scale)
        if depth.shape != frame.size_hw:
            raise DatasetError(f"{path}: depth is {wxh(depth.shape)}, the image {Path(frame.image).name} is {wxh(frame.size_hw)}")
        depth[~np.isfinite(depth) | (depth < 0)] = 0.0
        if frame.depth_mask is not None:
            mask_path = self.root / frame.depth_mask
            mask = read_mask_png(mask_path)
            if mask.shape != depth.shape:
                raise DatasetError(f"{mask_path}: mask is {wxh(mask.shape)}, the depth map is {wxh(depth.shape)}")
            depth[~mask] = 0.0
        return depth

    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        by_id = self._frames(scene)
        unknown = [i for i in frame_ids if i not in by_id]
        if unknown:
            raise DatasetError(f"co3d/{scene}: no frames {unknown} in the selected set list split")
        without_camera = [i for i in frame_ids if by_id[i].extrinsics is None]
        if without_camera:
            raise DatasetError(f"co3d/{scene}: frames {without_camera} have no valid viewpoint in frame_annotations.jgz")
        frames = [by_id[i] for i in frame_ids]

        def read(i: int) -> tuple[np.ndarray, ...]:
            frame = frames[i]
            path = self.root / frame.image
            image = read_rgb(path)
            if image.shape[1:] != frame.size_hw:
                raise DatasetError(f"{path}: image is {wxh(image.shape[1:])}, frame_annotations.jgz says {wxh(frame.size_hw)} (K depends on it)")
            return image, self._read_depth(frame), frame.extrinsics, frame.intrinsics

        images, depth, extrinsics, intrinsics = stack_frames([str(self.root / f.image) for f in frames], read, self.workers)
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
