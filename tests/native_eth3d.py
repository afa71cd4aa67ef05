"""Small ETH3D scenes written in exactly the layout of the release (COLMAP text, raw float32 depth).

Views are ray-cast from the analytic scene of `tests.native_datasets`, through COLMAP's own pixel
convention (the centre of pixel (col, row) is (col + 0.5, row + 0.5)) and, for fisheye cameras,
through the distortion inverted by bisection: nothing here goes through the adapter's code.
Quaternions are written scalar first, image ids out of order, and a POINTS2D line may be empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

from tests.native_datasets import View, colour_of, look_at_c2w, raycast

ETH3D_HW = (48, 64)
IMAGES_HEADER = (
    "# Image list with two lines of data per image:\n"
    "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
    "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
)
CAMERAS_HEADER = "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"


@dataclass
class ColmapCamera:
    camera_id: int
    model: str
    params: tuple[float, ...]  # as COLMAP writes them: cx, cy with the top-left pixel centre at 0.5
    hw: tuple[int, int] = ETH3D_HW

    @property
    def focal(self) -> tuple[float, float]:
        return (self.params[0], self.params[0]) if self.model == "SIMPLE_PINHOLE" else (self.params[0], self.params[1])

    @property
    def centre(self) -> tuple[float, float]:
        return tuple(self.params[1:3]) if self.model == "SIMPLE_PINHOLE" else tuple(self.params[2:4])

    @property
    def radial(self) -> tuple[float, ...] | None:
        """k1..k4 of a fisheye camera (π³'s undistortion uses only these)."""
        p = self.params
        return (p[4], p[5], p[8], p[9]) if self.model == "THIN_PRISM_FISHEYE" else None

    def k_integer_centres(self) -> np.ndarray:
        """The K the harness should deliver: COLMAP's principal point less half a pixel."""
        (fx, fy), (cx, cy) = self.focal, self.centre
        return np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])

    def line(self) -> str:
        return f"{self.camera_id} {self.model} {self.hw[1]} {self.hw[0]} " + " ".join(repr(p) for p in self.params)


def distort_theta(theta: np.ndarray, k: tuple[float, ...]) -> np.ndarray:
    """θ_d = θ (1 + k1 θ² + k2 θ⁴ + k3 θ⁶ + k4 θ⁸)."""
    return theta * (1 + k[0] * theta**2 + k[1] * theta**4 + k[2] * theta**6 + k[3] * theta**8)


