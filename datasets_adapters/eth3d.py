"""ETH3D high-resolution multi-view (DSLR training scenes) in the layout its downloads unpack to.

    <root>/<scene>/images/dslr_images/DSC_0286.JPG          6048×4032 JPEG, distorted (lens as shot)
                   dslr_calibration_jpg/cameras.txt         COLMAP text: CAMERA_ID MODEL WIDTH HEIGHT PARAMS…
                   dslr_calibration_jpg/images.txt          COLMAP text, two lines per image:
                                                            IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME
                                                            (world-to-camera, scalar-first quaternion), then
                                                            a POINTS2D line that may be empty
                   dslr_calibration_jpg/points3D.txt        (unused)
                   ground_truth_depth/dslr_images/DSC_0286.JPG
                                                            NOT a JPEG: raw little-endian float32, H×W
                                                            row-major, z-depth in metres of the distorted
                                                            image, +inf = no depth (sparse laser scan)

(`multi_view_training_dslr_jpg.7z` gives images/ and dslr_calibration_jpg/; `<scene>_dslr_depth.7z`
gives ground_truth_depth/.) A scene is a folder holding dslr_calibration_jpg/images.txt; its frames
are the images of images.txt sorted by NAME, with the file stem as frame id (`DSC_0286`); image ids
say nothing about order. Frames whose pose is not finite are dropped and counted.

Cameras: PINHOLE (fx fy cx cy), SIMPLE_PINHOLE (f cx cy) and THIN_PRISM_FISHEYE (fx fy cx cy k1 k2
p1 p2 k3 k4 sx1 sy1); a scene can hold several. COLMAP puts the centre of the top-left pixel at
(0.5, 0.5), so K here has cx − 0.5, cy − 0.5: every adapter and metric of this harness puts pixel
centres at integer coordinates, and that K is where the calibration says each pixel looks. π³'s
preparation keeps COLMAP's cx, cy as integer-centre values (a half-pixel shift of its rays).

Undistortion (`undistort`, on by default: π³'s preparation, which the `pi3-mv-recon` protocol
scores): fisheye images and depth become pinhole images of the same size with the same K (the
pinhole part of the camera), using the fisheye model with k1–k4 only, θ = atan(r),
θ_d = θ(1 + k1θ² + k2θ⁴ + k3θ⁶ + k4θ⁸), distorted point = (θ_d / r)·(x, y); the tangential p1, p2 and
thin-prism sx1, sy1 terms are ignored, as π³'s preparation (OpenCV's fisheye model) ignores them.
Images are resampled bilinearly (outside the distorted image is black). Depth is not resampled:
each valid depth pixel moves to the rounded pixel of its undistorted position with its value kept
(same ray, same z), and where several land on one pixel the last in row-major order wins, with NO
z-test, exactly as π³ splats it; a farther surface can thus cover a nearer one at depth edges.
Non-finite depth is 0 (invalid) here; π³'s loader makes it −1, invalid all the same under the
protocol's depth > 1e-4. With `undistort: false` fisheye frames come as shot with the pinhole part of
K: geometrically approximate (the lens distortion is not modelled). Pinhole cameras are never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets_adapters.base import DATASETS, DatasetError, ScannedAdapter, SceneInventory
from datasets_adapters.cameras import rotation_from_quaternion
from datasets_adapters.io import image_size, read_rgb, read_text, stack_frames, wxh
from datasets_adapters.sequence import Sequence

CALIBRATION = "dslr_calibration_jpg"
IMAGES, DEPTH = "images", "ground_truth_depth"
MODELS = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "THIN_PRISM_FISHEYE": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "sx1", "sy1"),
}
IMAGE_FIELDS = "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME"
NEWTON_STEPS = 50
INVERSE_TOLERANCE = 1e-12  # |θ_d(θ) − θ_d| in radians at which the inverse of the distortion is accepted
ROWS_PER_CHUNK = 256  # image rows undistorted at once (a 6048-wide chunk holds ~1.5 M sample points)


# --------------------------------------------------------------------------- calibration files


@dataclass(frozen=True, slots=True)
class Camera:
    """One line of cameras.txt."""

    camera_id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.height, self.width

    def intrinsics(self) -> np.ndarray:
        """Pixel K of the pinhole part, pixel centres at integer coordinates (COLMAP's cx, cy − 0.5)."""
        if self.model == "SIMPLE_PINHOLE":
            f, cx, cy = self.params
            fx = fy = f
        else:
            fx, fy, cx, cy = self.params[:4]
        return np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])

    @property
    def fisheye(self) -> np.ndarray | None:
        """k1, k2, k3, k4 of a fisheye camera, None for a pinhole one (p1, p2, sx1, sy1 are not used)."""
        if self.model != "THIN_PRISM_FISHEYE":
            return None
        p = self.params
        return np.array([p[4], p[5], p[8], p[9]])


