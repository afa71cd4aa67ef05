"""The synthetic scenes: exact, self-consistent ground truth, deterministic by seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from datasets_adapters import DATASETS, DatasetError, Sampling
from metrics.geometry import camera_centres, unproject_depth
from datasets_adapters.synthetic import Box, cast_rays, look_at

SMALL = {"length": 40, "height": 96, "width": 128}


def adapter(**options):
    return DATASETS.get("synthetic")(**{**SMALL, **options})


@pytest.mark.parametrize("scene", ["orbit", "walk"])
def test_points_seen_from_two_views_agree(scene):
    """Unproject view 0 with its GT pose, project into view 1: the depth view 1 renders there is
    the point's depth in view 1 (up to occlusion). A wrong pose convention, or intrinsics off by
    half a pixel, raises the median error by an order of magnitude or more."""
    seq = adapter().load_frames(scene, ["000000", "000002"])
    points = unproject_depth(seq.depth, seq.intrinsics, seq.extrinsics)[0][seq.valid[0]]
    rot, trans = seq.extrinsics[1, :, :3], seq.extrinsics[1, :, 3]
    cam = points @ rot.T + trans
    uv = cam @ seq.intrinsics[1].T
    u, v = uv[:, 0] / uv[:, 2], uv[:, 1] / uv[:, 2]
    h, w = seq.image_size
    inside = (cam[:, 2] > 0) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    assert inside.mean() > 0.5  # the views overlap
    rendered = map_coordinates(seq.depth[1].astype(np.float64), [v[inside], u[inside]], order=1)
    rel = np.abs(rendered - cam[inside, 2]) / cam[inside, 2]
    assert np.median(rel) < 1e-4
    assert (rel < 0.01).mean() > 0.8  # the rest: occlusion boundaries and hidden surfaces


def test_render_matches_ray_cast_of_a_known_box():
    """A camera 3 m in front of a 1 m cube face sees that face at z-depth exactly 2.5 m."""
    box = Box(centre=np.array([0.0, 0.0, 0.5]), half=np.array([0.5, 0.5, 0.5]), yaw=0.0, colour=np.ones(3))
    extrinsic = look_at(np.array([-3.0, 0.0, 0.5]), np.array([0.0, 0.0, 0.5]))
    image, depth = adapter(height=33, width=33).render_frame(extrinsic, [box])
    assert depth[16, 16] == pytest.approx(2.5, abs=1e-5)
    assert image.shape == (3, 33, 33) and 0.0 <= image.min() and image.max() <= 1.0
    t, normals, surface = cast_rays(np.array([-3.0, 0.0, 0.5]), np.array([[1.0], [0.0], [0.0]]), [box])
    assert t[0] == pytest.approx(2.5) and surface[0] == 6 and normals[:, 0] == pytest.approx([-1.0, 0.0, 0.0])


def test_rays_through_the_open_top_are_invalid():
    up = look_at(np.array([0.0, 0.0, 1.0]), np.array([0.01, 0.0, 10.0]))
    _, depth = adapter(height=8, width=8).render_frame(up, [])
    assert (depth == 0).all()
    seq = adapter().load("walk", 4, Sampling())
    assert not seq.valid.all() and seq.valid.any()  # the walk sees sky above the walls
    assert (seq.depth[~seq.valid] == 0).all() and (seq.depth[seq.valid] > 0).all()


def test_cameras_are_proper_rotations_looking_at_the_scene():
    seq = adapter().load("orbit", 10, Sampling())
    rot = seq.extrinsics[:, :, :3]
    assert np.allclose(rot @ np.transpose(rot, (0, 2, 1)), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rot), 1.0)
    centres = camera_centres(seq.extrinsics)
    assert np.allclose(np.linalg.norm(centres[:, :2], axis=1), 3.6)  # the orbit radius
    # the scene centre is in front of every camera, near the image centre
    target = np.einsum("sij,j->si", rot, [0.0, 0.0, 0.4]) + seq.extrinsics[:, :, 3]
    assert (target[:, 2] > 0).all()
    assert np.allclose(target[:, :2] / target[:, 2:], 0.0, atol=1e-9)


def test_deterministic_by_seed():
    a = adapter().load("walk", 3, Sampling())
    b = adapter().load("walk", 3, Sampling())
    c = adapter(seed=1).load("walk", 3, Sampling())
    assert np.array_equal(a.images, b.images) and np.array_equal(a.depth, b.depth)
    assert not np.array_equal(a.images, c.images)


def test_without_rendering_poses_are_kept_and_images_are_noise():
    rendered = adapter().load("orbit", 5, Sampling())
    fast = adapter(render=False).load("orbit", 5, Sampling())
    assert np.array_equal(fast.extrinsics, rendered.extrinsics)
    assert np.array_equal(fast.intrinsics, rendered.intrinsics)
    assert fast.depth is None and fast.images.shape == rendered.images.shape
    assert fast.images.dtype == np.float32 and 0.0 <= fast.images.min() and fast.images.max() < 1.0


def test_sampling_and_sizes():
    seq = adapter(length=30, height=40, width=52).load("orbit", 4, Sampling(kind="stride", stride=5, start=2))
    assert seq.frame_ids == ["000002", "000007", "000012", "000017"]
    assert seq.image_size == (40, 52)
    assert seq.sampling["frames_available"] == 30
    assert seq.intrinsics[0, 0, 2] == 26 and seq.intrinsics[0, 1, 2] == 20


def test_default_size_needs_no_resizing():
    a = DATASETS.get("synthetic")(length=2)
    assert (a.height, a.width) == (392, 518) and 392 % 14 == 0 and 518 % 14 == 0


@pytest.mark.parametrize(
    "options, message",
    [({"root": "/data"}, "give no root"), ({"length": 0}, "length must be"), ({"fov_deg": 200.0}, "fov_deg")],
)
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(DatasetError, match=message):
        DATASETS.get("synthetic")(**options)


def test_unknown_scene():
    with pytest.raises(DatasetError, match="no scene 'beach'"):
        adapter().frame_ids("beach")


def test_unproject_closed_form():
    """A camera at C = (1, 2, 3) looking along world +x (rotation about y): the pixel at the
    principal point, 2 m deep, is C + 2·x̂; the pixel 10 px right of it at focal 100 is offset
    by 0.2 m along the camera's x axis, which is world -z."""
    rot = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # rows: camera axes in world
    centre = np.array([1.0, 2.0, 3.0])
    extrinsics = np.concatenate([rot, (-rot @ centre)[:, None]], axis=1)[None]
    intrinsics = np.array([[[100.0, 0.0, 2.0], [0.0, 100.0, 1.0], [0.0, 0.0, 1.0]]])
    depth = np.full((1, 3, 13), 2.0, dtype=np.float32)
    points = unproject_depth(depth, intrinsics, extrinsics)
    assert np.allclose(points[0, 1, 2], centre + [2.0, 0.0, 0.0])
    assert np.allclose(points[0, 1, 12], centre + [2.0, 0.0, -0.2])
    assert np.allclose(points[0, 0, 2], centre + [2.0, -0.02, 0.0])  # a row up: camera -y is world -y
