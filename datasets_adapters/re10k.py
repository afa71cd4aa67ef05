"""RealEstate10K (pose only) in the layout π³'s evaluation reads.

    <root>/metadata/<split>/<seq>.txt    line 1: the YouTube URL; then one line per frame of 19 numbers:
                                         timestamp (µs), fx fy cx cy (normalised: fx, cx by the width,
                                         fy, cy by the height, image corners at 0 and 1), two zeros,
                                         the 3×4 world-to-camera matrix row by row (OpenCV axes, SLAM scale)
    <root>/<seq>/images/0000.png ...     the frames cut from the video, numbered in line order

The frame index is the line's row: a frame missing from the extraction would shift every later
one, so a sequence whose image count differs from its camera lines is reported, not loaded.
Intrinsics are in pixels of the extracted frames (640×360 for most, 640×272 or 640×338 for a few;
fy_n differs from fx_n on non-square frames) with pixel centres at integer coordinates:
c = c_n·size − 0.5 (π³ and CUT3R drop the 0.5; poses do not depend on it). There is no depth.

`sequences`: ``test-1719`` (the default) is the 1719-sequence subset of the test split that
π³'s `pi3-relpose-angular` protocol walks (shipped in `datasets_adapters/splits/`), ``all``
every camera file of the split, or a list of names. Sequences with fewer than `min_frames`
camera lines are left out (π³'s walk skips those under 10).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets_adapters.base import DATASETS, DatasetError, ScannedAdapter, SceneInventory
from datasets_adapters.io import image_size, read_rgb, read_text, stack_frames
from datasets_adapters.sequence import Sequence

SPLITS_DIR = Path(__file__).with_name("splits")
NAMED_LISTS = {"test-1719": SPLITS_DIR / "re10k_test_1719.txt"}
FIELDS_PER_LINE = 19


def read_cameras(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timestamps (N,), normalised intrinsics (N, 4) fx fy cx cy, world-to-camera (N, 3, 4)) of a
    RealEstate10K camera file; a malformed line is one `DatasetError` naming the file and line."""
    lines = read_text(path, "RealEstate10K camera file").splitlines()
    rows = []
    for number, line in enumerate(lines[1:], start=2):  # line 1 is the video URL
        if not line.strip():
            continue
        words = line.split()
        try:
            values = [float(w) for w in words]
        except ValueError:
            raise DatasetError(f"{path}: line {number} is not numbers: {line[:60]!r}") from None
        if len(values) != FIELDS_PER_LINE:
            raise DatasetError(f"{path}: line {number} has {len(values)} numbers, expected {FIELDS_PER_LINE} (timestamp, fx fy cx cy, 0 0, 3x4 world-to-camera)")
        rows.append(values)
    if not rows:
        raise DatasetError(f"{path}: no camera lines (expected the URL, then one line of {FIELDS_PER_LINE} numbers per frame)")
    table = np.array(rows, dtype=np.float64)
    return table[:, 0], table[:, 1:5], table[:, 7:].reshape(-1, 3, 4)


def pixel_intrinsics(normalised: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """K (3, 3) in pixels of an H×W frame from normalised fx fy cx cy (integer pixel centres)."""
    height, width = size_hw
    fx, fy, cx, cy = normalised
    return np.array([[fx * width, 0.0, cx * width - 0.5], [0.0, fy * height, cy * height - 0.5], [0.0, 0.0, 1.0]])


@DATASETS.register("re10k")
class RealEstate10kAdapter(ScannedAdapter):
    """RealEstate10K camera files with extracted frames (pose only), world-to-camera as given."""

    name = "re10k"
    root_variable = "RE10K_ROOT"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        split: str = "test",
        sequences: str | list[str] = "test-1719",
        min_frames: int = 1,
        workers: int | None = None,
    ) -> None:
        super().__init__(root)
        self.metadata = self.root / "metadata" / split
        if not self.metadata.is_dir():
            raise DatasetError(f"{self.metadata}: missing folder (RealEstate10K camera files of the {split!r} split)")
        if isinstance(sequences, str) and sequences not in (*NAMED_LISTS, "all"):
            raise DatasetError(f"re10k option sequences={sequences!r}: choose {', '.join(NAMED_LISTS)}, all, or a list of sequence names")
        self.sequences, self.min_frames, self.workers = sequences, min_frames, workers
        self._cameras: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _listed(self) -> list[str]:
        if self.sequences == "all":
            names = sorted(p.stem for p in self.metadata.glob("*.txt"))
            if not names:
                raise DatasetError(f"{self.metadata}: no camera files (<seq>.txt)")
            return names
        if isinstance(self.sequences, str):
            return NAMED_LISTS[self.sequences].read_text().split()
        return [str(name) for name in self.sequences]

    def scenes(self) -> list[str]:
        names = self._listed()
        absent = [n for n in names if not (self.metadata / f"{n}.txt").is_file()]
        if absent:
            more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
            raise DatasetError(f"{self.metadata / absent[0]}.txt: missing{more}: {len(absent)} of the {len(names)} listed sequences have no camera file")
        return self._long_enough(names, self.min_frames)

    def cameras(self, scene: str) -> tuple[np.ndarray, np.ndarray]:
        """(normalised intrinsics (N, 4), world-to-camera (N, 3, 4)) of a sequence, read once."""
        if scene not in self._cameras:
            _, intrinsics, extrinsics = read_cameras(self.metadata / f"{scene}.txt")
            self._cameras[scene] = intrinsics, extrinsics
        return self._cameras[scene]

    def _image(self, scene: str, index: int) -> Path:
        return self.root / scene / "images" / f"{index:04d}.png"

    def scan(self, scene: str) -> SceneInventory:
        intrinsics, extrinsics = self.cameras(scene)
        folder = self.root / scene / "images"
        if not folder.is_dir():
            return SceneInventory(scene=scene, frames=[], missing=[f"{folder} (folder of the extracted frames 0000.png ...)"])
        on_disk = sorted(p.name for p in folder.glob("*.png"))
        expected = [self._image(scene, i).name for i in range(len(extrinsics))]
        inv = SceneInventory(scene=scene, frames=[])
        inv.missing = [str(folder / name) for name in expected if name not in set(on_disk)]
        if len(on_disk) != len(expected) and not inv.missing:
            inv.missing.append(f"{folder}: {len(on_disk)} frames for {len(expected)} camera lines; the frame index is the line, so the extraction must match")
        if inv.missing:
            return inv
        for i in range(len(extrinsics)):
            (inv.frames if np.isfinite(extrinsics[i]).all() else inv.invalid).append(f"{i:04d}")
        return inv

    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        intrinsics, extrinsics = self.cameras(scene)
        rows = [int(i) for i in frame_ids]
        bad = [i for i in rows if not 0 <= i < len(extrinsics)]
        if bad:
            raise DatasetError(f"re10k/{scene}: frames {bad} are not camera lines of {self.metadata / scene}.txt ({len(extrinsics)} lines)")

        def read(k: int) -> tuple[np.ndarray, ...]:
            path = self._image(scene, rows[k])
            return read_rgb(path), pixel_intrinsics(intrinsics[rows[k]], image_size(path))

        images, k_pixels = stack_frames([str(self._image(scene, i)) for i in rows], read, self.workers)
        return Sequence(dataset=self.name, scene=scene, images=images, extrinsics=extrinsics[rows], intrinsics=k_pixels, frame_ids=list(frame_ids))
