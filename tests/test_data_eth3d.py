"""ETH3D adapter on scenes written in the release layout (COLMAP text, raw float32 depth, fisheye lenses)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.spatial.transform import Rotation

import datasets_adapters.eth3d as eth3d
from bench.check_data import check_data
from datasets_adapters import DATASETS, DatasetError, Sampling
from datasets_adapters.check import check_dataset
from tests.native_datasets import check_seen_from, raycast, unproject
from tests.native_eth3d import ETH3D_HW, ColmapCamera, distort_normalised, project, undistort_by_bisection, write_eth3d_scene

PINHOLE = ColmapCamera(3, "PINHOLE", (52.5, 51.0, 32.7, 23.9))
FISHEYE = ColmapCamera(7, "THIN_PRISM_FISHEYE", (46.0, 47.5, 32.3, 24.1, 0.03, -0.012, 0.001, -0.002, 0.004, -0.001, 0.002, -0.001))
SIMPLE = ColmapCamera(0, "SIMPLE_PINHOLE", (50.0, 32.0, 24.0))
# (name, image id, camera id) in the order written: ids out of order and unrelated to the names
COURTYARD = [
    ("dslr_images/DSC_0291.JPG", 2, 7),
    ("dslr_images/DSC_0286.JPG", 14, 3),
    ("dslr_images/DSC_0289.JPG", 9, 3),
    ("dslr_images/DSC_0287.JPG", 1, 3),
    ("dslr_images/DSC_0293.JPG", 22, 3),
    ("dslr_images/DSC_0290.JPG", 5, 3),
    ("dslr_images/DSC_0288.JPG", 30, 7),
    ("dslr_images/DSC_0292.JPG", 11, 3),
]
DELIVERY = [("dslr_images/DSC_0003.JPG", 3, 0), ("dslr_images/DSC_0001.JPG", 1, 0), ("dslr_images/DSC_0002.JPG", 2, 0)]
USABLE = ["DSC_0286", "DSC_0287", "DSC_0288", "DSC_0289", "DSC_0291", "DSC_0292", "DSC_0293"]


def write_root(root):
    courtyard = write_eth3d_scene(root, "courtyard", [PINHOLE, FISHEYE], COURTYARD, invalid=("dslr_images/DSC_0290.JPG",))
    delivery = write_eth3d_scene(root, "delivery_area", [SIMPLE], DELIVERY)
    (root / "notes").mkdir()  # no calibration: not a scene
    return {"courtyard": courtyard, "delivery_area": delivery}


@pytest.fixture(scope="module")
def eth(tmp_path_factory):
    root = tmp_path_factory.mktemp("eth3d")
    return root, write_root(root)


@pytest.fixture
def fresh(tmp_path):
    """A copy per test, for tests that break it."""
    return tmp_path, write_root(tmp_path)


def adapter(root, **options):
    return DATASETS.get("eth3d")(root=root, **options)


# ------------------------------------------------------------------- listing


def test_scenes_frames_sorted_by_name_and_invalid_poses_counted(eth):
    root, _ = eth
    a = adapter(root)
    assert a.scenes() == ["courtyard", "delivery_area"]
    assert a.frame_ids("courtyard") == USABLE
    assert a.inventory("courtyard").invalid == ["DSC_0290"]
    assert a.frame_ids("delivery_area") == ["DSC_0001", "DSC_0002", "DSC_0003"]
    seq = a.load("courtyard", None, Sampling(kind="stride", stride=5))  # the protocol's every 5th
    assert seq.frame_ids == ["DSC_0286", "DSC_0292"]
    assert seq.sampling["frames_skipped"] == 1 and seq.sampling["frames_available"] == 7
    short = adapter(root, min_frames=4)
    assert short.scenes() == ["courtyard"] and "delivery_area" in short.notes()[0]


def test_empty_points2d_lines_keep_the_pairs(eth):
    """Half the images have an empty POINTS2D line: skipping blank lines would pair them wrongly."""
    root, _ = eth
    text = (root / "courtyard/dslr_calibration_jpg/images.txt").read_text()
    assert "\n\n" in text
    assert [r.image_id for r in eth3d.read_images(root / "courtyard/dslr_calibration_jpg/images.txt", {3: None, 7: None})] == [14, 1, 30, 9, 5, 2, 11, 22]


# ------------------------------------------------------------------- cameras


def test_cameras_are_the_values_written(eth):
    root, scenes = eth
    seq = adapter(root, undistort=False).load_frames("courtyard", USABLE)
    for i, fid in enumerate(seq.frame_ids):
        shot = scenes["courtyard"].shot(fid)
        q = shot.quaternion / np.linalg.norm(shot.quaternion)
        rotation = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()  # written w first, scipy wants w last
        np.testing.assert_allclose(seq.extrinsics[i], np.concatenate([rotation, shot.translation[:, None]], axis=1), atol=1e-12)
        np.testing.assert_allclose(seq.extrinsics[i], shot.w2c, atol=1e-12)
        (fx, fy), (cx, cy) = shot.camera.focal, shot.camera.centre
        np.testing.assert_array_equal(seq.intrinsics[i], [[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]])
    assert seq.extrinsics.dtype == np.float64 and seq.images.dtype == np.float32 and seq.depth.dtype == np.float32
    simple = adapter(root).load_frames("delivery_area", ["DSC_0002"])
    np.testing.assert_array_equal(simple.intrinsics[0], [[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])


def test_pinhole_depth_and_image_are_as_written(eth):
    root, scenes = eth
    seq = adapter(root).load_frames("courtyard", ["DSC_0286", "DSC_0293"])
    assert seq.images.shape == (2, 3) + ETH3D_HW
    for i, fid in enumerate(seq.frame_ids):
        shot = scenes["courtyard"].shot(fid)
        written = shot.depth_written
        assert np.isinf(written).sum() > 100, "the fixture has +inf (no depth) pixels"
        np.testing.assert_array_equal(seq.depth[i], np.where(np.isfinite(written), written, 0))
        np.testing.assert_array_equal(seq.valid[i], np.isfinite(written))
        decoded = np.asarray(Image.open(root / "courtyard/images" / shot.name).convert("RGB"))
        np.testing.assert_array_equal(seq.images[i], decoded.transpose(2, 0, 1) / np.float32(255))


def test_pinhole_geometry_across_views(eth):
    """Each valid pixel unprojects onto its true world point and is seen where the other views' true cameras see it."""
    root, scenes = eth
    ids = ["DSC_0286", "DSC_0287", "DSC_0289"]
    seq = adapter(root).load_frames("courtyard", ids)
    for i, fid in enumerate(ids):
        truth = scenes["courtyard"].shot(fid)
        points, vu = unproject(seq, i)
        error = np.linalg.norm(points - truth.view.points[vu[:, 0], vu[:, 1]], axis=1)
        assert np.median(error) < 1e-5 and error.max() < 1e-4
        for j, other in enumerate(ids):
            if j == i:
                continue
            shot = scenes["courtyard"].shot(other)
            k = shot.camera.k_integer_centres()
            seen, in_front = check_seen_from(seq, j, points, shot.c2w, k)
            assert seen > 0.3 and in_front < 0.01
            uv, z = project(shot.camera, shot.w2c, points, distorted=False)
            h, w = ETH3D_HW
            inside = (uv[:, 0] > 0) & (uv[:, 0] < w - 1) & (uv[:, 1] > 0) & (uv[:, 1] < h - 1)
            dirs = np.stack([(uv[inside, 0] - k[0, 2]) / k[0, 0], (uv[inside, 1] - k[1, 2]) / k[1, 1], np.ones(inside.sum())], axis=1)
            t = raycast(shot.c2w[:3, 3], dirs @ shot.c2w[:3, :3].T)
            unoccluded = np.abs(t - z[inside]) < 0.05
            assert np.median(np.abs(t - z[inside])[unoccluded]) < 1e-4  # well under a millimetre


