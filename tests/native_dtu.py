"""Small DTU scans written in exactly the layout MVSNet's test set and Spann3R's depths and masks use.

The views are ray-cast from the analytic scene of `tests.native_datasets` (a unit sphere on a floor
square, in metres) and written in DTU's units, millimetres: the scene seen by these files is the
same scene made 1000 times larger. Cameras are written as MVSNet writes them (world-to-camera
4×4, K, depth-range line), without going through the adapter's code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.native_datasets import View, look_at_c2w, orbit_eyes, render_opencv, save_rgb

DTU_HW = (48, 64)
DTU_K = np.array([[60.3, 0.0, 32.7], [0.0, 59.8, 23.4], [0.0, 0.0, 1.0]])  # fx ≠ fy, centre near the middle, like DTU's
TEST_K = np.array([[2892.33, 0.0, 823.205], [0.0, 2883.18, 619.071], [0.0, 0.0, 1.0]])  # the test set's, for 1600×1200
TRAINING_K = np.array([[361.54125, 0.0, 82.900625], [0.0, 360.3975, 66.383875], [0.0, 0.0, 1.0]])  # MVSNet's training Cameras/, 160×128
DEPTH_RANGES = ("425 2.5", "425 2.5 192", "425 2.5 192 935.5")  # the depth-range line with 2, 3, 4 numbers: 29, 30, 31 words
TARGET = (0.0, -0.3, 0.0)


def true_c2w(scan_number: int, num_views: int) -> list[np.ndarray]:
    """Camera-to-world in metres (OpenCV axes) of the views of a test scan."""
    return [look_at_c2w(eye, target=TARGET) for eye in orbit_eyes(num_views, start=0.1 * scan_number, span=0.9)]


def cam_text(w2c_mm: np.ndarray, k: np.ndarray, depth_range: str) -> str:
    """A cam.txt in MVSNet's layout."""
    rows = lambda m: "".join(" ".join(f"{x:.10g}" for x in row) + "\n" for row in m)  # noqa: E731
    return f"extrinsic\n{rows(w2c_mm)}\nintrinsic\n{rows(k)}\n{depth_range}\n"


def save_mask(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8), mode="L").save(path)


def save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)


def write_dtu_scan(
    root: Path,
    scan_number: int,
    num_views: int,
    invalid: tuple[int, ...] = (),
    masks: dict[int, np.ndarray] | None = None,
) -> dict[int, View]:
    """`<root>/scanN/` with images, cams, depths (float32 mm), binary_masks (all 255 unless given in
    `masks`, any size) and pair.txt. View i's depth-range line is DEPTH_RANGES[i % 3]; views in
    `invalid` get a NaN extrinsic. Returns the true views, in metres."""
    d = root / f"scan{scan_number}"
    views = {}
    for i, c2w in enumerate(true_c2w(scan_number, num_views)):
        view = render_opencv(c2w, DTU_K, DTU_HW)
        views[i] = view
        w2c_mm = np.linalg.inv(c2w)
        w2c_mm[:3, 3] *= 1000.0
        if i in invalid:
            w2c_mm[:3] = np.nan
        name = f"{i:08d}"
        save_rgb(d / "images" / f"{name}.jpg", view.rgb)
        (d / "cams").mkdir(parents=True, exist_ok=True)
        (d / "cams" / f"{name}_cam.txt").write_text(cam_text(w2c_mm, DTU_K, DEPTH_RANGES[i % 3]))
        save_npy(d / "depths" / f"{name}.npy", (view.depth * 1000.0).astype(np.float32))
        save_mask(d / "binary_masks" / f"{name}.png", (masks or {}).get(i, np.full(DTU_HW, 255, dtype=np.uint8)))
    lines = [f"{num_views}\n"]
    for i in range(num_views):
        others = [j for j in range(num_views) if j != i][:10]
        lines.append(f"{i}\n{len(others)} " + " ".join(f"{j} {100.0 - j:.1f}" for j in others) + "\n")
    (d / "pair.txt").write_text("".join(lines))
    return views
