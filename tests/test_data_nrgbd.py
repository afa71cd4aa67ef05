"""NRGBD adapter on scenes written in the native layout (OpenGL poses, unpadded numbers, mm depth)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import datasets_adapters.nrgbd  # noqa: F401  (registers "nrgbd")
from bench.check_data import check_data
from datasets_adapters import DATASETS, DatasetError, Sampling
from datasets_adapters.check import check_dataset
from tests.native_datasets import check_seen_from, look_at_c2w, orbit_eyes, save_uint16_png, unproject
from tests.native_nrgbd import NRGBD_HW, NRGBD_TARGET, pose_text, write_nrgbd_scene
from tests.native_datasets import reprojected_depth_error

FOCAL = 547.5  # not the distributed 554.256…, so a hard-coded focal length fails
SCENE = "kitchen"


@pytest.fixture(scope="module")
def nrgbd(tmp_path_factory):
    """12 frames (img10 and img11 sort after img2), pose 7 all nan."""
    root = tmp_path_factory.mktemp("nrgbd")
    truth = write_nrgbd_scene(root, SCENE, num_frames=12, focal=FOCAL, nan_poses=(7,))
    (root / "README").write_text("not a scene\n")
    (root / "meshes").mkdir()
    return root, truth


def adapter(root, **options):
    return DATASETS.get("nrgbd")(root=root, **options)


def k_of(focal: float) -> np.ndarray:
    return np.array([[focal, 0.0, 320.0], [0.0, focal, 240.0], [0.0, 0.0, 1.0]])


def opencv_w2c(i: int, count: int = 12) -> np.ndarray:
    """The w2c of frame i built independently, from an OpenCV look-at at the same eye."""
    c2w = look_at_c2w(orbit_eyes(count)[i], target=NRGBD_TARGET)
    return np.concatenate([c2w[:3, :3].T, -c2w[:3, :3].T @ c2w[:3, 3:]], axis=1)


def test_scenes_are_the_folders_with_poses(tmp_path):
    for name in ("whiteroom", "breakfast_room", "thin_geometry"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "poses.txt").write_text("")
    (tmp_path / "neural_rgbd_data").mkdir()
    assert adapter(tmp_path).scenes() == ["breakfast_room", "thin_geometry", "whiteroom"]
    with pytest.raises(DatasetError, match=r"no NRGBD scene folders \(expected <root>/<scene>/poses\.txt"):
        adapter(tmp_path / "neural_rgbd_data").scenes()


def test_frames_are_numeric_and_a_nan_pose_is_skipped_and_counted(nrgbd):
    root, _ = nrgbd
    a = adapter(root)
    assert a.scenes() == [SCENE]
    assert a.frame_ids(SCENE) == ["0", "1", "2", "3", "4", "5", "6", "8", "9", "10", "11"]
    assert a.inventory(SCENE).invalid == ["7"]
    seq = a.load(SCENE, None, Sampling(kind="stride", stride=5))
    assert seq.frame_ids == ["0", "5", "11"]
    for i, fid in enumerate(seq.frame_ids):
        np.testing.assert_allclose(seq.extrinsics[i], opencv_w2c(int(fid)), atol=1e-8)
    assert seq.sampling["frames_skipped"] == 1 and seq.sampling["frames_available"] == 11


def test_cameras_ground_truth_depth_and_geometry_across_frames(nrgbd):
    root, truth = nrgbd
    seq = adapter(root).load_frames(SCENE, ["2", "10", "11"])
    assert seq.images.shape == (3, 3) + NRGBD_HW and seq.depth.dtype == np.float32
    np.testing.assert_array_equal(seq.intrinsics, np.repeat(k_of(FOCAL)[None], 3, axis=0))
    for i, fid in enumerate(seq.frame_ids):
        _, view = truth[int(fid)]
        np.testing.assert_allclose(seq.extrinsics[i], opencv_w2c(int(fid)), atol=1e-8)  # poses.txt, not trainval_poses.txt
        assert np.array_equal(seq.valid[i], view.depth > 0)
        np.testing.assert_allclose(seq.depth[i], view.depth, atol=5.01e-4)  # depth/, not the noisy folders
        assert np.abs(seq.images[i] * 255 - view.rgb.transpose(2, 0, 1)).max() < 0.51
        points, vu = unproject(seq, i)
        np.testing.assert_allclose(points, view.points[vu[:, 0], vu[:, 1]], atol=3e-3)
    for i, j in ((0, 1), (1, 0), (2, 0)):
        error = reprojected_depth_error(seq, i, j)
        assert error.size > 50_000 and np.median(error) < 5e-4  # two 1 mm depth quantisations: about 0.3 mm
        points, _ = unproject(seq, i)
        c2w = look_at_c2w(orbit_eyes(12)[int(seq.frame_ids[j])], target=NRGBD_TARGET)
        seen, in_front = check_seen_from(seq, j, points, c2w, k_of(FOCAL))
        assert seen > 0.3 and in_front < 0.01


def test_converted_camera_looks_where_the_opengl_camera_looked(nrgbd):
    root, truth = nrgbd
    seq = adapter(root).load_frames(SCENE, ["3"])
    gl = truth[3][0]
    w2c, k = seq.extrinsics[0], seq.intrinsics[0]

    def pixel(point):
        cam = w2c[:, :3] @ point + w2c[:, 3]
        return (k @ cam)[:2] / cam[2], cam[2]

    np.testing.assert_allclose(-w2c[:, :3].T @ w2c[:, 3], gl[:3, 3], atol=1e-9)  # same centre
    ahead = gl[:3, 3] - 2.0 * gl[:3, 2]  # the OpenGL camera looks along its −z
    (u, v), z = pixel(ahead)
    np.testing.assert_allclose([u, v, z], [320.0, 240.0, 2.0], atol=1e-9)
    (u, v), _ = pixel(ahead + 0.1 * gl[:3, 1])  # OpenGL +y is up in the image
    assert v < 240.0 and abs(u - 320.0) < 1e-6
    (u, v), _ = pixel(ahead + 0.1 * gl[:3, 0])  # +x is right
    assert u > 320.0 and abs(v - 240.0) < 1e-6


def test_frame_with_a_nan_pose_cannot_be_loaded(nrgbd):
    root, _ = nrgbd
    with pytest.raises(DatasetError, match=r"nrgbd/kitchen: '7' is not a usable frame \(an index with an image, a depth map and a finite pose\)"):
        adapter(root).load_frames(SCENE, ["6", "7"])


def test_depth_range_options(nrgbd):
    root, truth = nrgbd
    seq = adapter(root, min_depth=3.5, max_depth=5.0).load_frames(SCENE, ["0"])
    metres = np.round(truth[0][1].depth * 1000.0) / 1000.0
    assert np.array_equal(seq.valid[0], (metres >= 3.5) & (metres <= 5.0))
    assert (seq.depth[0][~seq.valid[0]] == 0).all() and seq.valid[0].any() and not seq.valid[0].all()


def test_check_data_passes(nrgbd):
    root, _ = nrgbd
    report = check_dataset("nrgbd", root, decode=None)
    assert report.ok, report.issues()
    assert [(s.scene, s.frames, s.invalid_poses) for s in report.scenes] == [(SCENE, 11, 1)]
    result = CliRunner().invoke(check_data, ["nrgbd", str(root)])
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("nrgbd_small")
    truth = write_nrgbd_scene(root, SCENE, num_frames=4, blank_lines=False)
    return root, truth


@pytest.fixture
def small(small_template, tmp_path):
    """A fresh copy per test, for tests that break it."""
    return shutil.copytree(small_template[0], tmp_path / "nrgbd")


def test_focal_comes_from_focal_txt(small):
    (small / SCENE / "focal.txt").write_text("600.25\n")
    np.testing.assert_array_equal(adapter(small).load_frames(SCENE, ["1"]).intrinsics[0], k_of(600.25))
    for text in ("", "554.2 554.2", "focal", "-3"):
        (small / SCENE / "focal.txt").write_text(text)
        with pytest.raises(DatasetError, match=rf"{SCENE}/focal\.txt: expected one positive number \(the focal length in pixels\)"):
            adapter(small).frame_ids(SCENE)


def test_pose_count_differences_are_reported(small, small_template):
    _, truth = small_template
    a = adapter(small)
    (small / SCENE / "images/img3.png").unlink()
    (small / SCENE / "depth/depth3.png").unlink()
    assert a.frame_ids(SCENE) == ["0", "1", "2"]
    assert a.notes() == [f"{SCENE}: poses.txt holds 4 poses for 3 frames; the last 1 are ignored"]
    (small / SCENE / "poses.txt").write_text(pose_text([truth[i][0] for i in range(2)], blank_lines=True))
    (small / SCENE / "depth/depth1.png").unlink()
    missing = adapter(small).inventory(SCENE).missing
    assert missing == [str(small / SCENE / "depth/depth1.png"), f"{small / SCENE / 'poses.txt'}: pose 2 (the file holds 2 poses for 3 frames)"]
    report = check_dataset("nrgbd", small, decode=None)
    assert not report.ok and report.issues()[0] == f"missing: {small / SCENE / 'depth/depth1.png'}"
    result = CliRunner().invoke(check_data, ["nrgbd", str(small)])
    assert result.exit_code == 1 and f"is not usable: missing: {small / SCENE / 'depth/depth1.png'}" in result.output


@pytest.mark.parametrize(
    "text,message",
    [
        ("1 0 0 0\n0 1 0 0\n0 0 1\n0 0 0 1\n", r"line 3: expected 4 numbers \(a row of a 4x4 camera-to-world\), found 3"),
        ("1 0 0 0\n0 1 0 0\n0 0 1 zero\n0 0 0 1\n", r"line 3: not numbers: '0 0 1 zero'"),
        ("1 0 0 0\n\n0 1 0 0\n0 0 1 0\n", r"3 matrix rows, not a multiple of 4"),
    ],
)
def test_malformed_poses_name_the_file_and_line(small, text, message):
    (small / SCENE / "poses.txt").write_text(text)
    with pytest.raises(DatasetError, match=rf"{SCENE}/poses\.txt: {message}"):
        adapter(small).frame_ids(SCENE)
    result = CliRunner().invoke(check_data, ["nrgbd", str(small)])
    assert result.exit_code == 1 and f"{small / SCENE / 'poses.txt'}: " in result.output


def test_pose_that_is_not_rigid_names_its_line(small, small_template):
    _, truth = small_template
    poses = [truth[i][0] for i in range(4)]
    poses[2] = np.diag([2.0, 1.0, 1.0, 1.0])
    (small / SCENE / "poses.txt").write_text(pose_text(poses, blank_lines=True))
    with pytest.raises(DatasetError, match=rf"{SCENE}/poses\.txt: line 11 \(pose 2\): malformed pose, the 3x3 block is not a rotation"):
        adapter(small).load_frames(SCENE, ["1", "2"])


def test_frames_that_are_not_640x480_name_the_file(small):
    Image.new("RGB", (320, 240)).save(small / SCENE / "images/img2.png")
    with pytest.raises(DatasetError, match=rf"{SCENE}/images/img2\.png: image is 320x240, NRGBD frames are 640x480"):
        adapter(small).load_frames(SCENE, ["0", "2"])
    result = CliRunner().invoke(check_data, ["nrgbd", str(small), "--frames", "all"])
    assert result.exit_code == 1 and f"{small / SCENE / 'images/img2.png'}: image is 320x240" in result.output
    save_uint16_png(small / SCENE / "depth/depth1.png", np.zeros((480, 480)))
    with pytest.raises(DatasetError, match=rf"{SCENE}/depth/depth1\.png: depth is 480x480, NRGBD frames are 640x480"):
        adapter(small).load_frames(SCENE, ["1"])


def test_noisy_depth_and_optimised_poses_are_never_read(small, small_template):
    _, truth = small_template
    for folder in ("depth_filtered", "depth_with_noise"):
        shutil.rmtree(small / SCENE / folder)
    (small / SCENE / "trainval_poses.txt").unlink()
    seq = adapter(small).load_frames(SCENE, ["0", "3"])
    np.testing.assert_allclose(seq.depth[1], truth[3][1].depth, atol=5.01e-4)
    assert check_dataset("nrgbd", small, decode=None).ok


def test_missing_layout_is_named(small):
    shutil.rmtree(small / SCENE / "depth")
    (small / SCENE / "focal.txt").unlink()
    assert adapter(small).inventory(SCENE).missing == [str(small / SCENE / "focal.txt"), f"{small / SCENE / 'depth'} (folder)"]
    with pytest.raises(DatasetError, match=rf"{SCENE}/focal\.txt: missing \(and 1 more\)"):
        adapter(small).frame_ids(SCENE)