# ------------------------------------------------------------------- fisheye


def test_distortion_round_trip_on_random_points():
    rng = np.random.default_rng(0)
    k = np.array(FISHEYE.radial)
    x, y = rng.uniform(-1.2, 1.2, 2000), rng.uniform(-0.9, 0.9, 2000)
    xd, yd = eth3d.fisheye_distort(x, y, k)
    np.testing.assert_allclose(np.stack([xd, yd]), np.stack(distort_normalised(x, y, FISHEYE.radial)), atol=1e-14)
    back_x, back_y, ok = eth3d.fisheye_undistort(xd, yd, k)
    assert ok.all()
    focal = max(FISHEYE.focal)
    assert np.abs(np.stack([back_x - x, back_y - y])).max() * focal < 1e-9  # pixels
    again = eth3d.fisheye_distort(back_x, back_y, k)
    assert np.abs(np.stack([again[0] - xd, again[1] - yd])).max() * focal < 1e-9
    centre = eth3d.fisheye_undistort(np.zeros(1), np.zeros(1), k)
    assert centre[0][0] == 0 and centre[1][0] == 0 and centre[2][0]
    # a realistic ETH3D lens (fx ≈ 3410 px on 6048×4032): the corners still invert to 1e-9 px
    corner_x, corner_y, ok = eth3d.fisheye_undistort(np.array([3024 / 3410]), np.array([2016 / 3410]), np.array([0.02, -0.01, 0.003, 0.0005]))
    assert ok.all()
    redone = eth3d.fisheye_distort(corner_x, corner_y, np.array([0.02, -0.01, 0.003, 0.0005]))
    assert abs(redone[0][0] - 3024 / 3410) * 3410 < 1e-9 and abs(redone[1][0] - 2016 / 3410) * 3410 < 1e-9


