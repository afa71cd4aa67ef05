"""Small Neural RGB-D scenes written in the native layout, ray-cast from the analytic scene of
`tests.native_datasets` with OpenGL cameras (x right, y up, z backward), built and rendered in
OpenGL axes without going through the adapter's conversion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.native_datasets import View, colour_of, orbit_eyes, raycast, save_rgb, save_uint16_png

NRGBD_HW = (480, 640)
NRGBD_FOCAL = 554.2562584220408
NRGBD_CENTRE = (320.0, 240.0)
NRGBD_TARGET = (0.1, -0.2, 0.0)


def look_at_gl(eye, target=NRGBD_TARGET, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """4×4 camera-to-world in OpenGL axes: the camera looks along its −z, its +y is up in the image."""
    eye = np.asarray(eye, dtype=np.float64)
    back = eye - np.asarray(target, dtype=np.float64)
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, np.cross(back, right), back], axis=1)
    c2w[:3, 3] = eye
    return c2w


def render_opengl(c2w: np.ndarray, focal: float, hw: tuple[int, int] = NRGBD_HW) -> View:
    """Pixel (u, v) looks along ((u − cx)/f, −(v − cy)/f, −1) in the OpenGL camera; |z| = 1, so the
    ray parameter is the z-depth."""
    v, u = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float64)
    dirs_cam = np.stack([(u - NRGBD_CENTRE[0]) / focal, -(v - NRGBD_CENTRE[1]) / focal, -np.ones_like(u)], axis=-1)
    dirs = dirs_cam @ c2w[:3, :3].T
    origin = c2w[:3, 3]
    t = raycast(origin, dirs)
    hit = np.isfinite(t)
    points = np.where(hit[..., None], origin + np.where(hit, t, 0)[..., None] * dirs, np.nan)
    return View(depth=np.where(hit, t, 0.0), points=points, rgb=colour_of(np.nan_to_num(points), hit))


def pose_text(poses: list[np.ndarray], blank_lines: bool) -> str:
    """Matrices as poses.txt holds them: 4 lines of 4 numbers each, optionally a blank line after each."""
    blocks = ["".join(" ".join(f"{x:.10g}" for x in row) + "\n" for row in pose) for pose in poses]
    return ("\n" if blank_lines else "").join(blocks)


def write_nrgbd_scene(
    root: Path, scene: str, num_frames: int = 12, focal: float = NRGBD_FOCAL, nan_poses: tuple[int, ...] = (), blank_lines: bool = True
) -> dict[int, tuple[np.ndarray, View]]:
    """A scene folder: images/, depth/ (GT, mm), the noisy depth folders and trainval_poses.txt with
    values that differ from the GT, focal.txt and poses.txt (all-nan matrices for `nan_poses`).
    Returns frame i → (OpenGL camera-to-world, rendered view)."""
    d = root / scene
    truth, poses, noisy_poses = {}, [], []
    for i, eye in enumerate(orbit_eyes(num_frames)):
        c2w = look_at_gl(eye)
        view = render_opengl(c2w, focal)
        truth[i] = (c2w, view)
        save_rgb(d / "images" / f"img{i}.png", view.rgb)
        millimetres = np.round(view.depth * 1000.0)
        save_uint16_png(d / "depth" / f"depth{i}.png", millimetres)
        noisy = np.where(millimetres > 0, millimetres + 45 + np.arange(NRGBD_HW[1]) % 13, 0)  # off by 4.5-5.7 cm
        save_uint16_png(d / "depth_with_noise" / f"depth{i}.png", noisy)
        save_uint16_png(d / "depth_filtered" / f"depth{i}.png", noisy + 7)
        poses.append(np.full((4, 4), np.nan) if i in nan_poses else c2w)
        shifted = c2w.copy()
        shifted[:3, 3] += 0.3
        noisy_poses.append(np.full((4, 4), np.nan) if i % 4 == 1 else shifted)
    (d / "poses.txt").write_text(pose_text(poses, blank_lines))
    (d / "trainval_poses.txt").write_text(pose_text(noisy_poses, blank_lines=False))
    (d / "focal.txt").write_text(f"{focal!r}\n")
    return truth