def distort_normalised(x: np.ndarray, y: np.ndarray, k: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    r = np.sqrt(x * x + y * y)
    theta = np.arctan(r)
    scale = np.divide(distort_theta(theta, k), r, out=np.ones_like(r), where=r > 0)
    return x * scale, y * scale


def undistort_by_bisection(xd: np.ndarray, yd: np.ndarray, k: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The pinhole normalised point whose distortion is (xd, yd), by bisection of θ on [0, π/2)."""
    theta_d = np.sqrt(xd * xd + yd * yd)
    lo, hi = np.zeros_like(theta_d), np.full_like(theta_d, np.pi / 2 - 1e-9)
    for _ in range(80):
        mid = (lo + hi) / 2
        below = distort_theta(mid, k) < theta_d
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    theta = (lo + hi) / 2
    scale = np.divide(np.tan(theta), theta_d, out=np.ones_like(theta_d), where=theta_d > 0)
    return xd * scale, yd * scale


def project(camera: ColmapCamera, w2c: np.ndarray, points: np.ndarray, distorted: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (col, row) with integer pixel centres and z of world points, through the lens (`distorted`) or its pinhole part."""
    cam = points @ w2c[:, :3].T + w2c[:, 3]
    x, y = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
    if distorted and camera.radial is not None:
        x, y = distort_normalised(x, y, camera.radial)
    (fx, fy), (cx, cy) = camera.focal, camera.centre
    return np.stack([fx * x + cx - 0.5, fy * y + cy - 0.5], axis=1), cam[:, 2]  # COLMAP continuous coordinates less 0.5


def render(camera: ColmapCamera, c2w: np.ndarray) -> View:
    """The view of the analytic scene through the camera as shot (distorted for a fisheye camera)."""
    h, w = camera.hw
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    (fx, fy), (cx, cy) = camera.focal, camera.centre
    x, y = (cols + 0.5 - cx) / fx, (rows + 0.5 - cy) / fy
    if camera.radial is not None:
        x, y = undistort_by_bisection(x, y, camera.radial)
    dirs = np.stack([x, y, np.ones_like(x)], axis=-1) @ c2w[:3, :3].T  # camera z = 1: the ray parameter is z-depth
    t = raycast(c2w[:3, 3], dirs)
    hit = np.isfinite(t)
    points = np.where(hit[..., None], c2w[:3, 3] + np.where(hit, t, 0)[..., None] * dirs, np.nan)
    return View(depth=np.where(hit, t, 0.0), points=points, rgb=colour_of(np.nan_to_num(points), hit))


def blob_image(centres: np.ndarray, hw: tuple[int, int], sigma: float = 0.8) -> np.ndarray:
    """uint8 RGB: white Gaussian blobs centred at pixel positions `centres` (col, row) on black."""
    rows, cols = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float64)
    value = sum(np.exp(-((cols - u) ** 2 + (rows - v) ** 2) / (2 * sigma**2)) for u, v in centres)
    grey = np.clip(np.rint(255 * value), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


@dataclass
class Shot:
    """One image of a scene: what is written for it and the truth behind it."""

    name: str  # e.g. dslr_images/DSC_0286.JPG
    image_id: int
    camera: ColmapCamera
    c2w: np.ndarray
    quaternion: np.ndarray  # (w, x, y, z) as written, not necessarily of unit length
    translation: np.ndarray
    view: View
    depth_written: np.ndarray  # float32, +inf = no depth
    rgb_written: np.ndarray
    points2d: str = ""
    blob_targets: np.ndarray | None = None  # pinhole pixel positions of the blobs (fisheye shots)
    invalid: bool = False

    @property
    def frame_id(self) -> str:
        return Path(self.name).stem

    @property
    def w2c(self) -> np.ndarray:
        return np.linalg.inv(self.c2w)[:3]


@dataclass
class Eth3dScene:
    root: Path
    name: str
    cameras: list[ColmapCamera]
    shots: list[Shot] = field(default_factory=list)

    def shot(self, frame_id: str) -> Shot:
        return next(s for s in self.shots if s.frame_id == frame_id)


def quaternion_wxyz(w2c: np.ndarray, scale: float, flip: bool) -> np.ndarray:
    """A scalar-first quaternion of w2c's rotation, times `scale` and negated if `flip` (same rotation)."""
    x, y, z, w = Rotation.from_matrix(w2c[:, :3]).as_quat()  # scipy is scalar last
    return np.array([w, x, y, z]) * scale * (-1.0 if flip else 1.0)


def sparse_depth(view: View) -> np.ndarray:
    """float32 depth with +inf where the ray missed and on a lattice of pixels the 'laser' did not reach."""
    h, w = view.depth.shape
    rows, cols = np.mgrid[0:h, 0:w]
    depth = np.where(view.depth > 0, view.depth, np.inf).astype(np.float32)
    depth[(rows + 2 * cols) % 7 == 0] = np.inf
    return depth


def write_eth3d_scene(
    root: Path,
    scene: str,
    cameras: list[ColmapCamera],
    shots: list[tuple[str, int, int]],  # (name, image id, camera id), in the order written to images.txt
    invalid: tuple[str, ...] = (),
    blob_scene: bool = True,
) -> Eth3dScene:
    """A scene folder: images (JPEG), raw depth, cameras.txt and images.txt. Shots of fisheye
    cameras show white blobs at known pinhole positions (`blob_targets`) instead of the scene."""
    d = root / scene
    by_id = {c.camera_id: c for c in cameras}
    out = Eth3dScene(root=root, name=scene, cameras=cameras)
    eyes = {name: eye for name, eye in zip(sorted(n for n, _, _ in shots), _eyes(len(shots)))}
    for n, (name, image_id, camera_id) in enumerate(shots):
        camera = by_id[camera_id]
        c2w = look_at_c2w(eyes[name], target=(0.1, -0.2, 0.0))
        w2c = np.linalg.inv(c2w)[:3]
        view = render(camera, c2w)
        depth = sparse_depth(view)
        targets = None
        if camera.radial is not None and blob_scene:
            targets = np.array([[14.3, 11.7], [47.6, 12.2], [16.8, 35.4], [45.1, 33.9], [31.4, 23.6]])
            rays = np.concatenate([(targets - camera.k_integer_centres()[:2, 2]) / np.array(camera.focal), np.ones((5, 1))], axis=1) * 3.0
            world = rays @ c2w[:3, :3].T + c2w[:3, 3]
            rgb = blob_image(project(camera, w2c, world, distorted=True)[0], camera.hw)
        else:
            rgb = view.rgb
        quaternion = quaternion_wxyz(w2c, scale=1.0 if n % 2 else 1.0 + 0.37 * n, flip=n % 3 == 1)
        translation = w2c[:, 3].copy()
        if name in invalid:
            quaternion = np.full(4, np.nan)
        points2d = "" if n % 2 == 0 else f"{12.5 + n} 30.25 {100 + n} 40.75 11.5 -1"
        shot = Shot(name, image_id, camera, c2w, quaternion, translation, view, depth, rgb, points2d, targets, name in invalid)
        out.shots.append(shot)
        image_path = d / "images" / name
        image_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(image_path, format="JPEG", quality=100, subsampling=0)
        depth_path = d / "ground_truth_depth" / name
        depth_path.parent.mkdir(parents=True, exist_ok=True)
        depth.astype("<f4").tofile(depth_path)
    calibration = d / "dslr_calibration_jpg"
    calibration.mkdir(parents=True, exist_ok=True)
    (calibration / "cameras.txt").write_text(CAMERAS_HEADER + f"# Number of cameras: {len(cameras)}\n" + "".join(c.line() + "\n" for c in cameras))
    body = "".join(
        f"{s.image_id} " + " ".join(repr(float(v)) for v in (*s.quaternion, *s.translation)) + f" {s.camera.camera_id} {s.name}\n{s.points2d}\n"
        for s in out.shots
    )
    (calibration / "images.txt").write_text(IMAGES_HEADER + f"# Number of images: {len(shots)}, mean observations per image: 1\n" + body)
    (calibration / "points3D.txt").write_text("# 3D point list (unused)\n")
    return out


def _eyes(n: int) -> list[np.ndarray]:
    return [np.array([4.0 * np.sin(a), 0.8 + 0.1 * i, -4.0 * np.cos(a)]) for i, a in enumerate(np.linspace(0.3, 1.5, n))]