@dataclass(frozen=True, slots=True)
class Registration:
    """The pose line of one image in images.txt, the pose converted to a 3×4 world-to-camera."""

    image_id: int
    name: str  # relative to images/ and ground_truth_depth/, e.g. dslr_images/DSC_0286.JPG
    camera_id: int
    extrinsics: np.ndarray  # (3, 4) float64; NaN when the file's pose is not finite

    @property
    def frame_id(self) -> str:
        return Path(self.name).stem


def _lines(path: Path) -> list[str]:
    return read_text(path).splitlines()


def _is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def read_cameras(path: Path) -> dict[int, Camera]:
    """The cameras of a COLMAP cameras.txt by id; an unsupported model or malformed line is one error."""
    cameras: dict[int, Camera] = {}
    for number, line in enumerate(_lines(path), start=1):
        if _is_comment_or_blank(line):
            continue
        words = line.split()
        try:
            camera_id, width, height = int(words[0]), int(words[2]), int(words[3])
            params = tuple(float(w) for w in words[4:])
        except (ValueError, IndexError):
            raise DatasetError(f"{path}: line {number}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS…, found {line[:80]!r}") from None
        model = words[1]
        if model not in MODELS:
            raise DatasetError(f"{path}: camera {camera_id} (line {number}) has model {model}; supported models: {', '.join(MODELS)}")
        names = MODELS[model]
        if len(params) != len(names):
            raise DatasetError(f"{path}: line {number}: camera {camera_id} ({model}) has {len(params)} parameters, expected {len(names)} ({' '.join(names)})")
        if width < 1 or height < 1 or not np.isfinite(params).all() or min(params[: 2 if model != "SIMPLE_PINHOLE" else 1]) <= 0:
            raise DatasetError(f"{path}: line {number}: camera {camera_id} needs a positive size and focal length and finite parameters, found {line[:80]!r}")
        if camera_id in cameras:
            raise DatasetError(f"{path}: line {number}: camera {camera_id} is defined twice")
        cameras[camera_id] = Camera(camera_id, model, width, height, params)
    if not cameras:
        raise DatasetError(f"{path}: no cameras (expected lines CAMERA_ID MODEL WIDTH HEIGHT PARAMS…)")
    return cameras


def _pose(path: Path, number: int, values: list[float]) -> np.ndarray:
    """3×4 world-to-camera of QW QX QY QZ TX TY TZ (quaternion normalised); NaN when not finite."""
    q, t = np.array(values[:4]), np.array(values[4:])
    if not (np.isfinite(q).all() and np.isfinite(t).all()):
        return np.full((3, 4), np.nan)
    norm = np.linalg.norm(q)
    if norm < 1e-12:
        raise DatasetError(f"{path}: line {number}: the quaternion QW QX QY QZ is zero, not a rotation")
    return np.concatenate([rotation_from_quaternion(q / norm, scalar_first=True), t[:, None]], axis=1)


