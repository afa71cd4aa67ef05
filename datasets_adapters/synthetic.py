"""Procedural scenes with exact ground truth: textured boxes in an open-topped room, ray-cast.

The embedded default data set: nothing to download, deterministic by seed, any image size and
length. Depth, valid mask, poses and intrinsics are exact by construction, so the metric path can
be checked against them end to end. With ``render=False`` the images are seeded noise and only
poses and intrinsics are given: long timing runs (up to 1000 frames) then cost no rendering time.

World frame: z up, the floor is z = 0, the room spans x, y in [-5, 5] with walls 3 m high and no
ceiling (rays leaving through the top are sky: depth 0, invalid). Each scene places a few boxes
near the centre and moves a pinhole camera along its own path.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from datasets_adapters.base import DATASETS, DatasetAdapter, DatasetError
from datasets_adapters.sequence import Sequence
from metrics.geometry import camera_centres

ROOM_HALF = np.array([5.0, 5.0, 1.5])
ROOM_CENTRE = np.array([0.0, 0.0, 1.5])
LIGHT = np.array([0.4, -0.3, 0.85]) / np.linalg.norm([0.4, -0.3, 0.85])
WALL_COLOURS = np.array(
    [[0.75, 0.55, 0.45], [0.45, 0.6, 0.75], [0.6, 0.7, 0.5], [0.7, 0.65, 0.4], [0.6, 0.58, 0.55], [0.8, 0.8, 0.8]]
)  # faces -x, +x, -y, +y, floor, (ceiling: never seen)


@dataclass(frozen=True)
class Box:
    centre: np.ndarray  # (3,)
    half: np.ndarray  # (3,) half extents along the box's own axes
    yaw: float  # rotation about world z, radians
    colour: np.ndarray  # (3,) base albedo

    @property
    def rotation(self) -> np.ndarray:
        """Box-to-world rotation."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera [R|t] of a camera at `centre` looking at `target`, world z up."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    return np.concatenate([rot, (-rot @ centre)[:, None]], axis=1)


