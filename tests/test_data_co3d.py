"""CO3D v2 adapter on a small dataset written in the native format (gzip JSON, float16-in-uint16 depth PNGs)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from PIL import Image

from datasets_adapters import DATASETS, DatasetError, Sampling
from datasets_adapters.co3d import opencv_camera
from datasets_adapters.io import read_uint16_png
from tests.native_datasets import CO3D_HW, Co3dSequenceSpec, project, save_uint16_png, unproject, write_co3d_category

SPECS = [
    Co3dSequenceSpec("110_13051_23361", 6, fmt="ndc_isotropic", bad_viewpoint=(3,)),
    Co3dSequenceSpec("189_20393_38136", 6, fmt="ndc_norm_image_bounds", depth_scale=0.7),
    Co3dSequenceSpec("12_90_489", 6, quality=0.3),
    Co3dSequenceSpec("34_1474_4642", 6, quality=None),
    Co3dSequenceSpec("short_seq", 3),
    Co3dSequenceSpec("train_seq", 6, split="train"),
]
OPTIONS = {"min_frames": 5}


@pytest.fixture(scope="module")
def co3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("co3d")
    truth = write_co3d_category(root, "apple", SPECS)
    truth.update(write_co3d_category(root, "bench", [Co3dSequenceSpec("415_57184_110412", 5)]))
    return root, truth


@pytest.fixture
def small_co3d(tmp_path):
    write_co3d_category(tmp_path, "apple", [Co3dSequenceSpec("110_13051_23361", 5)])
    return tmp_path


def adapter(root, **options):
    return DATASETS.get("co3d")(root=root, **{**OPTIONS, **options})


def test_float16_bits_survive_a_png_round_trip(tmp_path):
    values = np.array([0.0, -0.0, 1e-7, 6.1e-5, 0.333, 1.0, 2.5, 1000.0, 65504.0, np.inf, -np.inf, np.nan], dtype=np.float16)
    bits = np.resize(values, (4, 6)).view(np.uint16)
    save_uint16_png(tmp_path / "d.png", bits)
    back = read_uint16_png(tmp_path / "d.png")
    assert back.dtype == np.uint16 and np.array_equal(back, bits)


def test_protocol_filters_quality_length_and_split(co3d):
    root, _ = co3d
    a = adapter(root)
    assert a.scenes() == ["apple/110_13051_23361", "apple/189_20393_38136", "bench/415_57184_110412"]
    notes = " ".join(a.notes())
    assert "2 of 5 sequences kept" in notes and "2 for viewpoint_quality_score <= 0.5" in notes and "1 for fewer than 5 frames" in notes
    # sequences in the order of the set list (the order VGGT's prepared files keep), not by name
    assert adapter(root, min_quality=None).scenes()[:4] == ["apple/110_13051_23361", "apple/189_20393_38136", "apple/12_90_489", "apple/34_1474_4642"]
    assert "apple/train_seq" in adapter(root, split="train").scenes()
    assert "apple/short_seq" in adapter(root, subset=None, min_frames=1).scenes()
    assert adapter(root, categories=["bench"]).scenes() == ["bench/415_57184_110412"]
    assert adapter(root, categories="bench").scenes() == ["bench/415_57184_110412"]


def test_invalid_viewpoint_is_skipped_and_counted(co3d):
    root, _ = co3d
    a = adapter(root)
    scene = "apple/110_13051_23361"
    assert a.frame_ids(scene) == ["1", "2", "4", "5", "6"]
    assert a.inventory(scene).invalid == ["3"]
    seq = a.load(scene, 3, Sampling(kind="random", seed=7))
    assert seq.sampling["frames_skipped"] == 1 and seq.sampling["frames_available"] == 5
    assert seq.sampling["sampling_kind"] == "random" and seq.sampling["sampling_seed"] == 7
    assert set(seq.frame_ids) <= {"1", "2", "4", "5", "6"} and len(seq.frame_ids) == 3
    assert adapter(root).load(scene, 3, Sampling(kind="random", seed=7)).frame_ids == seq.frame_ids


@pytest.mark.parametrize("scene", ["apple/110_13051_23361", "apple/189_20393_38136"])
def test_converted_cameras_put_each_pixel_back_on_its_world_point(co3d, scene):
    """Unprojecting GT depth with the OpenCV K and w2c gives the world point the PyTorch3D camera saw,
    and that point lands where PyTorch3D's projection puts it in every other view."""
    root, truth = co3d
    a = adapter(root)
    ids = a.frame_ids(scene)
    seq = a.load_frames(scene, ids)
    assert seq.images.shape == (len(ids), 3) + CO3D_HW and seq.images.dtype == np.float32
    assert seq.extrinsics.shape == (len(ids), 3, 4) and seq.extrinsics.dtype == np.float64
    cams = {int(i): truth[scene.split("/")[1]][int(i)] for i in ids}
    for i, fid in enumerate(ids):
        points, vu = unproject(seq, i)
        true_points = cams[int(fid)][1].points[vu[:, 0], vu[:, 1]]
        assert len(points) > 0.3 * seq.valid[i].size
        np.testing.assert_allclose(points, true_points, atol=3e-3 * np.abs(true_points).max())
        for j, other in enumerate(ids):
            if j == i:
                continue
            uv, z = project(seq, j, points)
            uv_p3d, z_p3d = cams[int(other)][0].project(points, CO3D_HW)
            np.testing.assert_allclose(uv, uv_p3d, atol=1e-6)
            np.testing.assert_allclose(z, z_p3d, atol=1e-9)


