"""Small TUM RGB-D sequences written in the native layout, ray-cast from the analytic scene of
`tests.native_datasets`, and a depth-reprojection check shared by the RGB-D adapter tests.

The streams run on their own clocks as in the real recordings: ground truth at 100 Hz (4
decimals), RGB at about 30 Hz with jitter, depth a few ms after each RGB image. Each RGB image is
rendered from the pose of the GT line nearest to it, as that line is written (quaternion scalar
last, rounded to 4 decimals), so the data is exact for an adapter that associates correctly.
Quaternions come from scipy, not from the adapter's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from tests.native_datasets import View, look_at_c2w, render_opencv, save_rgb, save_uint16_png

TUM_HW = (480, 640)
TUM_CAMERAS = {1: (517.3, 516.5, 318.6, 255.3), 2: (520.9, 521.0, 325.1, 249.7), 3: (535.4, 539.2, 320.1, 247.6)}
TUM_T0 = 1305031102.0
RGB_PERIOD = 1 / 30
DEPTH_DELAY = 0.0071
TUM_TARGET = (0.1, -0.2, 0.0)


def tum_k(camera: int) -> np.ndarray:
    fx, fy, cx, cy = TUM_CAMERAS[camera]
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def tum_trajectory(t: float, start: float = 0.3) -> np.ndarray:
    """An OpenCV camera-to-world that keeps moving: about 1.7° and 1 cm per 10 ms GT step."""
    s = t - TUM_T0
    angle = start + 3.0 * s
    return look_at_c2w([4.0 * np.sin(angle), 0.8 + 1.0 * s, -4.0 * np.cos(angle)], target=TUM_TARGET)


def gt_line(t: float, c2w: np.ndarray, quaternion_scale: float = 1.0) -> tuple[str, np.ndarray]:
    """A groundtruth.txt line for pose `c2w` at time `t`, and the camera-to-world that line encodes."""
    q = np.round(Rotation.from_matrix(c2w[:3, :3]).as_quat() * quaternion_scale, 4)  # scipy: x, y, z, w
    centre = np.round(c2w[:3, 3], 4)
    written = np.eye(4)
    written[:3, :3] = Rotation.from_quat(q).as_matrix()  # scipy normalises
    written[:3, 3] = centre
    return f"{t:.4f} " + " ".join(f"{x:.4f}" for x in (*centre, *q)), written


@dataclass
class TumFrame:
    stamp: str  # the RGB timestamp as written in rgb.txt
    c2w: np.ndarray | None  # OpenCV camera-to-world it was rendered from; None if no GT line is near
    view: View
    depth: bool  # whether a depth frame was written within the association tolerance


def write_tum_sequence(
    root: Path,
    name: str,
    num_frames: int = 6,
    camera: int = 3,
    no_gt: tuple[int, ...] = (),
    no_depth: tuple[int, ...] = (),
    scaled_quaternion: tuple[int, ...] = (),
    header_lines: int = 3,
    start: float = 0.3,
) -> list[TumFrame]:
    """A sequence folder: rgb/, depth/, rgb.txt, depth.txt, groundtruth.txt (with a gap at each RGB
    image in `no_gt`), no depth frame near the RGB images in `no_depth`, and the quaternion of the
    GT line matched by each image in `scaled_quaternion` written 1.5 ‰ too long."""
    d = root / name
    rgb_times = [TUM_T0 + i * RGB_PERIOD + 0.0013 * ((7 * i) % 5) + 0.000017 for i in range(num_frames)]
    gap = [rgb_times[i] for i in no_gt]
    gt_lines, gt_by_time = [], {}
    for k in range(int((rgb_times[-1] - TUM_T0 + 0.6) / 0.01)):
        t = round(TUM_T0 - 0.3 + k * 0.01 + 0.0004, 4)
        if any(abs(t - g) < 0.025 for g in gap):
            continue
        nearest = int(np.argmin([abs(t - r) for r in rgb_times]))
        scale = 1.0015 if nearest in scaled_quaternion and abs(t - rgb_times[nearest]) <= 0.005 else 1.0
        line, written = gt_line(t, tum_trajectory(t, start), scale)
        gt_lines.append(line)
        gt_by_time[t] = written
    frames, rgb_lines, depth_lines = [], [], []
    k = tum_k(camera)
    for i, t in enumerate(rgb_times):
        stamp = f"{t:.6f}"
        near = [g for g in gt_by_time if abs(g - t) < 0.02]
        c2w = gt_by_time[min(near, key=lambda g: abs(g - t))] if near else None
        view = render_opencv(c2w if c2w is not None else tum_trajectory(t, start), k, TUM_HW)
        save_rgb(d / "rgb" / f"{stamp}.png", view.rgb)
        rgb_lines.append(f"{stamp} rgb/{stamp}.png")
        if i not in no_depth:
            depth_stamp = f"{t + DEPTH_DELAY:.6f}"
            save_uint16_png(d / "depth" / f"{depth_stamp}.png", np.round(view.depth * 5000.0))
            depth_lines.append(f"{depth_stamp} depth/{depth_stamp}.png")
        frames.append(TumFrame(stamp, c2w, view, i not in no_depth))
    header = [f"# {name} header line {n}" if n % 2 == 0 else f"#header line {n}" for n in range(header_lines)]
    for filename, lines in (("rgb.txt", rgb_lines), ("depth.txt", depth_lines), ("groundtruth.txt", gt_lines)):
        (d / filename).write_text("\n".join(header + lines) + "\n")
    return frames
