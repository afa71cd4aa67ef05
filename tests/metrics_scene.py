"""Ground-truth scenes for the metric tests, made in closed form (no files, no downloads).

A camera rig inside an axis-aligned box room: poses are exact float64 rotations, depth is the
exact ray-cast distance to the walls, so every GT quantity is known to machine precision.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def look_at(centre: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """World-to-camera [R|t] (3, 4), OpenCV axes (x right, y down, z forward), camera at `centre`."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return np.concatenate([rotation, -(rotation @ centre)[:, None]], axis=1)


def orbit_extrinsics(frames: int, radius: float = 0.8, seed: int = 0) -> np.ndarray:
    """(S, 3, 4) cameras on a wobbly circle, each looking outwards at the walls."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, frames, endpoint=False)
    extrinsics = []
    for angle in angles:
        centre = np.array([radius * np.cos(angle), radius * np.sin(angle), 0.3 * np.sin(3 * angle)])
        target = centre + np.array([np.cos(angle + 0.6), np.sin(angle + 0.6), rng.uniform(-0.3, 0.3)])
        extrinsics.append(look_at(centre, target))
    return np.stack(extrinsics)


def intrinsics_for(frames: int, height: int, width: int) -> np.ndarray:
    focal = 0.9 * width
    k = np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1.0]])
    return np.repeat(k[None], frames, axis=0)


def box_depth(extrinsics: np.ndarray, intrinsics: np.ndarray, height: int, width: int, half_size: np.ndarray) -> np.ndarray:
    """Exact z-depth (S, H, W) of the inside walls of the box [−half_size, half_size] seen by the cameras."""
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)
    depth = np.empty((len(extrinsics), height, width))
    for frame, (pose, k) in enumerate(zip(extrinsics, intrinsics)):
        rotation, translation = pose[:, :3], pose[:, 3]
        centre = -rotation.T @ translation
        rays = pixels @ np.linalg.inv(k).T @ rotation  # world directions of camera rays with z_cam = 1
        with np.errstate(divide="ignore"):
            exits = (np.sign(rays) * half_size - centre) / rays
        depth[frame] = np.min(np.where(exits > 0, exits, np.inf), axis=-1)
    return depth


def box_room(frames: int = 6, height: int = 24, width: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """A GT dict (extrinsics, intrinsics, depth, valid) of a rig inside a 4 × 3 × 2.4 box room."""
    extrinsics = orbit_extrinsics(frames, seed=seed)
    intrinsics = intrinsics_for(frames, height, width)
    depth = box_depth(extrinsics, intrinsics, height, width, np.array([2.0, 1.5, 1.2]))
    return {"extrinsics": extrinsics, "intrinsics": intrinsics, "depth": depth, "valid": depth > 0}


def random_similarity(seed: int = 1) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation, translation) of a generic Sim(3)."""
    rng = np.random.default_rng(seed)
    return float(rng.uniform(0.3, 3.0)), Rotation.random(random_state=seed).as_matrix(), rng.normal(size=3)


def transform_world(extrinsics: np.ndarray, scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Extrinsics of the same cameras after the world is mapped by x ↦ scale · R x + t.

    A camera at c with rotation R_c sees the new world with rotation R_c Rᵀ from centre s R c + t.
    """
    rotations = extrinsics[:, :, :3] @ rotation.T
    centres = -np.einsum("sji,sj->si", extrinsics[:, :, :3], extrinsics[:, :, 3])
    new_centres = scale * centres @ rotation.T + translation
    return np.concatenate([rotations, -np.einsum("sij,sj->si", rotations, new_centres)[:, :, None]], axis=2)
