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

The pose protocols (`vggt-co3d`, `pi3-relpose-angular`): set list `fewview_dev`, split `test`,
sequences with viewpoint_quality_score > 0.5, at least 50 frames, and no frame whose T components
sum above 1e5 (the option defaults); the protocols choose the categories and draw the frames.

Both published evaluations read VGGT's prepared annotations instead of the raw ones: one
``<category>_test.jgz`` per category (gzip JSON {sequence: [{filepath, R, T, focal_length,
principal_point}, ...]}, made from the same set list and filters). Give their folder as
`annotations` and the adapter reads sequences, frames and cameras from there (images still from
the root; no depth: those files are for pose); the frame draws of the protocols depend on the
order of those files, which this reproduces exactly. Without it, sequences come in the order of
their first frame in the set list and frames in set-list order (the order the prepared files were
made in; unverified against them).

Categories come in the order of `categories` (all: sorted by name). A scene of this adapter is
"<category>/<sequence>"; a frame id is the frame_number.
"""

from __future__ import annotations

import re
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
    """The fields of one frame annotation the adapter uses, the pose already converted to OpenCV."""

    number: int
    image: str  # path relative to the root
    size_hw: tuple[int, int] | None  # None: read from the image (prepared annotations do not say)
    viewpoint: dict[str, Any] | None  # PyTorch3D R, T, focal_length, principal_point, intrinsics_format
    extrinsics: np.ndarray | None  # (3, 4) w2c, None when the viewpoint is missing or non-finite
    t_sum: float  # sum of PyTorch3D T, for the protocol's sanity filter
    depth: str | None = None
    depth_scale: float = 1.0
    depth_mask: str | None = None


def opencv_camera(viewpoint: dict[str, Any], size_hw: tuple[int, int], default_format: str = "ndc_norm_image_bounds") -> tuple[np.ndarray, np.ndarray]:
    """(w2c 3×4, K 3×3) in OpenCV conventions from a CO3D viewpoint annotation of an H×W image."""
    fmt = viewpoint.get("intrinsics_format", default_format)
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


PREPARED_FORMAT = "ndc_isotropic"  # CO3D v2's intrinsics format, which VGGT's prepared files do not repeat


def _converted(viewpoint: dict[str, Any] | None, default_format: str) -> tuple[np.ndarray | None, float]:
    """(w2c or None when missing / non-finite, sum of T) of a viewpoint; the size does not enter w2c."""
    if viewpoint is None:
        return None, float("nan")
    t_sum = float(np.sum(viewpoint["T"]))
    extrinsics, intrinsics = opencv_camera(viewpoint, (2, 2), default_format)
    return (extrinsics if np.isfinite(extrinsics).all() and np.isfinite(intrinsics).all() else None), t_sum


def _parse_frame(entry: dict[str, Any], source: Path) -> tuple[str, Co3dFrame]:
    """One entry of the native frame_annotations.jgz."""
    try:
        depth = entry.get("depth") or {}
        viewpoint = entry.get("viewpoint")
        extrinsics, t_sum = _converted(viewpoint, "ndc_norm_image_bounds")
        frame = Co3dFrame(
            number=int(entry["frame_number"]),
            image=str(entry["image"]["path"]),
            size_hw=(int(entry["image"]["size"][0]), int(entry["image"]["size"][1])),
            viewpoint=viewpoint,
            extrinsics=extrinsics,
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


_FRAME_NUMBER = re.compile(r"(\d+)\.\w+$")


def _parse_prepared_frame(entry: Any, sequence: str, index: int, source: Path) -> Co3dFrame:
    """One frame of a VGGT-prepared `<category>_<split>.jgz` sequence list."""
    try:
        path = str(entry["filepath"])
        viewpoint = {key: entry[key] for key in ("R", "T", "focal_length", "principal_point")}
        match = _FRAME_NUMBER.search(path)
        extrinsics, t_sum = _converted(viewpoint, PREPARED_FORMAT)
        return Co3dFrame(int(match.group(1)) if match else index, path, None, viewpoint, extrinsics, t_sum)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise DatasetError(f"{source}: frame {index} of sequence {sequence}: malformed entry ({type(err).__name__}: {err}); expected filepath, R, T, focal_length, principal_point") from None


@DATASETS.register("co3d")
class Co3dAdapter(ScannedAdapter):
    """CO3D v2 (frame/sequence annotations and set lists, or VGGT's prepared annotations), PyTorch3D cameras converted to OpenCV."""

    name = "co3d"
    root_variable = "CO3D_ROOT"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        categories: str | list[str] = "all",
        annotations: str | None = None,
        subset: str | None = "fewview_dev",
        split: str = "test",
        min_frames: int = 50,
        min_quality: float | None = 0.5,
        max_translation: float | None = 1e5,
        workers: int | None = None,
    ) -> None:
        super().__init__(root)
        if isinstance(categories, str) and categories != "all":
            categories = [categories]
        self.categories = categories
        self.annotations = None if annotations is None else Path(annotations)
        if self.annotations is not None and not self.annotations.is_dir():
            raise DatasetError(f"{self.annotations}: missing folder (co3d option annotations: VGGT's prepared <category>_{split}.jgz files)")
        self.subset, self.split, self.workers = subset, split, workers
        self.min_frames, self.min_quality, self.max_translation = min_frames, min_quality, max_translation
        self._sequences: dict[str, dict[str, list[Co3dFrame]]] = {}  # category → sequence → frames, in file order

    def scenes(self) -> list[str]:
        if self.categories == "all":
            if self.annotations is not None:
                suffix = f"_{self.split}.jgz"
                names = sorted(p.name.removesuffix(suffix) for p in self.annotations.glob(f"*{suffix}"))
            else:
                names = sorted(d.name for d in self.root.iterdir() if (d / "frame_annotations.jgz").is_file())
            if not names:
                where = f"{self.annotations}/<category>_{self.split}.jgz" if self.annotations else "<root>/<category>/frame_annotations.jgz"
                raise DatasetError(f"{self.root}: no CO3D categories (expected {where})")
        else:
            names = list(self.categories)
        return [f"{category}/{seq}" for category in names for seq in self._category(category)]

    def _category(self, category: str) -> dict[str, list[Co3dFrame]]:
        if category not in self._sequences:
            if self.annotations is not None:
                listed, quality = self._read_prepared(category), None  # filtered by quality when prepared
            else:
                listed, quality = self._read_native(category)
            self._sequences[category] = self._filter(category, listed, quality)
        return self._sequences[category]

    def _read_prepared(self, category: str) -> dict[str, list[Co3dFrame]]:
        """The sequences of VGGT's prepared annotation file, each with its frames, in file order."""
        path = require_file(self.annotations / f"{category}_{self.split}.jgz", f"VGGT's prepared CO3D annotations of {category!r}")
        data = read_json(path)
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: expected a JSON object {{sequence: [frame, ...]}}, found {type(data).__name__}")
        for seq, frames in data.items():
            if not isinstance(frames, list):
                raise DatasetError(f"{path}: sequence {seq}: expected a list of frames, found {type(frames).__name__}")
        return {str(seq): [_parse_prepared_frame(f, seq, i, path) for i, f in enumerate(frames)] for seq, frames in data.items()}

    def _read_native(self, category: str) -> tuple[dict[str, list[Co3dFrame]], dict[str, Any] | None]:
        """The sequences of the native annotations with the chosen set-list frames, in set-list order
        (without a set list: sequences in annotation order, frames by number), and the sequences'
        viewpoint quality scores (None when `min_quality` does not filter)."""
        cat_dir = require_dir(self.root / category, f"CO3D category {category!r}")
        frame_file = require_file(cat_dir / "frame_annotations.jgz", "CO3D frame annotations")
        set_file = cat_dir / "set_lists" / f"set_lists_{self.subset}.json"
        wanted = None if self.subset is None else self._set_list(set_file)
        members = None if wanted is None else set(wanted)
        frames: dict[tuple[str, int], Co3dFrame] = {}
        for entry in self._json_list(frame_file):
            if not isinstance(entry, dict):
                raise DatasetError(f"{frame_file}: expected annotation objects, found {type(entry).__name__} {entry!r:.40}")
            if members is None or (entry.get("sequence_name"), entry.get("frame_number")) in members:  # convert only what is used
                seq, frame = _parse_frame(entry, frame_file)
                frames[(seq, frame.number)] = frame
        if wanted is None:
            wanted = sorted(frames, key=lambda key: key[1])
            first_seen = {seq: i for i, (seq, _) in reversed(list(enumerate(frames)))}
            wanted.sort(key=lambda key: first_seen[key[0]])  # stable: frames by number within a sequence
        listed: dict[str, list[Co3dFrame]] = {}
        for seq, number in wanted:
            if (seq, number) not in frames:
                raise DatasetError(f"{set_file}: frame {number} of sequence {seq} is not in {frame_file}")
            listed.setdefault(seq, []).append(frames[(seq, number)])
        if self.min_quality is None:
            return listed, None
        seq_file = require_file(cat_dir / "sequence_annotations.jgz", "CO3D sequence annotations")
        return listed, {str(s.get("sequence_name")): s.get("viewpoint_quality_score") for s in self._json_list(seq_file) if isinstance(s, dict)}

    def _filter(self, category: str, listed: dict[str, list[Co3dFrame]], quality: dict[str, Any] | None) -> dict[str, list[Co3dFrame]]:
        """The sequences that pass the protocol filters, in their listed order (`quality` None: no
        quality filter here, as for prepared files, which were filtered when they were made)."""
        dropped: Counter[str] = Counter()
        kept: dict[str, list[Co3dFrame]] = {}
        for seq, seq_frames in listed.items():
            if quality is not None and not (quality.get(seq) is not None and quality[seq] > self.min_quality):
                dropped[f"viewpoint_quality_score <= {self.min_quality}"] += 1
            elif self.max_translation is not None and any(f.t_sum > self.max_translation for f in seq_frames):
                dropped[f"a frame with sum(T) > {self.max_translation:g}"] += 1
            elif sum(f.extrinsics is not None for f in seq_frames) < self.min_frames:
                dropped[f"fewer than {self.min_frames} frames"] += 1
            else:
                kept[seq] = seq_frames
        if dropped:
            reasons = ", ".join(f"{n} for {why}" for why, n in dropped.items())
            self._notes.append(f"{category}: {len(kept)} of {len(listed)} sequences kept ({reasons})")
        return kept

    def _set_list(self, set_file: Path) -> list[tuple[str, int]]:
        """(sequence_name, frame_number) of every frame in the chosen split of the set list, in its order."""
        set_lists = read_json(require_file(set_file, f"CO3D set list {self.subset!r}"))
        if not isinstance(set_lists, dict) or self.split not in set_lists:
            keys = ", ".join(set_lists) if isinstance(set_lists, dict) else "none"
            raise DatasetError(f"{set_file}: no split {self.split!r} (found: {keys})")
        try:
            return list(dict.fromkeys((str(item[0]), int(item[1])) for item in set_lists[self.split]))
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

    def _read_depth(self, frame: Co3dFrame, size_hw: tuple[int, int]) -> np.ndarray:
        """Depth in CO3D units, 0 where not finite or outside the depth mask; all 0 without a depth map."""
        if frame.depth is None:
            return np.zeros(size_hw, dtype=np.float32)
        path = self.root / frame.depth
        depth = read_uint16_png(path).view(np.float16).astype(np.float32) * np.float32(frame.depth_scale)
        if depth.shape != size_hw:
            raise DatasetError(f"{path}: depth is {wxh(depth.shape)}, the image {Path(frame.image).name} is {wxh(size_hw)}")
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
            raise DatasetError(f"co3d/{scene}: frames {without_camera} have no valid viewpoint in the annotations")
        frames = [by_id[i] for i in frame_ids]
        default_format = "ndc_norm_image_bounds" if self.annotations is None else PREPARED_FORMAT

        def read(i: int) -> tuple[np.ndarray, ...]:
            frame = frames[i]
            path = self.root / frame.image
            image = read_rgb(path)
            size_hw = image.shape[1:]
            if frame.size_hw is not None and size_hw != frame.size_hw:
                raise DatasetError(f"{path}: image is {wxh(size_hw)}, frame_annotations.jgz says {wxh(frame.size_hw)} (K depends on it)")
            _, intrinsics = opencv_camera(frame.viewpoint, size_hw, default_format)
            return image, self._read_depth(frame, size_hw), frame.extrinsics, intrinsics

        images, depth, extrinsics, intrinsics = stack_frames([str(self.root / f.image) for f in frames], read, self.workers)
        has_depth = any(f.depth is not None for f in frames)
        return Sequence(
            dataset=self.name,
            scene=scene,
            images=images,
            extrinsics=extrinsics,
            intrinsics=intrinsics,
            depth=depth if has_depth else None,
            valid=depth > 0 if has_depth else None,
            frame_ids=list(frame_ids),
        )
