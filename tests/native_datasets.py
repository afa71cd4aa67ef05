"""Small datasets written in exactly the native formats of CO3D v2, ScanNet and 7-Scenes.

Every view is ray-cast from one analytic scene (a unit sphere on a floor square), so each pixel's
true world point is known and a test can check that an adapter's converted cameras and depth
put it back where it was. Each writer renders in its dataset's own camera convention:
OpenCV camera-to-world for ScanNet and 7-Scenes, PyTorch3D row-vector R, T with NDC intrinsics
for CO3D, without going through the adapters' conversion code.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from metrics.geometry import unproject_depth

FLOOR_Y, FLOOR_HALF = -1.0, 3.0


def raycast(origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit with the unit sphere or the floor square; inf on a miss."""
    a = np.einsum("...i,...i", dirs, dirs)
    b = dirs @ origin
    c = origin @ origin - 1.0
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_sphere = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
        t_sphere = np.where(t_sphere > 0, t_sphere, np.inf)
        t_floor = (FLOOR_Y - origin[1]) / dirs[..., 1]
        hit = origin + t_floor[..., None] * dirs
    on_floor = (t_floor > 0) & (np.abs(hit[..., 0]) < FLOOR_HALF) & (np.abs(hit[..., 2]) < FLOOR_HALF)
    return np.minimum(t_sphere, np.where(on_floor, t_floor, np.inf))