def test_fisheye_image_lands_where_the_pinhole_k_predicts(eth):
    """Blobs drawn where the distorted camera sees them appear, after undistortion, at the pinhole K's pixel."""
    root, scenes = eth
    seq = adapter(root).load_frames("courtyard", ["DSC_0288", "DSC_0291"])
    for i, fid in enumerate(seq.frame_ids):
        shot = scenes["courtyard"].shot(fid)
        np.testing.assert_array_equal(seq.intrinsics[i], shot.camera.k_integer_centres())
        grey = seq.images[i].mean(axis=0)
        for u, v in shot.blob_targets:
            r0, c0 = int(round(v)), int(round(u))
            window = grey[r0 - 4 : r0 + 5, c0 - 4 : c0 + 5]
            rows, cols = np.mgrid[r0 - 4 : r0 + 5, c0 - 4 : c0 + 5]
            centroid = np.array([(window * cols).sum(), (window * rows).sum()]) / window.sum()
            assert np.abs(centroid - [u, v]).max() < 0.08, (fid, (u, v), centroid)  # half a pixel off would be ~0.45
        raw = adapter(root, undistort=False).load_frames("courtyard", [fid])
        assert np.abs(raw.images[0] - seq.images[i]).max() > 0.3, "undistort=False gives the image as shot"


def test_fisheye_depth_is_splatted_to_the_pinhole_pixel(eth):
    """Each undistorted depth pixel holds the z of a true scene point whose pinhole projection rounds to it
    (the last such in row-major order), and unprojects within the rounding of one pixel of that point."""
    root, scenes = eth
    seq = adapter(root).load_frames("courtyard", ["DSC_0288", "DSC_0291"])
    h, w = ETH3D_HW
    for i, fid in enumerate(seq.frame_ids):
        shot = scenes["courtyard"].shot(fid)
        rows, cols = np.nonzero(np.isfinite(shot.depth_written))
        truth_points = shot.view.points[rows, cols]
        uv, z = project(shot.camera, shot.w2c, truth_points, distorted=False)
        np.testing.assert_allclose(z, shot.depth_written[rows, cols], rtol=1e-6)  # z-depth survives undistortion
        target = np.rint(uv).astype(int)
        inside = (target[:, 0] >= 0) & (target[:, 0] < w) & (target[:, 1] >= 0) & (target[:, 1] < h)
        expected, source = np.zeros((h, w), np.float32), np.full((h, w), -1)
        for n in np.nonzero(inside)[0]:  # row-major: a later source pixel overwrites
            expected[target[n, 1], target[n, 0]] = shot.depth_written[rows[n], cols[n]]
            source[target[n, 1], target[n, 0]] = n
        assert np.mean(seq.depth[i] != expected) < 1e-3
        assert (seq.valid[i] == (seq.depth[i] > 0)).all() and seq.valid[i].sum() > 500
        points, vu = unproject(seq, i)
        matched = source[vu[:, 0], vu[:, 1]] >= 0
        assert matched.mean() > 0.999
        n = source[vu[matched, 0], vu[matched, 1]]
        lateral = np.linalg.norm(points[matched] - truth_points[n], axis=1)
        assert (lateral <= z[n] * 0.5 * np.sqrt(2) / min(shot.camera.focal) + 1e-9).all()


