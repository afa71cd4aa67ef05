"""7-Scenes adapter on sequences written in the distributed layout (640×480, 65535 depths, splits)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from bench.preprocess import preprocess
from datasets_adapters import DATASETS, DatasetError, Sampling
from tests.native_datasets import (
    SEVEN_HW,
    SEVEN_K,
    check_seen_from,
    look_at_c2w,
    orbit_eyes,
    raycast,
    save_matrix,
    save_uint16_png,
    seven_scenes_k,
    unproject,
    write_seven_scenes_sequence,
    write_seven_scenes_splits,
)


@pytest.fixture(scope="module")
def seven(tmp_path_factory):
    root = tmp_path_factory.mktemp("7scenes")
    write_seven_scenes_splits(root, "chess", test=[3, 5], train=[1])
    views = write_seven_scenes_sequence(root, "chess", 3, num_frames=4, invalid=(2,))
    write_seven_scenes_sequence(root, "chess", 5, num_frames=2)
    write_seven_scenes_sequence(root, "chess", 1, num_frames=2)
    write_seven_scenes_splits(root, "stairs", test=[1], train=[])
    write_seven_scenes_sequence(root, "stairs", 1, num_frames=3)
    return root, views


def adapter(root, **options):
    return DATASETS.get("7scenes")(root=root, **options)


def test_splits_select_sequences(seven):
    root, _ = seven
    assert adapter(root).scenes() == ["chess/seq-03", "chess/seq-05", "stairs/seq-01"]
    assert adapter(root, split="train").scenes() == ["chess/seq-01"]
    assert adapter(root, split="all").scenes() == ["chess/seq-01", "chess/seq-03", "chess/seq-05", "stairs/seq-01"]
    a = adapter(root, min_frames=3)
    assert a.scenes() == ["chess/seq-03", "stairs/seq-01"]
    assert "chess/seq-05" in a.notes()[0]


def test_invalid_pose_is_skipped_and_counted_and_keyframes_stride(seven):
    root, _ = seven
    a = adapter(root)
    assert a.frame_ids("chess/seq-03") == ["000000", "000001", "000003"]
    seq = a.load("chess/seq-03", None, Sampling(kind="stride", stride=2))
    assert seq.frame_ids == ["000000", "000003"]
    assert seq.sampling["frames_skipped"] == 1 and seq.sampling["sampling_stride"] == 2


@pytest.mark.parametrize("depth", ["proj", "raw"])
def test_geometry_65535_and_intrinsics(seven, depth):
    root, views = seven
    seq = adapter(root, depth=depth).load_frames("chess/seq-03", ["000000", "000001", "000003"])
    assert seq.images.shape == (3, 3) + SEVEN_HW and seq.images.dtype == np.float32
    np.testing.assert_array_equal(seq.intrinsics[1], seven_scenes_k(SEVEN_K[depth]))
    eyes = orbit_eyes(4, start=0.2 * 3)
    for i, fid in enumerate(seq.frame_ids):
        truth = views[depth][int(fid)]
        assert np.array_equal(seq.valid[i], truth.depth > 0), "65535 must read as invalid"
        assert (seq.depth[i][~seq.valid[i]] == 0).all()
        np.testing.assert_allclose(seq.depth[i], truth.depth, atol=5e-4)
        points, vu = unproject(seq, i)
        np.testing.assert_allclose(points, truth.points[vu[:, 0], vu[:, 1]], atol=3e-3)
        for j, other in enumerate(seq.frame_ids):
            if j != i:
                seen, in_front = check_seen_from(seq, j, points, look_at_c2w(eyes[int(other)]), seven_scenes_k(SEVEN_K[depth]))
                assert seen > 0.3 and in_front < 0.01


def test_depth_range_makes_near_and_far_depth_invalid(seven):
    root, views = seven
    full = adapter(root).load_frames("chess/seq-03", ["000000"])
    values = full.depth[full.valid]
    low, high = np.quantile(values, [0.25, 0.75])
    ranged = adapter(root, min_depth=float(low), max_depth=float(high)).load_frames("chess/seq-03", ["000000"])
    inside = full.valid & (full.depth >= low) & (full.depth <= high)
    assert np.array_equal(ranged.valid, inside) and (ranged.depth[~inside] == 0).all()
    np.testing.assert_array_equal(ranged.depth[inside], full.depth[inside])


# ------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("7scenes_small")
    write_seven_scenes_splits(root, "chess", test=[3], train=[])
    write_seven_scenes_sequence(root, "chess", 3, num_frames=2)
    return root


@pytest.fixture
def small(small_template, tmp_path):
    """A fresh copy per test, for tests that break it."""
    return shutil.copytree(small_template, tmp_path / "7scenes")


def test_depth_colour_size_mismatch_names_the_depth_file(small):
    save_uint16_png(small / "chess/seq-03/frame-000001.depth.proj.png", np.zeros((240, 320)))
    with pytest.raises(DatasetError, match=r"frame-000001\.depth\.proj\.png: depth is 320x240, the colour image frame-000001\.color\.png is 640x480"):
        adapter(small).load_frames("chess/seq-03", ["000000", "000001"])


def test_malformed_pose_file_is_named(small):
    (small / "chess/seq-03/frame-000001.pose.txt").write_text("1 0 0 0\n0 1 0 0\n")
    with pytest.raises(DatasetError, match=r"frame-000001\.pose\.txt: malformed matrix, expected 4x4 = 16 numbers, found 8"):
        adapter(small).frame_ids("chess/seq-03")
    save_matrix(small / "chess/seq-03/frame-000001.pose.txt", np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]))
    with pytest.raises(DatasetError, match=r"frame-000001\.pose\.txt: malformed pose, last row"):
        adapter(small).load_frames("chess/seq-03", ["000001"])


def test_missing_sequence_folder_is_named(small):
    shutil.rmtree(small / "chess/seq-03")
    with pytest.raises(DatasetError, match=r"chess/seq-03 \(folder; unzip seq-03\.zip there\): missing"):
        adapter(small).frame_ids("chess/seq-03")


def test_missing_depth_file_is_listed(small):
    (small / "chess/seq-03/frame-000000.depth.proj.png").unlink()
    assert adapter(small).inventory("chess/seq-03").missing == [str(small / "chess/seq-03/frame-000000.depth.proj.png")]
    assert adapter(small, depth="raw").inventory("chess/seq-03").missing == []


def test_split_file_problems_are_named(small):
    (small / "chess/TestSplit.txt").write_text("sequence3\nseq4\n")
    with pytest.raises(DatasetError, match=r"chess/TestSplit\.txt: malformed line 'seq4', expected 'sequenceN'"):
        adapter(small).scenes()
    (small / "chess/TestSplit.txt").unlink()
    with pytest.raises(DatasetError, match=r"chess/TestSplit\.txt: missing file \(the test split of chess\)"):
        adapter(small).scenes()


def test_images_that_are_not_640x480_are_rejected(small):
    Image.new("RGB", (320, 240)).save(small / "chess/seq-03/frame-000000.color.png")
    with pytest.raises(DatasetError, match=r"frame-000000\.color\.png: image is 320x240, 7-Scenes frames are 640x480"):
        adapter(small).load_frames("chess/seq-03", ["000000"])


def test_truncated_depth_png_is_named(small):
    path = small / "chess/seq-03/frame-000000.depth.proj.png"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"frame-000000\.depth\.proj\.png: cannot decode image"):
        adapter(small).load_frames("chess/seq-03", ["000000"])


def test_bad_options_are_rejected(small):
    with pytest.raises(DatasetError, match="depth='registered'"):
        adapter(small, depth="registered")
    with pytest.raises(DatasetError, match="split='val'"):
        adapter(small, split="val")


def test_8_bit_depth_png_is_rejected(small):
    Image.new("L", (640, 480)).save(small / "chess/seq-03/frame-000000.depth.proj.png")
    with pytest.raises(DatasetError, match=r"frame-000000\.depth\.proj\.png: expected a 16-bit single-channel PNG, got PIL mode 'L'"):
        adapter(small).load_frames("chess/seq-03", ["000000"])


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_shared_preprocessing_keeps_depth_and_cameras_consistent(seven, mode):
    """The runner feeds adapter sequences through bench.preprocess; the 518-px images it makes still
    see the scene where the transformed K, pose and depth say (away from depth edges)."""
    root, _ = seven
    seq = preprocess(adapter(root).load("chess/seq-03", 2, Sampling(kind="first-n")), mode)
    assert seq.images.shape[-1] == 518 and seq.depth.shape == seq.images.shape[:1] + seq.images.shape[2:]
    eyes = orbit_eyes(4, start=0.2 * 3)
    for i, fid in enumerate(seq.frame_ids):
        c2w = look_at_c2w(eyes[int(fid)])
        v, u = np.nonzero(seq.valid[i])
        k = seq.intrinsics[i]
        dirs = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones(len(u))], axis=-1)
        true_depth = raycast(c2w[:3, 3], dirs @ c2w[:3, :3].T)
        agree = np.abs(seq.depth[i][v, u] - true_depth) < 0.02
        assert agree.mean() > 0.99  # a K off by one pixel gives about 0.97
