"""TUM RGB-D sequences in their distributed layout.

    <root>/rgbd_dataset_freiburg3_walking_xyz/rgb/<ts>.png      640×480 colour
                                              depth/<ts>.png    uint16, metres = value / 5000, 0 = none,
                                                                registered to the colour camera
                                              rgb.txt, depth.txt    "timestamp path" lines
                                              groundtruth.txt       "timestamp tx ty tz qx qy qz qw" lines

Each text file opens with `#` comment lines. Timestamps are Unix seconds on each stream's own
clock and never coincide, so the streams are associated the way TUM's tools do it: candidate
pairs closer than `max_time_difference` (0.02 s), taken greedily by smallest |Δt|, one to one.
A frame is an RGB image with a ground-truth match; its pose is that GT line (camera-to-world of
the colour optical centre, OpenCV axes, quaternion scalar LAST, written with 4 decimals, so it is
normalised here). RGB images without a GT match are dropped and counted as invalid poses. Depth
is associated to the RGB images separately: an image without a depth match stays a frame (all
depth invalid), so the protocol's frame subset (every 3rd match, the first 90) does not depend on
depth. The depth is delivered with its RGB frame's pose (the two are a few ms apart).

Intrinsics are not in the folder; the folder name says which camera took it (freiburg1, 2, 3).
freiburg1 images are distorted and the adapter does not undo it (K alone describes them only
approximately); freiburg3 images are already undistorted. Frame ids are the RGB timestamps as
written in rgb.txt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets_adapters.base import DATASETS, DatasetError, ScannedAdapter, SceneInventory
from datasets_adapters.cameras import rotation_from_quaternion, w2c_from_c2w
from datasets_adapters.io import image_size, read_rgb, read_text, read_uint16_png, stack_frames, wxh
from datasets_adapters.sequence import Sequence

IMAGE_HW = (480, 640)
DEPTH_SCALE = 5000.0  # depth PNG units per metre
LISTS = ("rgb.txt", "depth.txt", "groundtruth.txt")
CAMERAS = {  # fx fy cx cy of the colour cameras (TUM's published calibration, integer pixel centres)
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}
_CAMERA = re.compile(r"freiburg[123]")
_QUATERNION_NORM_TOLERANCE = 1e-2  # 4 decimals move the norm by about 2e-4; more is not a unit quaternion


@dataclass
class Stream:
    """One `timestamp path` list (rgb.txt, depth.txt): times as numbers, the stamps as written, paths."""

    times: np.ndarray
    stamps: list[str]
    paths: list[str]


@dataclass
class Trajectory:
    """groundtruth.txt: times (N,), camera-to-world poses (N, 4, 4) and each pose's line number."""

    times: np.ndarray
    c2w: np.ndarray
    lines: list[int]