def test_depth_splat_has_no_z_test_the_last_pixel_wins():
    """A lens that packs several depth pixels into one pinhole pixel: the last in row-major order stays,
    even when it is farther (as π³'s splat); depth increases along the rows here, so a z-test would differ."""
    h, w, k = 20, 24, np.array([[9.0, 0, 11.5], [0, 9.0, 9.5], [0, 0, 1]])
    coefficients = (0.6, 0.0, 0.0, 0.0)
    depth = np.arange(1, h * w + 1, dtype=np.float32).reshape(h, w)
    depth[3, 5] = np.inf  # no depth
    depth[4, 6] = 0.0
    out = eth3d.undistort_depth(np.where(np.isfinite(depth), depth, 0), k, np.array(coefficients))
    rows, cols = np.nonzero(np.isfinite(depth) & (depth > 0))
    x, y = undistort_by_bisection((cols - k[0, 2]) / k[0, 0], (rows - k[1, 2]) / k[1, 1], coefficients)
    u, v = np.rint(k[0, 0] * x + k[0, 2]).astype(int), np.rint(k[1, 1] * y + k[1, 2]).astype(int)
    expected, hits = np.zeros((h, w), np.float32), np.zeros((h, w), int)
    for n in range(len(rows)):
        if 0 <= u[n] < w and 0 <= v[n] < h:
            expected[v[n], u[n]] = depth[rows[n], cols[n]]
            hits[v[n], u[n]] += 1
    assert (hits > 1).sum() > 20, "the lens packs pixels together"
    np.testing.assert_array_equal(out, expected)
    assert not np.isin([depth[3, 5], 0.0], out[out > 0]).any()


def test_fisheye_as_shot_keeps_distorted_depth_and_pinhole_k(eth):
    root, scenes = eth
    seq = adapter(root, undistort=False).load_frames("courtyard", ["DSC_0288"])
    shot = scenes["courtyard"].shot("DSC_0288")
    np.testing.assert_array_equal(seq.depth[0], np.where(np.isfinite(shot.depth_written), shot.depth_written, 0))
    np.testing.assert_array_equal(seq.intrinsics[0], shot.camera.k_integer_centres())


def test_undistort_image_samples_bilinearly_with_black_outside():
    image = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    u, v = np.array([[0.0, 1.5, 3.0, 3.5, -1.0]]), np.array([[0.0, 0.5, 2.0, 1.0, 1.0]])
    out = eth3d._bilinear(image, u, v)
    np.testing.assert_allclose(out[0, 0, :3], [0.0, (1 + 2 + 5 + 6) / 4, 11.0])
    np.testing.assert_allclose(out[:, 0, 3], image[:, 1, 3] / 2)  # half on the last column, half on black
    assert (out[:, 0, 4] == 0).all()


# ------------------------------------------------------------------- bad input


def test_wrong_size_depth_file_is_named(fresh):
    root, _ = fresh
    path = root / "courtyard/ground_truth_depth/dslr_images/DSC_0287.JPG"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(DatasetError, match=rf"{path}: 12280 bytes, expected 12288 = 4·48·64 \(raw float32 depth of the 64x48 image\)"):
        adapter(root).load_frames("courtyard", ["DSC_0286", "DSC_0287"])


def test_unknown_camera_model_is_named(fresh):
    root, _ = fresh
    path = root / "delivery_area/dslr_calibration_jpg/cameras.txt"
    path.write_text("# cameras\n0 OPENCV_FISHEYE 64 48 50 50 32 24 0 0 0 0\n")
    with pytest.raises(DatasetError, match=rf"{path}: camera 0 \(line 2\) has model OPENCV_FISHEYE; supported models: SIMPLE_PINHOLE, PINHOLE, THIN_PRISM_FISHEYE"):
        adapter(root).frame_ids("delivery_area")
    path.write_text("0 PINHOLE 64 48 50 50 32\n")
    with pytest.raises(DatasetError, match=rf"{path}: line 1: camera 0 \(PINHOLE\) has 3 parameters, expected 4 \(fx fy cx cy\)"):
        adapter(root).frame_ids("delivery_area")