def _orbit(i: np.ndarray, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A full circle around the boxes, bobbing gently, always looking at the centre."""
    theta = rng.uniform(0, 2 * np.pi) + 2 * np.pi * i / length
    centres = np.stack([3.6 * np.cos(theta), 3.6 * np.sin(theta), 1.6 + 0.2 * np.sin(2 * theta)], axis=-1)
    targets = np.broadcast_to(np.array([0.0, 0.0, 0.4]), centres.shape)
    return centres, targets


def _walk(i: np.ndarray, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A walk past the boxes along one side of the room, looking across it and panning."""
    s = i / max(length - 1, 1)
    centres = np.stack([-3.0 + 6.0 * s, -3.6 + 0.3 * np.sin(2 * np.pi * s), 1.5 + 0.05 * np.sin(6 * np.pi * s)], axis=-1)
    yaw = np.pi / 2 + np.deg2rad(25.0) * np.sin(3 * np.pi * s + rng.uniform(0, np.pi))
    pitch = np.deg2rad(-12.0)
    directions = np.stack([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.full_like(yaw, np.sin(pitch))], axis=-1)
    return centres, centres + directions


CAMERA_PATHS: dict[str, Callable[[np.ndarray, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "orbit": _orbit,
    "walk": _walk,
}


def _slabs(origin: np.ndarray, dirs: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis ray parameters of the near and far planes of a box centred at 0: (3, N) each.

    Rays are stored axis-first, (3, N), so the reductions over the three axes run on whole rows.
    """
    safe = np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
    t1 = (-half[:, None] - origin[:, None]) / safe
    t2 = (half[:, None] - origin[:, None]) / safe
    return np.minimum(t1, t2), np.maximum(t1, t2)


def cast_rays(origin: np.ndarray, dirs: np.ndarray, boxes: list[Box]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit of rays `origin + t·dirs` (dirs (3, N), camera inside the room) with the room and boxes.

    Returns t (N,) (inf where the ray leaves through the open top), unit normals (3, N) facing the
    camera, and a surface id (N,): 0..5 the room faces (-x, +x, -y, +y, floor, top), 6+k box k.
    """
    n = dirs.shape[1]
    columns = np.arange(n)
    _, far = _slabs(origin - ROOM_CENTRE, dirs, ROOM_HALF)
    axis = far.argmin(axis=0)
    t = far[axis, columns]
    positive = dirs[axis, columns] > 0
    surface = 2 * axis + positive  # which room face the ray leaves through: 5 is the open top
    normals = np.zeros_like(dirs)
    normals[axis, columns] = np.where(positive, -1.0, 1.0)
    t = np.where(surface == 5, np.inf, t)

    for k, box in enumerate(boxes):
        rot = box.rotation
        local_dirs = rot.T @ dirs
        near, far = _slabs(rot.T @ (origin - box.centre), local_dirs, box.half)
        t_in, t_out = near.max(axis=0), far.min(axis=0)
        hit = np.flatnonzero((t_in <= t_out) & (t_in > 1e-6) & (t_in < t))
        if hit.size == 0:
            continue
        face = near[:, hit].argmax(axis=0)
        local_normal = np.zeros((3, hit.size))
        local_normal[face, np.arange(hit.size)] = -np.sign(local_dirs[face, hit])
        t[hit] = t_in[hit]
        normals[:, hit] = rot @ local_normal
        surface[hit] = 6 + k
    return t, normals, surface


def _texture(points: np.ndarray, surface: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Albedo (3, N) at world `points` (3, N): 0.5 m checker tiles and 7 cm speckle, fixed on each surface."""
    tiles = np.floor(points / 0.5).sum(axis=0) % 2
    cells = np.floor(points / 0.07)
    speckle = np.sin(np.array([12.9898, 78.233, 37.719]) @ cells + 17.0 * surface) * 43758.5453
    speckle -= np.floor(speckle)
    return colours[surface].T * (0.55 + 0.25 * tiles + 0.2 * speckle)


class SyntheticScenes(DatasetAdapter):
    """Procedural boxes in a room, ray-cast with exact depth; scenes `orbit` and `walk`."""

    name = "synthetic"

    def __init__(
        self,
        root: str | None = None,
        *,
        length: int = 100,
        height: int = 392,
        width: int = 518,
        fov_deg: float = 60.0,
        boxes: int = 7,
        render: bool = True,
        seed: int = 0,
    ) -> None:
        if root is not None:
            raise DatasetError("synthetic: the scenes are generated, not read from a folder: give no root (no suite field `root:`, no ROOT after `check-data synthetic`)")
        for label, value, low in (("length", length, 1), ("height", height, 1), ("width", width, 1), ("boxes", boxes, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise DatasetError(f"synthetic: {label} must be an integer >= {low}, got {value!r}")
        if not 1.0 <= fov_deg <= 150.0:
            raise DatasetError(f"synthetic: fov_deg must be in [1, 150] degrees, got {fov_deg!r}")
        super().__init__(None)
        self.length, self.height, self.width = length, height, width
        self.num_boxes, self.render, self.seed = boxes, bool(render), seed
        focal = (width / 2) / np.tan(np.deg2rad(fov_deg) / 2)
        self.intrinsics = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])

    def scenes(self) -> list[str]:
        return list(CAMERA_PATHS)

    def frame_ids(self, scene: str) -> list[str]:
        self._check_scene(scene)
        return [f"{i:06d}" for i in range(self.length)]

    def _check_scene(self, scene: str) -> None:
        if scene not in CAMERA_PATHS:
            raise DatasetError(f"synthetic: no scene {scene!r}; scenes: {', '.join(CAMERA_PATHS)}")

    def _rng(self, scene: str, *stream: int) -> np.random.Generator:
        """A generator fixed by (seed, scene, stream): the same inputs give the same scene on any machine."""
        return np.random.default_rng([self.seed, zlib.crc32(scene.encode()), *stream])

    def layout(self, scene: str) -> list[Box]:
        """The boxes of `scene`: standing on the floor within 2 m of the room centre."""
        rng = self._rng(scene, 0)
        boxes = []
        for _ in range(self.num_boxes):
            radius, angle = 2.0 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
            half = np.array([rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.8)])
            centre = np.array([radius * np.cos(angle), radius * np.sin(angle), half[2]])
            boxes.append(Box(centre, half, rng.uniform(0, np.pi), rng.uniform(0.25, 0.95, size=3)))
        return boxes

    def cameras(self, scene: str, indices: np.ndarray) -> np.ndarray:
        """World-to-camera extrinsics (len(indices), 3, 4) of frames `indices` of `scene`."""
        self._check_scene(scene)
        centres, targets = CAMERA_PATHS[scene](np.asarray(indices, dtype=np.float64), self.length, self._rng(scene, 1))
        return np.stack([look_at(c, t) for c, t in zip(centres, targets)])

    def render_frame(self, extrinsic: np.ndarray, boxes: list[Box]) -> tuple[np.ndarray, np.ndarray]:
        """Image (3, H, W) in [0, 1] and z-depth (H, W) (0 where the ray meets nothing)."""
        rot = extrinsic[:, :3]
        centre = camera_centres(extrinsic[None])[0]
        ys, xs = np.mgrid[0 : self.height, 0 : self.width].reshape(2, -1).astype(np.float64)
        k = self.intrinsics
        rays_cam = np.stack([(xs - k[0, 2]) / k[0, 0], (ys - k[1, 2]) / k[1, 1], np.ones_like(xs)])
        dirs = rot.T @ rays_cam  # camera z = 1, so the ray parameter is the z-depth
        t, normals, surface = cast_rays(centre, dirs, boxes)
        valid = np.isfinite(t)
        colours = np.concatenate([WALL_COLOURS, np.array([b.colour for b in boxes]).reshape(-1, 3)])
        points = centre[:, None] + dirs * np.where(valid, t, 0.0)
        shade = 0.35 + 0.65 * np.clip(LIGHT @ normals, 0.0, None)
        elevation = np.clip(dirs[2] / np.linalg.norm(dirs, axis=0), 0.0, 1.0)
        sky = np.array([0.62, 0.75, 0.9])[:, None] * (0.8 + 0.2 * elevation)
        rgb = np.where(valid, _texture(points, surface, colours) * shade, sky)
        image = np.clip(rgb, 0.0, 1.0).reshape(3, self.height, self.width)
        depth = np.where(valid, t, 0.0).reshape(self.height, self.width)
        return image.astype(np.float32), depth.astype(np.float32)

    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        indices = np.array([int(f) for f in frame_ids])
        extrinsics = self.cameras(scene, indices)
        intrinsics = np.repeat(self.intrinsics[None], len(indices), axis=0)
        if not self.render:
            shape = (len(indices), 3, self.height, self.width)
            images = self._rng(scene, 2).random(shape, dtype=np.float32)
            return Sequence(self.name, scene, images, extrinsics, intrinsics, frame_ids=list(frame_ids))
        boxes = self.layout(scene)
        frames = [self.render_frame(e, boxes) for e in extrinsics]
        images = np.stack([f[0] for f in frames])
        depth = np.stack([f[1] for f in frames])
        return Sequence(self.name, scene, images, extrinsics, intrinsics, depth=depth, frame_ids=list(frame_ids))


DATASETS.register("synthetic", SyntheticScenes, help="procedural boxes in a room with exact depth and poses (embedded, no download)")