def test_depth_is_scaled_by_scale_adjustment_and_masked(co3d):
    root, truth = co3d
    seq = adapter(root).load_frames("apple/189_20393_38136", ["2"])
    true_depth = truth["189_20393_38136"][2][1].depth
    expected_valid = true_depth > 0
    expected_valid[:4] = False  # the band the depth mask rules out
    assert np.array_equal(seq.valid[0], expected_valid)
    np.testing.assert_allclose(seq.depth[0][expected_valid], true_depth[expected_valid], rtol=1e-3)
    assert (seq.depth[0][~expected_valid] == 0).all()


def test_non_finite_and_negative_depths_are_invalid(small_co3d):
    scene, depth_file = "apple/110_13051_23361", small_co3d / "apple/110_13051_23361/depths/frame000002.jpg.geometric.png"
    before = adapter(small_co3d).load_frames(scene, ["2"])
    row, cols = 40, slice(10, 13)
    assert before.valid[0, row, cols].all()
    bits = read_uint16_png(depth_file)
    bits[row, cols] = np.array([np.nan, np.inf, -2.0], dtype=np.float16).view(np.uint16)
    save_uint16_png(depth_file, bits)
    after = adapter(small_co3d).load_frames(scene, ["2"])
    assert (after.depth[0, row, cols] == 0).all()
    changed = before.valid[0] != after.valid[0]
    assert changed.sum() == 3 and changed[row, cols].all()


def test_intrinsics_formats_differ_only_in_ndc_scale():
    viewpoint = {"R": np.eye(3).tolist(), "T": [0.0, 0.0, 0.0], "focal_length": [2.0, 3.0], "principal_point": [0.1, -0.2]}
    _, k_iso = opencv_camera({**viewpoint, "intrinsics_format": "ndc_isotropic"}, (48, 64))
    _, k_norm = opencv_camera({**viewpoint, "intrinsics_format": "ndc_norm_image_bounds"}, (48, 64))
    np.testing.assert_allclose(k_iso, [[48.0, 0, 32 - 2.4], [0, 72.0, 24 + 4.8], [0, 0, 1]])
    np.testing.assert_allclose(k_norm, [[64.0, 0, 32 - 3.2], [0, 72.0, 24 + 4.8], [0, 0, 1]])
    with pytest.raises(ValueError, match="intrinsics_format 'ndc_bogus'"):
        opencv_camera({**viewpoint, "intrinsics_format": "ndc_bogus"}, (48, 64))


# ------------------------------------------------------------------- bad input


def test_truncated_jgz_names_the_file(small_co3d):
    path = small_co3d / "apple/frame_annotations.jgz"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DatasetError, match=r"apple/frame_annotations\.jgz: truncated or corrupt gzip"):
        adapter(small_co3d).scenes()


def test_malformed_annotation_names_file_frame_and_sequence(small_co3d):
    path = small_co3d / "apple/frame_annotations.jgz"
    with gzip.open(path, "rt") as f:
        frames = json.load(f)
    del frames[2]["viewpoint"]["focal_length"]
    with gzip.open(path, "wt") as f:
        json.dump(frames, f)
    with pytest.raises(DatasetError, match=r"frame_annotations\.jgz: frame 3 of sequence 110_13051_23361: malformed annotation"):
        adapter(small_co3d).scenes()


def test_missing_category_folder_and_set_list_are_named(small_co3d):
    with pytest.raises(DatasetError, match=r"/pear: missing folder"):
        adapter(small_co3d, categories=["pear"]).scenes()
    (small_co3d / "apple/set_lists/set_lists_fewview_dev.json").unlink()
    with pytest.raises(DatasetError, match=r"set_lists_fewview_dev\.json: missing file"):
        adapter(small_co3d).scenes()


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="needs a root folder"):
        DATASETS.get("co3d")()
    with pytest.raises(DatasetError, match=r"nowhere: missing folder"):
        DATASETS.get("co3d")(root=tmp_path / "nowhere")