def read_images(path: Path, cameras: dict[int, Camera], cameras_path: Path | str = "cameras.txt") -> list[Registration]:
    """The images of a COLMAP images.txt, sorted by name.

    Lines come in pairs: after `#` comments, each image line is followed by exactly one POINTS2D
    line, which is empty for an image without 2D points. Blank lines are therefore skipped only
    where an image line is expected, never where its POINTS2D line is.
    """
    lines = _lines(path)
    found: dict[int, Registration] = {}
    names: set[str] = set()
    i = 0
    while i < len(lines):
        line, number = lines[i], i + 1
        i += 1
        if _is_comment_or_blank(line):
            continue
        words = line.split(maxsplit=9)
        try:
            if len(words) != 10:
                raise ValueError
            image_id, camera_id = int(words[0]), int(words[8])
            values = [float(w) for w in words[1:8]]
        except ValueError:
            raise DatasetError(f"{path}: line {number}: expected {IMAGE_FIELDS}, found {line[:80]!r}") from None
        name = words[9].strip()
        if camera_id not in cameras:
            raise DatasetError(f"{path}: line {number}: image {image_id} uses camera {camera_id}, which {cameras_path} does not define")
        if image_id in found:
            raise DatasetError(f"{path}: line {number}: image id {image_id} appears twice")
        if name in names:
            raise DatasetError(f"{path}: line {number}: image {name} appears twice")
        if i < len(lines):  # its POINTS2D line (the file may end without one after the last image)
            points = lines[i].split()
            i += 1
            if len(points) % 3 or (points and not _is_number(points[0])):
                raise DatasetError(
                    f"{path}: line {i}: expected the POINTS2D line of image {image_id} (X Y POINT3D_ID triples, or empty), "
                    f"found {lines[i - 1][:80]!r}; every image line is followed by one POINTS2D line"
                )
        found[image_id] = Registration(image_id, name, camera_id, _pose(path, number, values))
        names.add(name)
    if not found:
        raise DatasetError(f"{path}: no images (expected pairs of lines: {IMAGE_FIELDS}, then POINTS2D)")
    images = sorted(found.values(), key=lambda r: r.name)
    stems = [r.frame_id for r in images]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise DatasetError(f"{path}: several images share the file stem {twice[0]}, so frame ids would not be unique")
    return images


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def read_depth(path: Path, size_hw: tuple[int, int]) -> np.ndarray:
    """An ETH3D depth file (raw float32, H×W) as float32 metres, 0 where it holds +inf, NaN or ≤ 0."""
    h, w = size_hw
    expected = 4 * h * w
    try:
        found = path.stat().st_size
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing file (ETH3D depth)") from None
    if found != expected:
        raise DatasetError(f"{path}: {found} bytes, expected {expected} = 4·{h}·{w} (raw float32 depth of the {wxh(size_hw)} image)")
    try:
        raw = np.fromfile(path, dtype="<f4")
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err})") from None
    if raw.size != h * w:
        raise DatasetError(f"{path}: read {4 * raw.size} bytes, expected {expected} (raw float32 depth of the {wxh(size_hw)} image)")
    depth = raw.reshape(h, w).astype(np.float32)
    depth[~(np.isfinite(depth) & (depth > 0))] = 0.0
    return depth


# --------------------------------------------------------------------------- the fisheye model