@pytest.mark.parametrize(
    "replace, message",
    [
        (lambda lines: lines[:4] + ["3 1 0 0 0 0.1 0.2 x 0 dslr_images/DSC_0003.JPG"] + lines[5:], r"line 5: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, found '3 1 0 0 0 0.1 0.2 x 0"),
        (lambda lines: lines[:4] + ["3 1 0 0 0 0.1 0.2 0.3 0"] + lines[5:], r"line 5: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME"),
        (lambda lines: lines[:5] + lines[6:], r"line 6: expected the POINTS2D line of image 3 \(X Y POINT3D_ID triples, or empty\), found '1 "),
        (lambda lines: lines[:4] + ["3 1 0 0 0 0.1 0.2 0.3 4 dslr_images/DSC_0003.JPG"] + lines[5:], r"line 5: image 3 uses camera 4, which .*cameras\.txt does not define"),
        (lambda lines: lines[:4] + ["3 0 0 0 0 0.1 0.2 0.3 0 dslr_images/DSC_0003.JPG"] + lines[5:], r"line 5: the quaternion QW QX QY QZ is zero"),
        (lambda lines: lines[:6] + ["3" + lines[6][1:]] + lines[7:], r"line 7: image id 3 appears twice"),
    ],
)
def test_malformed_images_txt_names_file_and_line(fresh, replace, message):
    root, _ = fresh
    path = root / "delivery_area/dslr_calibration_jpg/images.txt"
    lines = path.read_text().splitlines()
    assert lines[4].startswith("3 ") and lines[5] == "" and lines[6].startswith("1 ")  # after 4 header lines: image 3, its empty POINTS2D, image 1
    path.write_text("\n".join(replace(lines)) + "\n")
    with pytest.raises(DatasetError, match=rf"{path}: {message}"):
        adapter(root).frame_ids("delivery_area")


def test_image_of_another_size_than_its_camera_is_named(fresh):
    root, _ = fresh
    path = root / "delivery_area/images/dslr_images/DSC_0002.JPG"
    Image.new("RGB", (32, 24)).save(path, format="JPEG")
    with pytest.raises(DatasetError, match=rf"{path}: image is 32x24, its camera 0 in cameras.txt is 64x48"):
        adapter(root).load_frames("delivery_area", ["DSC_0002"])


def test_missing_files_and_folders_are_listed(fresh):
    root, _ = fresh
    (root / "courtyard/ground_truth_depth/dslr_images/DSC_0289.JPG").unlink()
    (root / "courtyard/images/dslr_images/DSC_0290.JPG").unlink()
    assert adapter(root).inventory("courtyard").missing == [
        str(root / "courtyard/ground_truth_depth/dslr_images/DSC_0289.JPG"),
        str(root / "courtyard/images/dslr_images/DSC_0290.JPG"),
    ]
    shutil.rmtree(root / "delivery_area/ground_truth_depth")
    assert adapter(root).inventory("delivery_area").missing == [
        f"{root}/delivery_area/ground_truth_depth/dslr_images (folder; unpack delivery_area_dslr_depth.7z in the root)"
    ]
    with pytest.raises(DatasetError, match=r"ground_truth_depth/dslr_images \(folder; unpack delivery_area_dslr_depth\.7z in the root\): missing"):
        adapter(root).frame_ids("delivery_area")
    assert adapter(root).inventory("terrace").missing == [
        f"{root}/terrace/dslr_calibration_jpg/cameras.txt",
        f"{root}/terrace/dslr_calibration_jpg/images.txt",
    ]


def test_options_and_empty_root(tmp_path):
    with pytest.raises(DatasetError, match="eth3d option undistort='yes'"):
        adapter(tmp_path, undistort="yes")
    with pytest.raises(DatasetError, match=r"no ETH3D scene folders \(expected <root>/<scene>/dslr_calibration_jpg/images\.txt"):
        adapter(tmp_path).scenes()
    assert adapter(tmp_path).root_variable == "ETH3D_ROOT"


def test_check_data_passes_on_good_copy_and_names_a_broken_file(fresh):
    root, _ = fresh
    report = check_dataset("eth3d", root, decode=None)
    assert report.ok, report.format()
    assert [(s.scene, s.frames, s.invalid_poses) for s in report.scenes] == [("courtyard", 7, 1), ("delivery_area", 3, 0)]
    path = root / "courtyard/ground_truth_depth/dslr_images/DSC_0292.JPG"
    path.write_bytes(path.read_bytes() + b"\0\0\0\0")
    report = check_dataset("eth3d", root, decode=None)
    assert not report.ok
    assert report.issues() == [f"{path}: 12292 bytes, expected 12288 = 4·48·64 (raw float32 depth of the 64x48 image)"]
    result = CliRunner().invoke(check_data, ["eth3d", str(root), "--frames", "all"])
    assert result.exit_code == 1 and f"Error: eth3d at {root} is not usable: {path}: 12292 bytes" in result.output