def test_depth_colour_size_mismatch_names_the_depth_file(small_co3d):
    depth_file = small_co3d / "apple/110_13051_23361/depths/frame000002.jpg.geometric.png"
    save_uint16_png(depth_file, np.zeros((24, 32), dtype=np.uint16))
    with pytest.raises(DatasetError, match=r"depths/frame000002\.jpg\.geometric\.png: depth is 32x24, the image frame000002\.jpg is 64x48"):
        adapter(small_co3d).load_frames("apple/110_13051_23361", ["1", "2"])


def test_missing_image_is_reported_by_the_inventory(small_co3d):
    (small_co3d / "apple/110_13051_23361/images/frame000004.jpg").unlink()
    a = adapter(small_co3d)
    assert a.inventory("apple/110_13051_23361").missing == [str(small_co3d / "apple/110_13051_23361/images/frame000004.jpg")]
    with pytest.raises(DatasetError, match=r"images/frame000004\.jpg: missing; run `avggt-bench check-data co3d"):
        a.frame_ids("apple/110_13051_23361")


def test_image_size_disagreeing_with_the_annotation_is_named(small_co3d):
    Image.new("RGB", (32, 24)).save(small_co3d / "apple/110_13051_23361/images/frame000003.jpg")
    with pytest.raises(DatasetError, match=r"images/frame000003\.jpg: image is 32x24, frame_annotations\.jgz says 64x48"):
        adapter(small_co3d).load_frames("apple/110_13051_23361", ["3"])


def test_set_list_naming_an_unannotated_frame_is_named(small_co3d):
    path = small_co3d / "apple/set_lists/set_lists_fewview_dev.json"
    set_lists = json.loads(path.read_text())
    set_lists["test"].append(["110_13051_23361", 99, "apple/110_13051_23361/images/frame000099.jpg"])
    path.write_text(json.dumps(set_lists))
    with pytest.raises(DatasetError, match=r"set_lists_fewview_dev\.json: frame 99 of sequence 110_13051_23361 is not in .*frame_annotations\.jgz"):
        adapter(small_co3d).scenes()


def test_frames_come_in_set_list_order(tmp_path):
    write_co3d_category(tmp_path, "apple", [Co3dSequenceSpec("110_13051_23361", 5)])
    set_file = tmp_path / "apple/set_lists/set_lists_fewview_dev.json"
    lists = json.loads(set_file.read_text())
    lists["test"] = [lists["test"][i] for i in (3, 0, 4, 1, 2)]  # the order a set list gives is the frame order
    set_file.write_text(json.dumps(lists))
    assert adapter(tmp_path).frame_ids("apple/110_13051_23361") == ["4", "1", "5", "2", "3"]


def test_vggt_prepared_annotations(tmp_path, co3d):
    """VGGT's <category>_test.jgz: sequences and frames in file order, cameras as PyTorch3D R, T with
    ndc_isotropic focal / principal point, images read from the CO3D root; no depth."""
    root, truth = co3d
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    order = ["189_20393_38136", "110_13051_23361"]
    prepared = {}
    for name in order:
        frames = sorted(truth[name].items(), reverse=True)  # file order, not frame-number order
        prepared[name] = [
            {"filepath": f"apple/{name}/images/frame{n:06d}.jpg", "R": cam.R.tolist(), "T": cam.T.tolist(), "focal_length": cam.focal.tolist(), "principal_point": cam.principal.tolist()}
            for n, (cam, _) in frames if cam.fmt == "ndc_isotropic" and n != 3
        ]
    with gzip.open(annotations / "apple_test.jgz", "wt", encoding="utf-8") as f:
        json.dump(prepared, f)
    a = adapter(root, annotations=str(annotations), categories=["apple"])
    assert a.scenes() == ["apple/110_13051_23361"], "file order; the ndc_norm_image_bounds sequence has no frames here"
    assert a.frame_ids("apple/110_13051_23361") == ["6", "5", "4", "2", "1"]
    seq = a.load_frames("apple/110_13051_23361", ["5", "1"])
    assert seq.depth is None and seq.images.shape == (2, 3) + CO3D_HW
    for i, number in enumerate((5, 1)):
        cam = truth["110_13051_23361"][number][0]
        expected_w2c, expected_k = opencv_camera({"R": cam.R, "T": cam.T, "focal_length": cam.focal, "principal_point": cam.principal, "intrinsics_format": "ndc_isotropic"}, CO3D_HW)
        np.testing.assert_allclose(seq.extrinsics[i], expected_w2c)
        np.testing.assert_allclose(seq.intrinsics[i], expected_k)
    with pytest.raises(DatasetError, match=r"bench_test\.jgz: missing file \(VGGT's prepared CO3D annotations of 'bench'\)"):
        adapter(root, annotations=str(annotations), categories=["bench"]).scenes()
    (annotations / "apple_test.jgz").write_text("not gzip")
    with pytest.raises(DatasetError, match="apple_test.jgz: truncated or corrupt gzip"):
        adapter(root, annotations=str(annotations), categories=["apple"]).scenes()
