"""ScanNet adapter on scenes written in the .sens export layout (numeric names, -inf poses, mm depth)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from datasets_adapters import DATASETS, DatasetError, Sampling
from tests.native_datasets import (
    SCANNET_DEPTH_HW,
    SCANNET_K_DEPTH,
    SCANNET_TARGET,
    check_seen_from,
    look_at_c2w,
    orbit_eyes,
    save_matrix,
    save_rgb,
    save_uint16_png,
    unproject,
    write_scannet_scene,
)

SCENES = ["scene0706_00", "scene0707_00", "scene0708_00", "scene0708_01", "scene0709_00", "scene0806_00", "scene0807_00"]


@pytest.fixture(scope="module")
def scannet(tmp_path_factory):
    root = tmp_path_factory.mktemp("scannet")
    views = write_scannet_scene(root, "scene0707_00")
    for name in SCENES:
        if name != "scene0707_00":
            write_scannet_scene(root, name, num_frames=3, invalid=())
    (root / "scannetv2-labels.combined.tsv").write_text("not a scene\n")
    (root / "backup").mkdir()
    return root, views


def adapter(root, **options):
    return DATASETS.get("scannet")(root=root, **options)


def test_frames_sort_numerically_and_invalid_poses_are_skipped_and_counted(scannet):
    root, _ = scannet
    a = adapter(root)
    assert a.frame_ids("scene0707_00") == ["0", "1", "2", "3", "4", "6", "7", "8", "9", "10", "11"]
    assert a.inventory("scene0707_00").invalid == ["5"]
    seq = a.load("scene0707_00", 4, Sampling(kind="stride", stride=3))
    assert seq.frame_ids == ["0", "3", "7", "10"]
    assert seq.sampling["frames_skipped"] == 1 and seq.sampling["frames_available"] == 11


def test_invalid_poses_can_be_kept_as_nan_so_raw_frame_indices_hold(scannet):
    """The published pose subset indexes raw frames: with invalid_poses: keep, frame 5 stays (NaN
    extrinsics, image and depth as usual) and stride 3 takes raw frames 0, 3, 6, 9."""
    root, _ = scannet
    a = adapter(root, invalid_poses="keep")
    assert a.frame_ids("scene0707_00") == [str(i) for i in range(12)] and a.inventory("scene0707_00").invalid == ["5"]
    seq = a.load("scene0707_00", 4, Sampling(kind="stride", stride=3))
    assert seq.frame_ids == ["0", "3", "6", "9"] and np.isfinite(seq.extrinsics).all()
    kept = a.load_frames("scene0707_00", ["4", "5"])
    assert np.isfinite(kept.extrinsics[0]).all() and np.isnan(kept.extrinsics[1]).all() and kept.valid[1].any()
    with pytest.raises(DatasetError, match="invalid_poses='skip'"):
        adapter(root, invalid_poses="skip")


def test_depth_in_metres_colour_at_depth_size_and_geometry_across_views(scannet):
    root, views = scannet
    seq = adapter(root).load_frames("scene0707_00", ["0", "4", "11"])
    h, w = SCANNET_DEPTH_HW
    assert seq.images.shape == (3, 3, h, w) and seq.depth.shape == (3, h, w)
    np.testing.assert_allclose(seq.intrinsics, np.repeat(SCANNET_K_DEPTH[None], 3, axis=0))
    for i, fid in enumerate(seq.frame_ids):
        truth = views[int(fid)]
        assert np.array_equal(seq.valid[i], truth.depth > 0)
        np.testing.assert_allclose(seq.depth[i], truth.depth, atol=5e-4)  # millimetre quantisation
        assert np.abs(seq.images[i] * 255 - truth.rgb.transpose(2, 0, 1)).mean() < 12, "colour resized back to depth size"
        points, vu = unproject(seq, i)
        np.testing.assert_allclose(points, truth.points[vu[:, 0], vu[:, 1]], atol=3e-3)
        for j in range(3):
            if j != i:
                c2w = look_at_c2w(orbit_eyes(12)[int(seq.frame_ids[j])], target=SCANNET_TARGET)
                seen, in_front = check_seen_from(seq, j, points, c2w, SCANNET_K_DEPTH)
                assert seen > 0.3 and in_front < 0.01


def test_colour_intrinsics_scaled_to_depth_size_agree_with_depth_intrinsics(scannet):
    root, _ = scannet
    seq = adapter(root, intrinsics="color").load_frames("scene0707_00", ["1", "2"])
    np.testing.assert_allclose(seq.intrinsics[0], SCANNET_K_DEPTH, atol=1e-9)


def test_scene_range_and_spread(scannet):
    root, _ = scannet
    assert adapter(root).scenes() == SCENES
    assert adapter(root, first_scene="scene0707_00", last_scene="scene0806_00").scenes() == SCENES[1:6]
    assert adapter(root, spread_scenes=3).scenes() == ["scene0706_00", "scene0708_00", "scene0709_00"]
    short = adapter(root, min_frames=4)
    assert short.scenes() == short.scenes() == ["scene0707_00"]
    assert short.notes() == [f"6 scene(s) with fewer than min_frames=4 usable frames left out: {', '.join(s for s in SCENES if s != 'scene0707_00')}"]
    with pytest.raises(DatasetError, match="no ScanNet scenes between scene0900_00 and None"):
        adapter(root, first_scene="scene0900_00").scenes()


def test_options_are_checked():
    with pytest.raises(DatasetError, match="intrinsics='both'"):
        DATASETS.get("scannet")(root=".", intrinsics="both")


# ------------------------------------------------------------------- bad input


@pytest.fixture
def scene(tmp_path):
    write_scannet_scene(tmp_path, "scene0707_00", num_frames=4, invalid=())
    return tmp_path


def test_missing_folder_is_named(scene):
    shutil.rmtree(scene / "scene0707_00/depth")
    with pytest.raises(DatasetError, match=r"scene0707_00/depth \(folder\): missing"):
        adapter(scene).frame_ids("scene0707_00")


def test_missing_depth_file_is_named(scene):
    (scene / "scene0707_00/depth/2.png").unlink()
    assert adapter(scene).inventory("scene0707_00").missing == [str(scene / "scene0707_00/depth/2.png")]


def test_malformed_pose_file_is_named(scene):
    (scene / "scene0707_00/pose/3.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1\n")
    with pytest.raises(DatasetError, match=r"pose/3\.txt: malformed matrix, expected 4x4 = 16 numbers, found 11"):
        adapter(scene).frame_ids("scene0707_00")
    (scene / "scene0707_00/pose/3.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 x\n0 0 0 1\n")
    with pytest.raises(DatasetError, match=r"pose/3\.txt: malformed matrix"):
        adapter(scene).frame_ids("scene0707_00")
    save_matrix(scene / "scene0707_00/pose/3.txt", np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(DatasetError, match=r"pose/3\.txt: malformed pose, the 3x3 block is not a rotation"):
        adapter(scene).load_frames("scene0707_00", ["3"])


def test_corrupt_colour_image_is_named(scene):
    (scene / "scene0707_00/color/1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError, match=r"color/1\.jpg: cannot"):
        adapter(scene).load_frames("scene0707_00", ["0", "1"])


def test_depth_maps_of_different_sizes_are_named(scene):
    save_uint16_png(scene / "scene0707_00/depth/2.png", np.ones((24, 32)))
    with pytest.raises(DatasetError, match=r"depth/2\.png: shape \(3, 24, 32\) differs from \(3, 48, 64\) of the first frame"):
        adapter(scene).load_frames("scene0707_00", ["0", "2"])


def test_empty_root_says_what_layout_is_expected(tmp_path):
    save_rgb(tmp_path / "scans/readme.jpg", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"no ScanNet scene folders \(expected <root>/sceneXXXX_YY/\{color,depth,pose,intrinsic\}/\)"):
        adapter(tmp_path).scenes()