def fisheye_distort(x: np.ndarray, y: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distorted normalised coordinates of pinhole normalised (x, y): (θ_d / r)·(x, y), θ = atan(r)."""
    r = np.hypot(x, y)
    theta = np.arctan(r)
    t2 = theta * theta
    theta_d = theta * (1 + t2 * (k[0] + t2 * (k[1] + t2 * (k[2] + t2 * k[3]))))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(r > 0, theta_d / r, 1.0)  # θ_d / r → 1 at the centre
    return x * scale, y * scale


def fisheye_undistort(xd: np.ndarray, yd: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pinhole normalised (x, y) of distorted normalised (xd, yd), and where the inverse exists.

    θ is solved from θ_d = |(xd, yd)| by Newton's method from θ = θ_d; a point is kept (third
    output) when the residual is below `INVERSE_TOLERANCE`, the model increases there, and
    θ < π/2 (a ray in front of the camera).
    """
    theta_d = np.hypot(xd, yd)
    theta = theta_d.copy()
    for _ in range(NEWTON_STEPS):
        t2 = theta * theta
        value = theta * (1 + t2 * (k[0] + t2 * (k[1] + t2 * (k[2] + t2 * k[3])))) - theta_d
        slope = 1 + t2 * (3 * k[0] + t2 * (5 * k[1] + t2 * (7 * k[2] + t2 * 9 * k[3])))
        with np.errstate(divide="ignore", invalid="ignore"):
            step = value / slope
        theta = theta - step
        if not np.any(np.abs(step) > 1e-15):
            break
    t2 = theta * theta
    residual = theta * (1 + t2 * (k[0] + t2 * (k[1] + t2 * (k[2] + t2 * k[3])))) - theta_d
    slope = 1 + t2 * (3 * k[0] + t2 * (5 * k[1] + t2 * (7 * k[2] + t2 * 9 * k[3])))
    ok = (np.abs(residual) <= INVERSE_TOLERANCE) & (slope > 0) & (theta >= 0) & (theta < np.pi / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(theta_d > 0, np.tan(theta) / theta_d, 1.0)  # r / θ_d → 1 at the centre
    return xd * scale, yd * scale, ok


def _bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """image (C, H, W) sampled at pixel positions (u, v) (integer pixel centres); outside is black."""
    _, h, w = image.shape
    u0 = np.floor(np.clip(u, -2, w + 1))
    v0 = np.floor(np.clip(v, -2, h + 1))
    du, dv = (u - u0).astype(np.float32), (v - v0).astype(np.float32)
    u0, v0 = u0.astype(np.int64), v0.astype(np.int64)
    out = np.zeros((image.shape[0],) + u.shape, dtype=image.dtype)
    for oy, wy in ((0, 1 - dv), (1, dv)):
        for ox, wx in ((0, 1 - du), (1, du)):
            cu, cv = u0 + ox, v0 + oy
            weight = wx * wy * ((cu >= 0) & (cu < w) & (cv >= 0) & (cv < h))
            out += image[:, np.clip(cv, 0, h - 1), np.clip(cu, 0, w - 1)] * weight
    return out


def undistort_image(image: np.ndarray, k: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """The pinhole image (C, H, W) with pixel K of a fisheye image of the same size and K.

    Each output pixel's pinhole ray, distorted, says where to sample the input (bilinear).
    """
    _, h, w = image.shape
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    out = np.empty_like(image)
    x = (np.arange(w) - cx) / fx
    for top in range(0, h, ROWS_PER_CHUNK):
        rows = np.arange(top, min(h, top + ROWS_PER_CHUNK))
        xd, yd = fisheye_distort(*np.meshgrid(x, (rows - cy) / fy), coefficients)
        out[:, rows[0] : rows[-1] + 1] = _bilinear(image, fx * xd + cx, fy * yd + cy)
    return out


def undistort_depth(depth: np.ndarray, k: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """The pinhole z-depth (H, W) of a fisheye depth map of the same size and K (0 = invalid).

    Each valid pixel moves to the rounded pixel (half to even) of its undistorted position, its
    value unchanged. Several landing on one pixel: the last in row-major order of the input wins,
    whatever its depth (no z-test), as π³'s preparation does.
    """
    h, w = depth.shape
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    rows, cols = np.nonzero(depth > 0)  # row-major order
    x, y, ok = fisheye_undistort((cols - cx) / fx, (rows - cy) / fy, coefficients)
    with np.errstate(invalid="ignore"):
        u, v = np.rint(fx * x + cx), np.rint(fy * y + cy)
        keep = ok & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    target = (v[keep] * w + u[keep]).astype(np.int64)
    values = depth[rows[keep], cols[keep]]
    _, first_from_end = np.unique(target[::-1], return_index=True)
    last = len(target) - 1 - first_from_end  # the last writer of each target pixel
    out = np.zeros(h * w, dtype=np.float32)
    out[target[last]] = values[last]
    return out.reshape(h, w)


# --------------------------------------------------------------------------- the adapter


@DATASETS.register("eth3d")
class Eth3dAdapter(ScannedAdapter):
    """ETH3D high-res multi-view DSLR scenes (COLMAP text, raw float32 depth), undistorted as π³ prepares them."""

    name = "eth3d"
    root_variable = "ETH3D_ROOT"

    def __init__(self, root: str | Path | None = None, *, undistort: bool = True, min_frames: int = 1, workers: int | None = None) -> None:
        if not isinstance(undistort, bool):
            raise DatasetError(f"eth3d option undistort={undistort!r}: choose true (π³'s undistorted pinhole frames) or false (as shot)")
        super().__init__(root)
        self.undistort, self.min_frames, self.workers = undistort, min_frames, workers
        self._calibrations: dict[str, tuple[dict[int, Camera], dict[str, Registration]]] = {}

    def scenes(self) -> list[str]:
        names = sorted(d.name for d in self.root.iterdir() if d.is_dir() and (d / CALIBRATION / "images.txt").is_file())
        if not names:
            raise DatasetError(
                f"{self.root}: no ETH3D scene folders (expected <root>/<scene>/{CALIBRATION}/images.txt; "
                "unpack multi_view_training_dslr_jpg.7z and <scene>_dslr_depth.7z there)"
            )
        return self._long_enough(names, self.min_frames)

    def calibration(self, scene: str) -> tuple[dict[int, Camera], dict[str, Registration]]:
        """(cameras by id, images by frame id in name order) of a scene, read once."""
        if scene not in self._calibrations:
            folder = self.root / scene / CALIBRATION
            cameras = read_cameras(folder / "cameras.txt")
            images = read_images(folder / "images.txt", cameras, folder / "cameras.txt")
            self._calibrations[scene] = cameras, {r.frame_id: r for r in images}
        return self._calibrations[scene]

    def _path(self, scene: str, kind: str, image: Registration) -> Path:
        return self.root / scene / kind / image.name

    def scan(self, scene: str) -> SceneInventory:
        folder = self.root / scene / CALIBRATION
        absent = [str(folder / name) for name in ("cameras.txt", "images.txt") if not (folder / name).is_file()]
        if absent:
            return SceneInventory(scene=scene, frames=[], missing=absent)
        _, images = self.calibration(scene)
        inv = SceneInventory(scene=scene, frames=[])
        for kind, archive in ((IMAGES, "multi_view_training_dslr_jpg.7z"), (DEPTH, f"{scene}_dslr_depth.7z")):
            for parent in sorted({self._path(scene, kind, r).parent for r in images.values()}):
                if not parent.is_dir():
                    inv.missing.append(f"{parent} (folder; unpack {archive} in the root)")
        for frame, image in images.items():
            paths = [self._path(scene, kind, image) for kind in (IMAGES, DEPTH)]
            lacking = [str(p) for p in paths if p.parent.is_dir() and not p.is_file()]
            if lacking:
                inv.missing.extend(lacking)
            elif np.isfinite(image.extrinsics).all():
                inv.frames.append(frame)
            else:
                inv.invalid.append(frame)
        if inv.missing:
            inv.frames = []
        return inv

    def load_frames(self, scene: str, frame_ids: list[str]) -> Sequence:
        cameras, images = self.calibration(scene)
        images_txt = self.root / scene / CALIBRATION / "images.txt"
        unknown = [f for f in frame_ids if f not in images]
        if unknown:
            raise DatasetError(f"eth3d/{scene}: frames {unknown} are not images of {images_txt}")
        unposed = [f for f in frame_ids if not np.isfinite(images[f].extrinsics).all()]
        if unposed:
            raise DatasetError(f"eth3d/{scene}: frames {unposed} have no finite pose in {images_txt}")

        def read(i: int) -> tuple[np.ndarray, ...]:
            image = images[frame_ids[i]]
            camera = cameras[image.camera_id]
            path = self._path(scene, IMAGES, image)
            if image_size(path) != camera.size_hw:
                raise DatasetError(f"{path}: image is {wxh(image_size(path))}, its camera {camera.camera_id} in cameras.txt is {wxh(camera.size_hw)}")
            rgb = read_rgb(path)
            depth = read_depth(self._path(scene, DEPTH, image), camera.size_hw)
            k = camera.intrinsics()
            if self.undistort and camera.fisheye is not None:
                rgb, depth = undistort_image(rgb, k, camera.fisheye), undistort_depth(depth, k, camera.fisheye)
            return rgb, depth, image.extrinsics, k

        labels = [str(self._path(scene, IMAGES, images[f])) for f in frame_ids]
        rgb, depth, extrinsics, intrinsics = stack_frames(labels, read, self.workers)
        return Sequence(
            dataset=self.name,
            scene=scene,
            images=rgb,
            extrinsics=extrinsics,
            intrinsics=intrinsics,
            depth=depth,
            valid=depth > 0,
            frame_ids=list(frame_ids),
        )
