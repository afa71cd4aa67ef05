"""DTU adapter on scans written in the MVSNet / Spann3R layout (mm cams and .npy depths, 8-bit masks)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import datasets_adapters.dtu  # noqa: F401  (registers "dtu")
from bench.check_data import check_data
from datasets_adapters import DATASETS, DatasetError, Sampling, create_adapter
from datasets_adapters.check import check_dataset
from datasets_adapters.dtu import check_intrinsics, evaluation_mask, read_cam, resize_nearest
from tests.native_datasets import check_seen_from, raycast, unproject
from tests.native_dtu import DTU_HW, DTU_K, TEST_K, TRAINING_K, cam_text, save_mask, save_npy, true_c2w, write_dtu_scan

SCAN1_VIEWS, SCAN4_VIEWS = 11, 4


def hand_masks() -> dict[int, np.ndarray]:
    """View 0: a rectangle with a band just under the threshold (127) and a column just over it
    (128); view 1: a rectangle written at half the image size."""
    full = np.zeros(DTU_HW, dtype=np.uint8)
    full[4:41, 6:59] = 255
    full[:, 30:32] = 127
    full[4:41, 40] = 128
    half = np.zeros((24, 32), dtype=np.uint8)
    half[2:20, 3:29] = 255
    return {0: full, 1: half}


def expected_mask(view: int, kind: str) -> np.ndarray:
    """What the protocol evaluates of `hand_masks()`, worked out by hand (erosion keeps p when
    p−5 … p+4 are all set; the image border does not erode)."""
    out = np.zeros(DTU_HW, dtype=bool)
    if view == 0 and kind == "eroded":
        out[9:37, 11:26] = out[9:37, 37:55] = True
    elif view == 0:
        out[4:41, 6:30] = out[4:41, 32:59] = True
    elif view == 1 and kind == "eroded":
        out[9:36, 11:54] = True
    elif view == 1:
        out[4:40, 6:58] = True  # every half-size pixel becomes 2×2
    else:
        out[:] = True  # all 255: the border does not erode
    return out


@pytest.fixture(scope="module")
def dtu(tmp_path_factory):
    root = tmp_path_factory.mktemp("dtu")
    views = {
        "scan1": write_dtu_scan(root, 1, SCAN1_VIEWS, invalid=(3,), masks=hand_masks()),
        "scan4": write_dtu_scan(root, 4, SCAN4_VIEWS),
    }
    return root, views


@pytest.fixture
def broken(dtu, tmp_path):
    """A fresh copy per test, for tests that break it."""
    return shutil.copytree(dtu[0], tmp_path / "dtu")


def adapter(root, **options):
    return DATASETS.get("dtu")(root=root, **options)


def ids(*numbers: int) -> list[str]:
    return [f"{n:08d}" for n in numbers]


# ------------------------------------------------------------------- listing and sampling


def test_scans_in_scan_number_order(tmp_path):
    for name in ("scan10", "scan9", "scan118", "scan1", "scan4", "scan4_train", "Rectified", "Cameras"):
        (tmp_path / name).mkdir()
    (tmp_path / "scan2").write_text("a file, not a scan folder")
    assert adapter(tmp_path).scenes() == ["scan1", "scan4", "scan9", "scan10", "scan118"]


def test_views_invalid_poses_and_the_protocol_stride(dtu):
    root, _ = dtu
    a = adapter(root)
    assert a.scenes() == ["scan1", "scan4"]
    assert a.frame_ids("scan1") == ids(0, 1, 2, 4, 5, 6, 7, 8, 9, 10)
    assert a.inventory("scan1").invalid == ids(3)
    seq = a.load("scan1", None, Sampling(kind="stride", stride=5))  # pi3-mv-recon: every 5th view
    assert seq.frame_ids == ids(0, 6)
    assert seq.sampling["frames_available"] == 10 and seq.sampling["frames_skipped"] == 1
    short = adapter(root, min_frames=5)
    assert short.scenes() == ["scan1"]
    assert short.notes() == ["1 scene(s) with fewer than min_frames=5 usable frames left out: scan4"]


# ------------------------------------------------------------------- cam.txt


def test_depth_range_line_in_its_three_forms(dtu):
    root, _ = dtu
    a = adapter(root)
    forms = [a.camera("scan4", f) for f in ids(0, 1, 2)]  # 29, 30 and 31 words
    assert [(c.depth_min, c.depth_interval, c.depth_num, c.depth_max) for c in forms] == [
        (425.0, 2.5, None, None),
        (425.0, 2.5, 192, None),
        (425.0, 2.5, 192, 935.5),
    ]
    assert [len((root / f"scan4/cams/{f}_cam.txt").read_text().split()) for f in ids(0, 1, 2)] == [29, 30, 31]
    np.testing.assert_array_equal(forms[0].intrinsic, DTU_K)


@pytest.mark.parametrize(
    "depth_line, message",
    [
        ("425", r"28 words; expected 29, 30 or 31"),
        ("425 2.5 192 935 1", r"32 words; expected 29, 30 or 31"),
        ("425 2.5 many", r"a word that is not a number"),
        ("425 2.5 192.5", r"DEPTH_NUM is 192.5, expected a whole number"),
    ],
)
def test_malformed_cam_files_are_named(tmp_path, depth_line, message):
    path = tmp_path / "00000000_cam.txt"
    path.write_text(cam_text(np.eye(4), DTU_K, depth_line))
    with pytest.raises(DatasetError, match=rf"^{path}: malformed MVSNet camera, {message}"):
        read_cam(path)


def test_cam_keywords_are_where_mvsnet_writes_them(tmp_path):
    path = tmp_path / "00000000_cam.txt"
    path.write_text(cam_text(np.eye(4), DTU_K, "425 2.5").replace("intrinsic", "intrinsics"))
    with pytest.raises(DatasetError, match=rf"^{path}: malformed MVSNet camera, words 1 and 18 are 'extrinsic' and 'intrinsics'"):
        read_cam(path)


def test_training_set_intrinsics_are_refused():
    check_intrinsics(TEST_K, (1200, 1600), "cams/00000000_cam.txt")  # the test set's K and image size
    refused = r"^cams/00000000_cam\.txt: principal point \(82\.90, 66\.38\) is outside the middle half of the 1600x1200 image"
    with pytest.raises(DatasetError, match=refused + ", so this K is for images of about 167x134"):
        check_intrinsics(TRAINING_K, (1200, 1600), "cams/00000000_cam.txt")
    with pytest.raises(DatasetError, match=r"training Cameras/\*_cam\.txt"):
        check_intrinsics(TEST_K, (128, 160), "c")


def test_training_set_intrinsics_are_refused_when_loading(broken):
    w2c = adapter(broken).camera("scan4", "00000001").extrinsic
    path = broken / "scan4/cams/00000001_cam.txt"
    path.write_text(cam_text(w2c, TRAINING_K, "425.0 2.5"))
    with pytest.raises(DatasetError, match=rf"^{path}: principal point \(82\.90, 66\.38\) is outside the middle half of the 64x48 image"):
        adapter(broken).load_frames("scan4", ids(0, 1))


def test_malformed_intrinsics_and_extrinsics_are_named(broken):
    a, path = adapter(broken), broken / "scan4/cams/00000002_cam.txt"
    w2c = a.camera("scan4", "00000002").extrinsic
    path.write_text(cam_text(w2c, np.diag([60.0, 60.0, 0.0]) + np.array([[0, 0, 32], [0, 0, 24], [0, 0, 0]]), "425 2.5"))
    with pytest.raises(DatasetError, match=rf"^{path}: malformed intrinsic"):
        a.load_frames("scan4", ids(2))
    path.write_text(cam_text(np.diag([2.0, 1.0, 1.0, 1.0]), DTU_K, "425 2.5"))
    with pytest.raises(DatasetError, match=rf"^{path}: malformed pose, the 3x3 block is not a rotation"):
        a.load_frames("scan4", ids(2))


# ------------------------------------------------------------------- units and geometry


def test_millimetres_become_metres_exactly(dtu, broken):
    root, _ = dtu
    seq = adapter(root, mask="none").load_frames("scan4", ids(0, 1, 2, 3))
    for i, fid in enumerate(seq.frame_ids):
        words = (root / f"scan4/cams/{fid}_cam.txt").read_text().split()
        w2c_mm = np.array(words[1:17], dtype=np.float64).reshape(4, 4)
        np.testing.assert_array_equal(seq.extrinsics[i][:, :3], w2c_mm[:3, :3])
        np.testing.assert_array_equal(seq.extrinsics[i][:, 3], w2c_mm[:3, 3] / 1000.0)
        np.testing.assert_array_equal(seq.depth[i], np.load(root / f"scan4/depths/{fid}.npy") / np.float32(1000.0))
        np.testing.assert_array_equal(seq.intrinsics[i], DTU_K)
    assert seq.depth.dtype == np.float32 and seq.extrinsics.dtype == np.float64

    w2c = np.eye(4)
    w2c[:3, 3] = [1234.5, -250.0, 800.0]
    (broken / "scan4/cams/00000000_cam.txt").write_text(cam_text(w2c, DTU_K, "425 2.5"))
    depth = np.zeros(DTU_HW, dtype=np.float32)
    depth[10, 20], depth[30, 40] = 1250.0, 425.0
    save_npy(broken / "scan4/depths/00000000.npy", depth)
    seq = adapter(broken, mask="none").load_frames("scan4", ids(0))
    np.testing.assert_array_equal(seq.extrinsics[0], [[1, 0, 0, 1.2345], [0, 1, 0, -0.25], [0, 0, 1, 0.8]])
    assert seq.depth[0][10, 20] == np.float32(1.25) and seq.depth[0][30, 40] == np.float32(0.425)
    assert seq.valid[0].sum() == 2


def test_geometry_across_views(dtu):
    """Each view's depth, unprojected with the adapter's cameras, lands on the true scene (metres),
    and projected into the other views lands where the true cameras see the scene."""
    root, views = dtu
    frames = ids(0, 5, 10)
    seq = adapter(root, mask="none").load_frames("scan1", frames)
    assert seq.images.shape == (3, 3) + DTU_HW and seq.images.dtype == np.float32
    c2w = true_c2w(1, SCAN1_VIEWS)
    errors_mm = []
    for i, fid in enumerate(frames):
        truth = views["scan1"][int(fid)]
        assert np.array_equal(seq.valid[i], truth.depth > 0)
        points, vu = unproject(seq, i)
        np.testing.assert_allclose(points, truth.points[vu[:, 0], vu[:, 1]], atol=1e-5)
        decoded = np.asarray(Image.open(root / f"scan1/images/{fid}.jpg").convert("RGB")).transpose(2, 0, 1)
        np.testing.assert_allclose(seq.images[i] * 255, decoded, atol=1e-4)
        for j, other in enumerate(frames):
            if j == i:
                continue
            cam = points @ seq.extrinsics[j][:, :3].T + seq.extrinsics[j][:, 3]
            uv = cam @ seq.intrinsics[j].T
            uv, z = uv[:, :2] / uv[:, 2:3], cam[:, 2]
            inside = (uv[:, 0] > -0.5) & (uv[:, 0] < DTU_HW[1] - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < DTU_HW[0] - 0.5)
            truth_c2w = c2w[int(other)]
            rays = np.stack([(uv[inside, 0] - DTU_K[0, 2]) / DTU_K[0, 0], (uv[inside, 1] - DTU_K[1, 2]) / DTU_K[1, 1], np.ones(inside.sum())], axis=-1)
            t = raycast(truth_c2w[:3, 3], rays @ truth_c2w[:3, :3].T)
            seen = np.abs(t - z[inside]) < 1e-2  # not occluded in view j
            errors_mm.append(np.abs(t - z[inside])[seen] * 1000.0)
            fraction_seen, in_front = check_seen_from(seq, j, points, truth_c2w, DTU_K)
            assert fraction_seen > 0.3 and in_front < 0.01
    assert np.median(np.concatenate(errors_mm)) < 0.01  # mm; a wrong unit or pose is off by metres


# ------------------------------------------------------------------- masks


@pytest.mark.parametrize("kind", ["eroded", "plain", "none"])
def test_masks_threshold_resize_and_erosion_by_hand(dtu, kind):
    root, _ = dtu
    seq = adapter(root, mask=kind).load_frames("scan1", ids(0, 1, 2))
    for i, fid in enumerate(seq.frame_ids):
        depth = np.load(root / f"scan1/depths/{fid}.npy") / np.float32(1000.0)
        keep = expected_mask(i, kind) if kind != "none" else np.ones(DTU_HW, dtype=bool)
        np.testing.assert_array_equal(seq.depth[i], np.where(keep, depth, 0))
        np.testing.assert_array_equal(seq.valid[i], keep & (depth > 0))
    assert adapter(root).load_frames("scan1", ids(0)).valid.sum() < adapter(root, mask="plain").load_frames("scan1", ids(0)).valid.sum()


def test_erosion_anchor_is_opencvs_for_an_even_kernel():
    """OpenCV's 10×10 erode anchored at (5, 5) takes the minimum over offsets −5 … +4, so one unset
    pixel at r unsets rows r−4 … r+5 (not r−5 … r+4, the other possible anchor)."""
    values = np.full((40, 50), 255, dtype=np.uint8)
    values[20, 30] = 0
    expected = np.ones((40, 50), dtype=bool)
    expected[16:26, 26:36] = False
    np.testing.assert_array_equal(evaluation_mask(values, (40, 50)), expected)


def test_erosion_border_does_not_erode():
    """Outside the image counts as set: a mask set everywhere stays set, and a rectangle touching the
    top-left corner shrinks only at its inner edges (rows 0 … 15 of 0 … 19, cols 0 … 20 of 0 … 24)."""
    assert evaluation_mask(np.full((30, 40), 255, dtype=np.uint8), (30, 40)).all()
    values = np.zeros((30, 40), dtype=np.uint8)
    values[:20, :25] = 255
    expected = np.zeros((30, 40), dtype=bool)
    expected[:16, :21] = True
    np.testing.assert_array_equal(evaluation_mask(values, (30, 40)), expected)
    values = np.zeros((30, 40), dtype=np.uint8)
    values[12:, 17:] = 255  # the bottom-right corner: inner edges shrink by 5 (top, left)
    expected = np.zeros((30, 40), dtype=bool)
    expected[17:, 22:] = True
    np.testing.assert_array_equal(evaluation_mask(values, (30, 40)), expected)


def test_threshold_is_half_of_255_and_resize_is_opencvs_nearest():
    values = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(evaluation_mask(values, (1, 4), erode=False), [[False, False, True, True]])
    grid = np.arange(24).reshape(4, 6)
    np.testing.assert_array_equal(resize_nearest(grid, (2, 3)), [[0, 2, 4], [12, 14, 16]])  # floor(i·2): the even pixels
    np.testing.assert_array_equal(resize_nearest(grid[:, :5], (4, 3))[0], [0, 1, 3])  # floor(i·5/3) = 0, 1, 3 (centres: 0, 2, 4)
    np.testing.assert_array_equal(resize_nearest(grid[:2, :3], (4, 6)), np.repeat(np.repeat(grid[:2, :3], 2, axis=0), 2, axis=1))
    np.testing.assert_array_equal(resize_nearest(grid, (4, 6)), grid)


def test_masks_are_not_needed_without_masking(broken):
    shutil.rmtree(broken / "scan4/binary_masks")
    assert adapter(broken).inventory("scan4").missing == [f"{broken}/scan4/binary_masks (folder)"]
    assert adapter(broken, mask="none").frame_ids("scan4") == ids(0, 1, 2, 3)


def test_bad_masks_are_named(broken):
    path = broken / "scan4/binary_masks/00000001.png"
    Image.new("RGB", (64, 48), (255, 255, 255)).save(path)
    with pytest.raises(DatasetError, match=rf"^{path}: expected an 8-bit single-channel mask \(PIL mode 'L'\), got mode 'RGB'"):
        adapter(broken).load_frames("scan4", ids(1))
    save_mask(path, np.full((48, 48), 255))
    with pytest.raises(DatasetError, match=rf"^{path}: mask is 48x48, not the shape of the 64x48 depth map"):
        adapter(broken).load_frames("scan4", ids(1))
    path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError, match=rf"^{path}: cannot decode image"):
        adapter(broken).load_frames("scan4", ids(1))
    assert adapter(broken, mask="none").load_frames("scan4", ids(1)).num_frames == 1


# ------------------------------------------------------------------- depth files


def test_non_finite_depth_becomes_zero(broken):
    path = broken / "scan4/depths/00000002.npy"
    depth = np.load(path)
    depth[0, :4] = [np.nan, np.inf, -np.inf, -3.0]
    save_npy(path, depth)
    seq = adapter(broken, mask="none").load_frames("scan4", ids(2))
    assert np.isfinite(seq.depth).all()
    np.testing.assert_array_equal(seq.depth[0, 0, :4], 0.0)
    assert not seq.valid[0, 0, :4].any()


def test_bad_depth_files_are_named(broken):
    path = broken / "scan4/depths/00000001.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DatasetError, match=rf"^{path}: cannot read \.npy"):
        adapter(broken).load_frames("scan4", ids(1))
    save_npy(path, np.zeros((48, 64), dtype=np.uint16))
    with pytest.raises(DatasetError, match=rf"^{path}: expected a float32 \(H, W\) depth map in mm, got uint16"):
        adapter(broken).load_frames("scan4", ids(1))
    save_npy(path, np.zeros((24, 32), dtype=np.float32))
    with pytest.raises(DatasetError, match=rf"^{path}: depth is 32x24, the image 00000001\.jpg is 64x48"):
        adapter(broken).load_frames("scan4", ids(0, 1))


def test_missing_files_and_folders_are_listed(broken):
    (broken / "scan4/cams/00000002_cam.txt").unlink()
    (broken / "scan4/depths/00000003.npy").unlink()
    inv = adapter(broken).inventory("scan4")
    assert inv.missing == [f"{broken}/scan4/cams/00000002_cam.txt", f"{broken}/scan4/depths/00000003.npy"]
    with pytest.raises(DatasetError, match=rf"{broken}/scan4/cams/00000002_cam\.txt: missing \(and 1 more\); run `avggt-bench check-data dtu"):
        adapter(broken).frame_ids("scan4")
    shutil.rmtree(broken / "scan1/cams")
    with pytest.raises(DatasetError, match=rf"{broken}/scan1/cams \(folder\): missing"):
        adapter(broken).frame_ids("scan1")
    with pytest.raises(DatasetError, match=rf"{broken}/scan7 \(folder\): missing"):
        adapter(broken).frame_ids("scan7")


def test_options_and_layout_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"dtu option mask='soft': choose one of 'eroded' .*, 'plain' .*, 'none'"):
        adapter(tmp_path, mask="soft")
    with pytest.raises(DatasetError, match=r"dataset 'dtu': option masks: unknown option; allowed: mask, min_frames, workers"):
        create_adapter("dtu", tmp_path, masks="none")
    (tmp_path / "Rectified").mkdir()
    with pytest.raises(DatasetError, match=rf"{tmp_path}: no DTU scan folders \(expected <root>/scanN/\{{images,cams,depths,binary_masks\}}/\)"):
        adapter(tmp_path).scenes()
    assert DATASETS.get("dtu").root_variable == "DTU_ROOT"


# ------------------------------------------------------------------- check-data


def test_check_data_on_a_good_copy(dtu):
    root, _ = dtu
    report = check_dataset("dtu", root, decode=None)
    assert report.ok, report.format()
    assert [(s.scene, s.frames, s.invalid_poses) for s in report.scenes] == [("scan1", 10, 1), ("scan4", 4, 0)]
    result = CliRunner().invoke(check_data, ["dtu", str(root), "--frames", "all"])
    assert result.exit_code == 0, result.output
    total = [line.split() for line in result.output.splitlines() if line.startswith("total")][0]
    assert total == ["total", "2", "14", "1", "0", "0"]


def test_check_data_on_a_broken_copy_names_the_files(broken):
    (broken / "scan1/cams/00000004_cam.txt").unlink()
    (broken / "scan4/depths/00000002.npy").write_bytes(b"not an npy file")
    result = CliRunner().invoke(check_data, ["dtu", str(broken), "--frames", "all"])
    assert result.exit_code == 1
    assert f"missing: {broken}/scan1/cams/00000004_cam.txt" in result.output
    assert f"{broken}/scan4/depths/00000002.npy: cannot read .npy" in result.output
    assert f"Error: dtu at {broken} is not usable: missing: {broken}/scan1/cams/00000004_cam.txt" in result.output