def _data_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, words) of every line that is neither blank nor a `#` comment."""
    text = read_text(path)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            rows.append((number, stripped.split()))
    return rows


def _timestamps(path: Path, numbers: list[int], stamps: list[str]) -> np.ndarray:
    times = []
    for number, stamp in zip(numbers, stamps):
        try:
            value = float(stamp)
        except ValueError:
            raise DatasetError(f"{path}: line {number}: timestamp {stamp!r} is not a number") from None
        if not np.isfinite(value):
            raise DatasetError(f"{path}: line {number}: timestamp {stamp!r} is not finite")
        times.append(value)
    times = np.array(times, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    repeated = np.nonzero(np.diff(times[order]) == 0)[0]
    if repeated.size:
        k = order[repeated[0] + 1]
        raise DatasetError(f"{path}: line {numbers[k]}: timestamp {stamps[k]} appears twice; a stream's timestamps must be distinct")
    return times


def read_stream(path: Path) -> Stream:
    """An rgb.txt or depth.txt list; a malformed line is one `DatasetError` naming the file and line."""
    rows = _data_lines(path)
    for number, words in rows:
        if len(words) != 2:
            raise DatasetError(f"{path}: line {number}: expected 2 fields 'timestamp filename', found {len(words)}: {' '.join(words)!r}")
    stamps = [words[0] for _, words in rows]
    return Stream(_timestamps(path, [n for n, _ in rows], stamps), stamps, [words[1] for _, words in rows])


def read_groundtruth(path: Path) -> Trajectory:
    """groundtruth.txt as camera-to-world 4×4 poses with normalised quaternions.

    Non-finite values are kept (the frames matched to them are counted invalid); a quaternion far
    from unit length (zero, or fields in another order of magnitude) is a malformed line.
    """
    rows = _data_lines(path)
    values = np.empty((len(rows), 7))
    for k, (number, words) in enumerate(rows):
        if len(words) != 8:
            raise DatasetError(f"{path}: line {number}: expected 8 fields 'timestamp tx ty tz qx qy qz qw', found {len(words)}: {' '.join(words)!r}")
        try:
            values[k] = [float(w) for w in words[1:]]
        except ValueError:
            raise DatasetError(f"{path}: line {number}: not numbers: {' '.join(words)!r}") from None
    numbers = [n for n, _ in rows]
    times = _timestamps(path, numbers, [words[0] for _, words in rows])
    c2w = np.tile(np.eye(4), (len(rows), 1, 1))
    for k, (number, row) in enumerate(zip(numbers, values)):
        if not np.isfinite(row).all():
            c2w[k, :3, :] = np.nan
            continue
        norm = np.linalg.norm(row[3:])
        if abs(norm - 1.0) > _QUATERNION_NORM_TOLERANCE:
            raise DatasetError(f"{path}: line {number}: quaternion qx qy qz qw has norm {norm:.4g}, expected about 1")
        c2w[k, :3, :3] = rotation_from_quaternion(row[3:] / norm, scalar_first=False)
        c2w[k, :3, 3] = row[:3]
    return Trajectory(times, c2w, numbers)


def associate(first: np.ndarray, second: np.ndarray, max_difference: float) -> list[tuple[int, int]]:
    """Index pairs (i, j) matching times `first[i]` and `second[j]`, as TUM's association does.

    Candidates are the pairs with |Δt| < `max_difference`; they are taken greedily by smallest
    |Δt| (ties by first's, then second's time), each time at most once. Pairs come sorted by
    first's time.
    """
    order = np.argsort(second, kind="stable")
    ordered = second[order]
    lo = np.searchsorted(ordered, first - max_difference, side="left")
    hi = np.searchsorted(ordered, first + max_difference, side="right")
    i = np.repeat(np.arange(len(first)), hi - lo)
    j = order[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)] or [np.empty(0, dtype=np.int64)]).astype(np.int64)]
    gap = np.abs(first[i] - second[j])
    keep = gap < max_difference
    i, j, gap = i[keep], j[keep], gap[keep]
    pairs, used_first, used_second = [], set(), set()
    for k in np.lexsort((second[j], first[i], gap)):
        a, b = int(i[k]), int(j[k])
        if a not in used_first and b not in used_second:
            used_first.add(a)
            used_second.add(b)
            pairs.append((a, b))
    return sorted(pairs, key=lambda p: first[p[0]])


@dataclass
class _Frame:
    rgb: Path
    depth: Path | None  # None: no depth frame within the tolerance
    c2w: np.ndarray
    source: str  # where the pose came from, for error messages


@DATASETS.register("tum")
class TumRgbdAdapter(ScannedAdapter):
    """TUM RGB-D sequences: RGB frames associated with ground truth, depth in metres, colour K by camera."""

    name = "tum"
    root_variable = "TUM_ROOT"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        max_time_difference: float = 0.02,
        min_frames: int = 1,
        workers: int | None = None,
    ) -> None:
        if not max_time_difference > 0:
            raise DatasetError(f"tum option max_time_difference={max_time_difference}: must be > 0 seconds")
        super().__init__(root)
        self.max_time_difference, self.min_frames, self.workers = max_time_difference, min_frames, workers
        self._frames: dict[str, dict[str, _Frame]] = {}

    def scenes(self) -> list[str]:
        folders = (d for d in self.root.iterdir() if d.is_dir())
        names = sorted(d.name for d in folders if d.name.startswith("rgbd_dataset_") or (d / "rgb.txt").is_file())
        if not names:
            raise DatasetError(f"{self.root}: no TUM RGB-D sequence folders (expected <root>/rgbd_dataset_freiburgN_<name>/{{{','.join(LISTS)}}})")
        return self._long_enough(names, self.min_frames)

    def intrinsics(self, scene: str) -> np.ndarray:
        """K of the colour camera that the sequence's folder name names."""
        match = _CAMERA.search(scene)
        if match is None:
            raise DatasetError(f"{self.root / scene}: the folder name names no camera (freiburg1, freiburg2 or freiburg3), so its intrinsics are unknown")
        fx, fy, cx, cy = CAMERAS[match.group(0)]
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def scan(self, scene: str) -> SceneInventory:
        folder = self.root / scene
        self.intrinsics(scene)
        absent = [str(folder / name) for name in LISTS if not (folder / name).is_file()]
        if absent:
            return SceneInventory(scene=scene, frames=[], missing=absent)
        rgb, depth = read_stream(folder / "rgb.txt"), read_stream(folder / "depth.txt")
        truth = read_groundtruth(folder / "groundtruth.txt")
        posed = dict(associate(rgb.times, truth.times, self.max_time_difference))
        with_depth = dict(associate(rgb.times, depth.times, self.max_time_difference))
        inv, frames, unmatched, depthless = SceneInventory(scene=scene, frames=[]), {}, 0, 0
        for i in map(int, np.argsort(rgb.times, kind="stable")):
            stamp, line = rgb.stamps[i], posed.get(i)
            if line is None or not np.isfinite(truth.c2w[line]).all():
                unmatched += line is None
                inv.invalid.append(stamp)
                continue
            image = folder / rgb.paths[i]
            depth_path = folder / depth.paths[with_depth[i]] if i in with_depth else None
            lacking = [str(p) for p in (image, depth_path) if p is not None and not p.is_file()]
            if lacking:
                inv.missing.extend(lacking)
                continue
            depthless += depth_path is None
            inv.frames.append(stamp)
            frames[stamp] = _Frame(image, depth_path, truth.c2w[line], f"{folder / 'groundtruth.txt'}: line {truth.lines[line]}")
        self._frames[scene] = frames
        if unmatched:
            self._notes.append(
                f"{scene}: {unmatched} of {len(rgb.stamps)} RGB frames have no ground truth within {self.max_time_difference} s (dropped, counted as invalid poses)"
            )
        if depthless:
            self._notes.append(f"{scene}: {depthless} frame(s) have no depth frame within {self.max_time_difference} s (kept, depth invalid)")
        return inv

    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        self.frame_ids(scene)  # scans the scene; missing files or no usable frames fail here
        frames = self._frames[scene]
        unknown = [f for f in frame_ids if f not in frames]
        if unknown:
            raise DatasetError(f"tum/{scene}: {unknown[0]!r} is not a usable frame (an RGB timestamp of rgb.txt associated with ground truth)")
        k = self.intrinsics(scene)

        def read(i: int) -> tuple[np.ndarray, ...]:
            frame = frames[frame_ids[i]]
            hw = image_size(frame.rgb)
            if hw != IMAGE_HW:
                raise DatasetError(f"{frame.rgb}: image is {wxh(hw)}, TUM RGB-D frames are 640x480 (the fixed intrinsics describe that size)")
            if frame.depth is None:
                depth = np.zeros(IMAGE_HW, dtype=np.float32)
            else:
                raw = read_uint16_png(frame.depth)
                if raw.shape != IMAGE_HW:
                    raise DatasetError(f"{frame.depth}: depth is {wxh(raw.shape)}, the colour image {frame.rgb.name} is 640x480")
                depth = raw.astype(np.float32) / np.float32(DEPTH_SCALE)
            return read_rgb(frame.rgb), depth, w2c_from_c2w(frame.c2w, frame.source)

        images, depth, extrinsics = stack_frames([str(frames[f].rgb) for f in frame_ids], read, self.workers)
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