def colour_of(points: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """uint8 RGB: a checker texture on the scene, grey where nothing was hit."""
    checker = (np.floor(points[..., 0] * 3) + np.floor(points[..., 2] * 3) + np.floor(points[..., 1] * 3)) % 2
    rgb = np.stack([60 + 150 * checker, 90 + 60 * np.abs(np.sin(points[..., 0])), 200 - 120 * checker], axis=-1)
    return np.where(hit[..., None], np.nan_to_num(rgb), 128).astype(np.uint8)


@dataclass
class View:
    depth: np.ndarray  # (H, W) z-depth, 0 where the ray missed
    points: np.ndarray  # (H, W, 3) world points (nan on a miss)
    rgb: np.ndarray  # (H, W, 3) uint8


def _view(origin: np.ndarray, dirs_world: np.ndarray) -> View:
    """Rays whose camera-frame z component is 1, so the ray parameter is the z-depth."""
    t = raycast(origin, dirs_world)
    hit = np.isfinite(t)
    points = np.where(hit[..., None], origin + np.where(hit, t, 0)[..., None] * dirs_world, np.nan)
    return View(depth=np.where(hit, t, 0.0), points=points, rgb=colour_of(np.nan_to_num(points), hit))


def look_at_c2w(eye, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """4×4 camera-to-world, OpenCV axes (x right, y down, z forward)."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    c2w[:3, 3] = eye
    return c2w


def render_opencv(c2w: np.ndarray, k: np.ndarray, hw: tuple[int, int]) -> View:
    v, u = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float64)
    dirs_cam = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], axis=-1)
    return _view(c2w[:3, 3], dirs_cam @ c2w[:3, :3].T)


def orbit_eyes(n: int, radius: float = 4.0, height: float = 0.8, start: float = 0.3, span: float = 1.2) -> list[np.ndarray]:
    return [np.array([radius * np.sin(a), height + 0.1 * i, -radius * np.cos(a)]) for i, a in enumerate(np.linspace(start, start + span, n))]


def save_uint16_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint16)).save(path)


def save_rgb(path: Path, rgb: np.ndarray, size_wh: tuple[int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rgb)
    if size_wh is not None:
        image = image.resize(size_wh, Image.Resampling.BICUBIC)
    image.save(path, quality=95) if path.suffix == ".jpg" else image.save(path)


def save_matrix(path: Path, matrix: np.ndarray) -> None:
    """A 4×4 matrix as text the way the datasets write poses: scientific notation, tab separated, trailing tab."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(f"{x:.7e}" for x in row) + "\t\n" for row in matrix))


# --------------------------------------------------------------------------- ScanNet


SCANNET_DEPTH_HW = (48, 64)
SCANNET_COLOR_HW = (96, 128)
SCANNET_K_DEPTH = np.array([[52.0, 0.0, 31.3], [0.0, 50.5, 24.6], [0.0, 0.0, 1.0]])
SCANNET_TARGET = (0.1, -0.2, 0.0)


def write_scannet_scene(root: Path, scene: str, num_frames: int = 12, invalid: tuple[int, ...] = (5,)) -> dict[int, View]:
    """A scene of the .sens export layout; frames in `invalid` get an all -inf pose."""
    d = root / scene
    k_color = SCANNET_K_DEPTH.copy()
    k_color[:2] *= 2.0  # colour is twice the depth size (corners to corners)
    k_color[:2, 2] += 0.5
    for name, k in (("intrinsic_depth", SCANNET_K_DEPTH), ("intrinsic_color", k_color)):
        k4 = np.eye(4)
        k4[:3, :3] = k
        save_matrix(d / "intrinsic" / f"{name}.txt", k4)
    save_matrix(d / "intrinsic" / "extrinsic_depth.txt", np.eye(4))
    views = {}
    for i, eye in enumerate(orbit_eyes(num_frames)):
        c2w = look_at_c2w(eye, target=SCANNET_TARGET)
        view = render_opencv(c2w, SCANNET_K_DEPTH, SCANNET_DEPTH_HW)
        views[i] = view
        save_rgb(d / "color" / f"{i}.jpg", view.rgb, (SCANNET_COLOR_HW[1], SCANNET_COLOR_HW[0]))
        save_uint16_png(d / "depth" / f"{i}.png", np.round(view.depth * 1000.0))
        save_matrix(d / "pose" / f"{i}.txt", np.full((4, 4), -np.inf) if i in invalid else c2w)
    return views


# --------------------------------------------------------------------------- 7-Scenes


SEVEN_HW = (480, 640)
SEVEN_K = {"proj": 525.0, "raw": 585.0}


def seven_scenes_k(focal: float) -> np.ndarray:
    return np.array([[focal, 0.0, 320.0], [0.0, focal, 240.0], [0.0, 0.0, 1.0]])


def write_seven_scenes_sequence(root: Path, scene: str, seq: int, num_frames: int = 5, invalid: tuple[int, ...] = ()) -> dict[str, dict[int, View]]:
    """seq-NN with colour, projected and raw depth (65535 where nothing was hit) and c2w poses."""
    d = root / scene / f"seq-{seq:02d}"
    views: dict[str, dict[int, View]] = {"proj": {}, "raw": {}}
    for i, eye in enumerate(orbit_eyes(num_frames, start=0.2 * seq)):
        c2w = look_at_c2w(eye)
        for kind, suffix in (("proj", "depth.proj.png"), ("raw", "depth.png")):
            view = render_opencv(c2w, seven_scenes_k(SEVEN_K[kind]), SEVEN_HW)
            views[kind][i] = view
            save_uint16_png(d / f"frame-{i:06d}.{suffix}", np.where(view.depth > 0, np.round(view.depth * 1000.0), 65535))
        save_rgb(d / f"frame-{i:06d}.color.png", views["proj"][i].rgb)
        save_matrix(d / f"frame-{i:06d}.pose.txt", np.full((4, 4), -np.inf) if i in invalid else c2w)
    return views


def write_seven_scenes_splits(root: Path, scene: str, test: list[int], train: list[int]) -> None:
    (root / scene).mkdir(parents=True, exist_ok=True)
    (root / scene / "TestSplit.txt").write_text("".join(f"sequence{n}\n" for n in test))
    (root / scene / "TrainSplit.txt").write_text("".join(f"sequence{n}\n" for n in train))


# --------------------------------------------------------------------------- CO3D v2


CO3D_HW = (48, 64)


@dataclass
class P3DCamera:
    """A PyTorch3D camera: X_cam = X_world @ R + T (+X left, +Y up, +Z forward), NDC focal / principal point."""

    R: np.ndarray
    T: np.ndarray
    focal: np.ndarray
    principal: np.ndarray
    fmt: str

    def ndc_scale(self, hw: tuple[int, int]) -> np.ndarray:
        """Pixels per NDC unit along (x, y): the shorter side spans [-1, 1] (isotropic) or each side does."""
        half = np.array([hw[1], hw[0]], dtype=np.float64) / 2.0
        return np.full(2, half.min()) if self.fmt == "ndc_isotropic" else half

    def project(self, points: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (u right, v down) and z-depth of world points."""
        cam = points @ self.R + self.T
        ndc = self.focal * cam[..., :2] / cam[..., 2:3] + self.principal
        half = np.array([hw[1], hw[0]], dtype=np.float64) / 2.0
        return half - ndc * self.ndc_scale(hw), cam[..., 2]  # NDC +x is left and +y up on screen

    def render(self, hw: tuple[int, int]) -> View:
        v, u = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float64)
        half = np.array([hw[1], hw[0]], dtype=np.float64) / 2.0
        ndc = (half - np.stack([u, v], axis=-1)) / self.ndc_scale(hw)
        dirs_cam = np.concatenate([(ndc - self.principal) / self.focal, np.ones(hw + (1,))], axis=-1)
        centre = -self.T @ self.R.T
        return _view(centre, dirs_cam @ self.R.T)


def p3d_look_at(eye, fmt: str, focal=(1.9, 2.1), principal=(0.05, -0.08), target=(0.0, 0.0, 0.0)) -> P3DCamera:
    """A PyTorch3D camera at `eye` looking at `target`: R's columns are the camera axes (left, up, forward) in world."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target) - eye
    forward /= np.linalg.norm(forward)
    left = np.cross([0.0, 1.0, 0.0], forward)
    left /= np.linalg.norm(left)
    R = np.stack([left, np.cross(forward, left), forward], axis=1)
    return P3DCamera(R=R, T=-eye @ R, focal=np.array(focal), principal=np.array(principal), fmt=fmt)


@dataclass
class Co3dSequenceSpec:
    name: str
    num_frames: int
    fmt: str = "ndc_isotropic"
    quality: float | None = 0.9
    split: str = "test"
    bad_viewpoint: tuple[int, ...] = ()  # frame numbers whose T is NaN
    depth_scale: float = 1.3


def write_co3d_category(root: Path, category: str, specs: list[Co3dSequenceSpec], subset: str = "fewview_dev") -> dict[str, dict[int, tuple[P3DCamera, View]]]:
    """A category: frame/sequence annotations (gzip JSON), a set list, JPEG images, float16 depth PNGs, masks."""
    frames_json, seqs_json, set_list = [], [], {"train": [], "val": [], "test": []}
    truth: dict[str, dict[int, tuple[P3DCamera, View]]] = {}
    for s_i, spec in enumerate(specs):
        truth[spec.name] = {}
        seq_dir = f"{category}/{spec.name}"
        for i, eye in enumerate(orbit_eyes(spec.num_frames, start=0.4 * s_i)):
            number = i + 1
            cam = p3d_look_at(eye, spec.fmt)
            view = cam.render(CO3D_HW)
            truth[spec.name][number] = (cam, view)
            image_path = f"{seq_dir}/images/frame{number:06d}.jpg"
            depth_path = f"{seq_dir}/depths/frame{number:06d}.jpg.geometric.png"
            dmask_path = f"{seq_dir}/depth_masks/frame{number:06d}.png"
            save_rgb(root / image_path, view.rgb)
            stored = (view.depth / spec.depth_scale).astype(np.float16)
            save_uint16_png(root / depth_path, stored.view(np.uint16))
            dmask = np.full(CO3D_HW, 255, dtype=np.uint8)
            dmask[:4, :] = 0  # a band the depth mask rules out
            (root / dmask_path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(dmask).save(root / dmask_path)
            T = cam.T.tolist() if number not in spec.bad_viewpoint else [float("nan")] * 3
            frames_json.append({
                "sequence_name": spec.name,
                "frame_number": number,
                "frame_timestamp": i / 30.0,
                "image": {"path": image_path, "size": list(CO3D_HW)},
                "depth": {"path": depth_path, "scale_adjustment": spec.depth_scale, "mask_path": dmask_path},
                "mask": {"path": f"{seq_dir}/masks/frame{number:06d}.png", "mass": 100.0, "bounding_box_xywh": [8, 6, 40, 30]},
                "viewpoint": {
                    "R": cam.R.tolist(),
                    "T": T,
                    "focal_length": cam.focal.tolist(),
                    "principal_point": cam.principal.tolist(),
                    "intrinsics_format": spec.fmt,
                },
                "meta": {},
            })  # fmt: skip
            set_list[spec.split].append([spec.name, number, image_path])
        seqs_json.append({
            "sequence_name": spec.name,
            "category": category,
            "video": {"path": f"{seq_dir}/video.mp4", "length": spec.num_frames},
            "point_cloud": None,
            "viewpoint_quality_score": spec.quality,
        })  # fmt: skip
    cat = root / category
    (cat / "set_lists").mkdir(parents=True, exist_ok=True)
    for name, data in (("frame_annotations.jgz", frames_json), ("sequence_annotations.jgz", seqs_json)):
        with gzip.open(cat / name, "wt", encoding="utf-8") as f:
            json.dump(data, f)
    (cat / "set_lists" / f"set_lists_{subset}.json").write_text(json.dumps(set_list))
    return truth


# --------------------------------------------------------------------------- checks


def unproject(seq, i: int) -> tuple[np.ndarray, np.ndarray]:
    """World points of frame i's valid pixels from its GT depth, K and w2c (the adapter's outputs), and their (row, col)."""
    points = unproject_depth(seq.depth[i : i + 1], seq.intrinsics[i : i + 1], seq.extrinsics[i : i + 1])[0]
    v, u = np.nonzero(seq.valid[i])
    return points[v, u], np.stack([v, u], axis=1)


def project(seq, i: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (u, v) and z-depth of world points in frame i with the adapter's cameras."""
    cam = points @ seq.extrinsics[i][:, :3].T + seq.extrinsics[i][:, 3]
    pix = cam @ seq.intrinsics[i].T
    return pix[:, :2] / pix[:, 2:3], cam[:, 2]


def check_seen_from(seq, j: int, points: np.ndarray, c2w: np.ndarray, k: np.ndarray) -> tuple[float, float]:
    """Project world `points` into frame j with the adapter's cameras and ray-cast the true scene
    through the same (sub-pixel) positions with the true camera `c2w`, `k`.

    Each point lies on the scene, so the first hit along its ray is the point itself or an occluder
    in front of it, never a surface behind it (up to grazing rays at the sphere's rim). Returns the
    fractions of in-view points (seen unoccluded, landing in front of the visible surface).
    """
    h, w = seq.image_size
    uv, z = project(seq, j, points)
    inside = (uv[:, 0] > -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < h - 0.5) & (z > 0)
    uv, z = uv[inside], z[inside]
    dirs_cam = np.stack([(uv[:, 0] - k[0, 2]) / k[0, 0], (uv[:, 1] - k[1, 2]) / k[1, 1], np.ones(len(uv))], axis=-1)
    t = raycast(c2w[:3, 3], dirs_cam @ c2w[:3, :3].T)
    return float(np.mean(np.abs(t - z) < 1e-2)), float(np.mean(t > z + 1e-2))


def reprojected_depth_error(seq, i: int, j: int) -> np.ndarray:
    """|z − depth_j| for frame i's valid pixels unprojected with the delivered K and w2c and projected
    into frame j, where they land inside j on valid depth.

    Frame j's depth is read between pixel centres by bilinear interpolation of inverse depth (exact
    on planes); points whose four neighbours are not all valid, or which are hidden in j (more than
    5 cm behind its surface), are left out, so wrong cameras show as large errors in front.
    """
    points = unproject(seq, i)[0]
    ext, k = seq.extrinsics[j], seq.intrinsics[j]
    cam = points @ ext[:, :3].T + ext[:, 3]
    pix = cam @ k.T
    u, v, z = pix[:, 0] / pix[:, 2], pix[:, 1] / pix[:, 2], cam[:, 2]
    h, w = seq.image_size
    inside = (z > 0) & (u >= 0) & (v >= 0) & (u < w - 1) & (v < h - 1)
    u, v, z = u[inside], v[inside], z[inside]
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = u - u0, v - v0
    corners = [(v0, u0, (1 - fu) * (1 - fv)), (v0, u0 + 1, fu * (1 - fv)), (v0 + 1, u0, (1 - fu) * fv), (v0 + 1, u0 + 1, fu * fv)]
    valid = np.all([seq.valid[j][r, c] for r, c, _ in corners], axis=0)
    inverse = sum(wt / np.where(seq.valid[j][r, c], seq.depth[j][r, c], 1.0) for r, c, wt in corners)
    signed = (z - 1.0 / inverse)[valid]
    return np.abs(signed[signed < 0.05])


# --------------------------------------------------------------------------- listings


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def list_scannet_scene(root: Path, scene: str, num_frames: int) -> None:
    """The export layout with real poses and intrinsics but empty image files: enough to list frames, not to load them."""
    for name in ("intrinsic_depth", "intrinsic_color"):
        save_matrix(root / scene / "intrinsic" / f"{name}.txt", np.eye(4))
    for i, eye in enumerate(orbit_eyes(num_frames)):
        _touch(root / scene / "color" / f"{i}.jpg")
        _touch(root / scene / "depth" / f"{i}.png")
        save_matrix(root / scene / "pose" / f"{i}.txt", look_at_c2w(eye))


def list_seven_scenes_sequence(root: Path, scene: str, seq: int, num_frames: int) -> None:
    """A seq-NN folder with real poses and empty image files."""
    d = root / scene / f"seq-{seq:02d}"
    for i, eye in enumerate(orbit_eyes(num_frames)):
        _touch(d / f"frame-{i:06d}.color.png")
        _touch(d / f"frame-{i:06d}.depth.proj.png")
        save_matrix(d / f"frame-{i:06d}.pose.txt", look_at_c2w(eye))


def list_co3d_category(root: Path, category: str, frames_per_sequence: dict[str, int], subset: str = "fewview_dev") -> None:
    """Annotations and a set list (all frames in `test`) with real cameras, and empty image files."""
    frames_json, set_list = [], {"train": [], "val": [], "test": []}
    for name, count in frames_per_sequence.items():
        for number, eye in enumerate(orbit_eyes(count), start=1):
            cam = p3d_look_at(eye, "ndc_isotropic")
            image_path = f"{category}/{name}/images/frame{number:06d}.jpg"
            _touch(root / image_path)
            viewpoint = {
                "R": cam.R.tolist(), "T": cam.T.tolist(), "focal_length": cam.focal.tolist(),
                "principal_point": cam.principal.tolist(), "intrinsics_format": cam.fmt,
            }  # fmt: skip
            frames_json.append({"sequence_name": name, "frame_number": number, "image": {"path": image_path, "size": list(CO3D_HW)}, "viewpoint": viewpoint})
            set_list["test"].append([name, number, image_path])
    seqs_json = [{"sequence_name": name, "category": category, "viewpoint_quality_score": 0.9} for name in frames_per_sequence]
    (root / category / "set_lists").mkdir(parents=True, exist_ok=True)
    for filename, data in (("frame_annotations.jgz", frames_json), ("sequence_annotations.jgz", seqs_json)):
        with gzip.open(root / category / filename, "wt", encoding="utf-8") as f:
            json.dump(data, f)
    (root / category / "set_lists" / f"set_lists_{subset}.json").write_text(json.dumps(set_list))


def list_co3d_prepared(root: Path, annotations: Path, category: str, frames_per_sequence: dict[str, int]) -> None:
    """VGGT's prepared `<category>_test.jgz` (sequences in the given order) with real cameras, and empty image files."""
    sequences = {}
    for name, count in frames_per_sequence.items():
        sequences[name] = []
        for number, eye in enumerate(orbit_eyes(count), start=1):
            cam = p3d_look_at(eye, "ndc_isotropic")
            path = f"{category}/{name}/images/frame{number:06d}.jpg"
            _touch(root / path)
            sequences[name].append({"filepath": path, "R": cam.R.tolist(), "T": cam.T.tolist(), "focal_length": cam.focal.tolist(), "principal_point": cam.principal.tolist()})
    annotations.mkdir(parents=True, exist_ok=True)
    with gzip.open(annotations / f"{category}_test.jgz", "wt", encoding="utf-8") as f:
        json.dump(sequences, f)


def list_re10k_sequence(root: Path, name: str, num_frames: int, split: str = "test") -> None:
    """A RealEstate10K camera file with `num_frames` lines and as many empty frame files."""
    lines = [f"https://www.youtube.com/watch?v={name}"]
    for i, eye in enumerate(orbit_eyes(num_frames)):
        w2c = np.linalg.inv(look_at_c2w(eye))[:3]
        lines.append(" ".join([str(33366 * i), "0.9", "1.6", "0.5", "0.5", "0", "0", *(f"{x:.9f}" for x in w2c.ravel())]))
        _touch(root / name / "images" / f"{i:04d}.png")
    (root / "metadata" / split).mkdir(parents=True, exist_ok=True)
    (root / "metadata" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")


def list_nrgbd_scene(root: Path, scene: str, num_frames: int) -> None:
    """An NRGBD scene with real OpenGL camera-to-world poses and empty image and depth files."""
    poses = []
    for i, eye in enumerate(orbit_eyes(num_frames)):
        c2w = look_at_c2w(eye)
        poses.append(c2w @ np.diag([1.0, -1.0, -1.0, 1.0]))  # OpenCV axes → OpenGL's (y up, z backward)
        _touch(root / scene / "images" / f"img{i}.png")
        _touch(root / scene / "depth" / f"depth{i}.png")
    (root / scene / "focal.txt").write_text("554.2562584220408\n")
    (root / scene / "poses.txt").write_text("".join(" ".join(f"{x:.9f}" for x in row) + "\n" for pose in poses for row in pose))
