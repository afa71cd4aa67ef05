"""TUM RGB-D adapter on sequences written in the native layout (associated streams, scalar-last quaternions)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import datasets_adapters.tum  # noqa: F401  (registers "tum")
from bench.check_data import check_data
from datasets_adapters import DATASETS, DatasetError, Sampling
from datasets_adapters.check import check_dataset
from datasets_adapters.tum import associate
from tests.native_datasets import unproject
from tests.native_datasets import reprojected_depth_error
from tests.native_tum import TUM_HW, tum_k, write_tum_sequence

MAIN = "rgbd_dataset_freiburg3_walking_xyz"
FR1 = "rgbd_dataset_freiburg1_xyz"
FR2 = "rgbd_dataset_freiburg2_desk"


@pytest.fixture(scope="module")
def tum(tmp_path_factory):
    """fr3: RGB 1 has no GT line near it, RGB 4 no depth frame, RGB 2's GT quaternion is 1.5 ‰ long.
    fr1 and fr2: short, with 1 and 5 comment lines."""
    root = tmp_path_factory.mktemp("tum")
    frames = {
        MAIN: write_tum_sequence(root, MAIN, num_frames=10, no_gt=(1,), no_depth=(4,), scaled_quaternion=(2,)),
        FR1: write_tum_sequence(root, FR1, num_frames=3, camera=1, header_lines=1, start=1.5),
        FR2: write_tum_sequence(root, FR2, num_frames=2, camera=2, header_lines=5, start=2.5),
    }
    (root / "tools").mkdir()
    (root / "tools" / "associate.txt").write_text("not a sequence\n")
    return root, frames


def adapter(root, **options):
    return DATASETS.get("tum")(root=root, **options)


def expected_w2c(c2w: np.ndarray) -> np.ndarray:
    rot = c2w[:3, :3]
    return np.concatenate([rot.T, -rot.T @ c2w[:3, 3:]], axis=1)


def test_sequences_are_the_folders_sorted(tum):
    root, _ = tum
    assert adapter(root).scenes() == [FR1, FR2, MAIN]
    short = adapter(root, min_frames=4)
    assert short.scenes() == [MAIN]
    assert short.notes()[-1] == f"2 scene(s) with fewer than min_frames=4 usable frames left out: {FR1}, {FR2}"


def test_rgb_without_ground_truth_is_dropped_and_counted_rgb_without_depth_is_kept(tum):
    root, frames = tum
    a = adapter(root)
    stamps = [f.stamp for f in frames[MAIN]]
    assert a.frame_ids(MAIN) == stamps[:1] + stamps[2:]
    assert a.inventory(MAIN).invalid == [stamps[1]]
    assert a.notes() == [
        f"{MAIN}: 1 of 10 RGB frames have no ground truth within 0.02 s (dropped, counted as invalid poses)",
        f"{MAIN}: 1 frame(s) have no depth frame within 0.02 s (kept, depth invalid)",
    ]
    # the protocol's subset: every 3rd associated frame; the frame without depth does not shift it
    seq = a.load(MAIN, 3, Sampling(kind="stride", stride=3))
    assert seq.frame_ids == [stamps[0], stamps[4], stamps[7]]
    for i, k in enumerate((0, 4, 7)):
        np.testing.assert_allclose(seq.extrinsics[i], expected_w2c(frames[MAIN][k].c2w), atol=1e-9)
    assert not seq.valid[1].any() and (seq.depth[1] == 0).all()
    assert seq.valid[0].any() and seq.valid[2].any()
    assert seq.sampling["frames_skipped"] == 1 and seq.sampling["frames_available"] == 9


def test_cameras_depth_and_geometry_across_frames(tum):
    root, frames = tum
    a = adapter(root)
    ids = a.frame_ids(MAIN)
    seq = a.load_frames(MAIN, ids)
    truth = {f.stamp: f for f in frames[MAIN]}
    assert seq.images.shape == (9, 3) + TUM_HW and seq.images.dtype == np.float32
    assert seq.depth.dtype == np.float32 and seq.extrinsics.dtype == np.float64
    np.testing.assert_array_equal(seq.intrinsics, np.repeat(tum_k(3)[None], 9, axis=0))
    for i, stamp in enumerate(ids):
        frame = truth[stamp]
        np.testing.assert_allclose(seq.extrinsics[i], expected_w2c(frame.c2w), atol=1e-9)  # the GT line matched in time, read x y z w
        rot = seq.extrinsics[i][:, :3]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)  # normalised, also the 1.5 ‰ long quaternion
        if frame.depth:
            assert np.array_equal(seq.valid[i], frame.view.depth > 0)
            np.testing.assert_allclose(seq.depth[i], frame.view.depth, atol=1.01e-4)  # 1/5000 m steps
            points, vu = unproject(seq, i)
            np.testing.assert_allclose(points, frame.view.points[vu[:, 0], vu[:, 1]], atol=1e-3)
    for i, j in ((0, 1), (1, 0), (0, 8), (8, 2)):  # seq index 1 is RGB 2, with the long quaternion
        error = reprojected_depth_error(seq, i, j)
        assert error.size > 50_000 and np.median(error) < 2e-4


@pytest.mark.parametrize("scene,camera", [(FR1, 1), (FR2, 2)])
def test_intrinsics_follow_the_camera_in_the_folder_name(tum, scene, camera):
    root, frames = tum
    seq = adapter(root).load_frames(scene, adapter(root).frame_ids(scene))
    assert seq.frame_ids == [f.stamp for f in frames[scene]], "comment lines of any number are skipped"
    np.testing.assert_array_equal(seq.intrinsics[0], tum_k(camera))
    assert np.median(reprojected_depth_error(seq, 0, 1)) < 2e-4


def test_association_is_greedy_one_to_one_and_strict():
    first = np.array([10.100, 10.000, 10.012, 10.050])  # not in time order
    second = np.array([10.010, 10.0515, 10.200])
    # 10.050 takes 10.0515 (|Δt| = 1.5 ms) first, then 10.012 takes 10.010 (2 ms) before 10.000 can
    # (10 ms); 10.100 is 48.5 ms from 10.0515 and 100 ms from 10.200: pairs come in time order
    assert associate(first, second, 0.02) == [(2, 0), (3, 1)]
    assert associate(second, first, 0.02) == [(0, 2), (1, 3)]
    assert associate(np.array([0.0]), np.array([0.5]), 0.5) == []
    assert associate(np.array([0.0]), np.array([0.5]), 0.5000001) == [(0, 0)]
    assert associate(np.array([0.2, 0.0]), np.array([0.1]), 0.5) == [(1, 0)]  # a tie goes to the earlier time
    assert associate(np.array([]), np.array([0.1]), 0.5) == [] and associate(np.array([0.1]), np.array([]), 0.5) == []


def test_time_tolerance_is_an_option_and_depth_never_changes_the_frames(tum):
    root, frames = tum
    tight = adapter(root, max_time_difference=0.006)  # GT lines are at most 5 ms away, depth 7.1 ms
    assert tight.frame_ids(MAIN) == adapter(root).frame_ids(MAIN)
    seq = tight.load_frames(MAIN, tight.frame_ids(MAIN)[:2])
    assert not seq.valid.any()
    assert f"{MAIN}: 9 frame(s) have no depth frame within 0.006 s (kept, depth invalid)" in tight.notes()
    with pytest.raises(DatasetError, match=r"max_time_difference=0: must be > 0"):
        adapter(root, max_time_difference=0)


def test_check_data_passes_and_counts_dropped_frames(tum):
    root, _ = tum
    report = check_dataset("tum", root, decode=None)
    assert report.ok, report.issues()
    assert [(s.scene, s.frames, s.invalid_poses) for s in report.scenes] == [(FR1, 3, 0), (FR2, 2, 0), (MAIN, 9, 1)]
    result = CliRunner().invoke(check_data, ["tum", str(root)])
    assert result.exit_code == 0, result.output
    assert "1 of 10 RGB frames have no ground truth" in result.output


# ------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("tum_small")
    write_tum_sequence(root, MAIN, num_frames=3)
    return root


@pytest.fixture
def small(small_template, tmp_path):
    """A fresh copy per test, for tests that break it."""
    return shutil.copytree(small_template, tmp_path / "tum")


def replace_line(path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_quaternion_is_read_scalar_last(small):
    """GT lines all saying: centre (1, 2, 3), 90° about z, written x y z w = 0 0 0.7071 0.7071 (not
    unit length). Read w first, the same numbers would be a half turn about (0, 1, 1)."""
    path = small / MAIN / "groundtruth.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line if line.startswith("#") else f"{line.split()[0]} 1.0000 2.0000 3.0000 0.0000 0.0000 0.7071 0.7071" for line in lines))
    a = adapter(small)
    seq = a.load_frames(MAIN, a.frame_ids(MAIN))
    expected = np.array([[0.0, 1.0, 0.0, -2.0], [-1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, -3.0]])
    np.testing.assert_allclose(seq.extrinsics, np.repeat(expected[None], 3, axis=0), atol=1e-12)


@pytest.mark.parametrize(
    "filename,number,text,message",
    [
        ("rgb.txt", 4, "1305031102.000017 rgb/1305031102.000017.png extra", r"rgb\.txt: line 4: expected 2 fields 'timestamp filename', found 3"),
        ("depth.txt", 5, "12:30 depth/x.png", r"depth\.txt: line 5: timestamp '12:30' is not a number"),
        ("rgb.txt", 6, "1305031102.000017 rgb/1305031102.000017.png", r"rgb\.txt: line 6: timestamp 1305031102\.000017 appears twice"),
        ("groundtruth.txt", 4, "1305031101.7004 1 2 3 0 0 1", r"groundtruth\.txt: line 4: expected 8 fields 'timestamp tx ty tz qx qy qz qw', found 7"),
        ("groundtruth.txt", 5, "1305031101.7104 1 2 3 0 0 one 0", r"groundtruth\.txt: line 5: not numbers"),
        ("groundtruth.txt", 6, "1305031101.7204 1 2 3 0 0 0 0", r"groundtruth\.txt: line 6: quaternion qx qy qz qw has norm 0, expected about 1"),
    ],
)
def test_malformed_lines_name_the_file_and_line(small, filename, number, text, message):
    replace_line(small / MAIN / filename, number, text)
    with pytest.raises(DatasetError, match=rf"{MAIN}/{message}"):
        adapter(small).frame_ids(MAIN)
    report = check_dataset("tum", small, decode=None)
    assert not report.ok and len(report.issues()) == 1 and filename in report.issues()[0]
    result = CliRunner().invoke(check_data, ["tum", str(small)])
    assert result.exit_code == 1 and f"{small / MAIN / filename}: line {number}" in result.output


def test_missing_files_are_listed_and_fail_check_data(small):
    rgb = sorted((small / MAIN / "rgb").iterdir())[1]
    rgb.unlink()
    assert adapter(small).inventory(MAIN).missing == [str(rgb)]
    report = check_dataset("tum", small, decode=None)
    assert not report.ok and report.issues() == [f"missing: {rgb}"]
    result = CliRunner().invoke(check_data, ["tum", str(small), "--frames", "all"])
    assert result.exit_code == 1 and f"is not usable: missing: {rgb}" in result.output
    (small / MAIN / "groundtruth.txt").unlink()
    with pytest.raises(DatasetError, match=rf"{MAIN}/groundtruth\.txt: missing"):
        adapter(small).frame_ids(MAIN)


def test_folder_that_names_no_camera_is_an_error(small):
    (small / MAIN).rename(small / "rgbd_dataset_kinect_xyz")
    a = adapter(small)
    assert a.scenes() == ["rgbd_dataset_kinect_xyz"]
    with pytest.raises(DatasetError, match=r"rgbd_dataset_kinect_xyz: the folder name names no camera \(freiburg1, freiburg2 or freiburg3\)"):
        a.frame_ids("rgbd_dataset_kinect_xyz")
    assert "rgbd_dataset_kinect_xyz: the folder name names no camera" in check_dataset("tum", small).issues()[0]


def test_wrong_sizes_and_depth_format_name_the_file(small):
    a = adapter(small)
    ids = a.frame_ids(MAIN)
    rgb = small / MAIN / "rgb" / f"{ids[1]}.png"
    Image.new("RGB", (320, 240)).save(rgb)
    with pytest.raises(DatasetError, match=rf"{ids[1]}\.png: image is 320x240, TUM RGB-D frames are 640x480"):
        a.load_frames(MAIN, ids)
    depth = sorted((small / MAIN / "depth").iterdir())[0]
    Image.new("L", (640, 480)).save(depth)
    with pytest.raises(DatasetError, match=rf"{depth.name}: expected a 16-bit single-channel PNG, got PIL mode 'L'"):
        a.load_frames(MAIN, ids[:1])
    with pytest.raises(DatasetError, match=r"'1\.5' is not a usable frame"):
        a.load_frames(MAIN, ["1.5"])


def test_empty_root_says_what_layout_is_expected(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(DatasetError, match=r"no TUM RGB-D sequence folders \(expected <root>/rgbd_dataset_freiburgN_<name>/"):
        adapter(tmp_path).scenes()
