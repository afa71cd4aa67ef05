import time

import numpy as np
import pytest

from metrics import METRICS, MetricInputError
from metrics.geometry import unproject_depth
from metrics.pointcloud import VoxelGrid, estimate_normals, random_subset, voxel_downsample
from metrics.pointmap import SCORES, cloud_distances
from tests.metrics_scene import box_room, random_similarity, transform_world


def pointmap(pred, gt, **options):
    return METRICS.get("pointmap")(pred, gt, **options)


def gt_world_points(gt) -> np.ndarray:
    points = np.zeros((*gt["depth"].shape, 3))
    points[gt["valid"]] = unproject_depth(gt["depth"], gt["intrinsics"], gt["extrinsics"], gt["valid"])
    return points


@pytest.fixture(scope="module")
def gt():
    return box_room(frames=6, height=24, width=32)


def assert_perfect(row, tol=1e-9):
    for key in ("acc", "acc_med", "comp", "comp_med", "chamfer"):
        assert row[key] == pytest.approx(0.0, abs=tol), key
    for key in ("nc1", "nc2", "nc"):
        assert row[key] == pytest.approx(1.0, abs=tol), key


def test_perfect_prediction(gt):
    row = pointmap({"world_points": gt_world_points(gt)}, gt)
    assert_perfect(row)
    assert (row["pointmap_source"], row["pointmap_icp_threshold"], row["pointmap_voxel_size"], row["pointmap_conf_filter"]) == ("world_points", 0.1, 0.01, "none")
    assert row["pointmap_max_points"] == 1_000_000 and row["pointmap_pred_voxels"] == row["pointmap_gt_voxels"] > 1000


def test_similarity_transformed_prediction_is_perfect_after_alignment(gt):
    scale, rotation, translation = random_similarity(7)
    pred = {"world_points": scale * gt_world_points(gt) @ rotation.T + translation}
    assert_perfect(pointmap(pred, gt))
    # The same prediction as depth + cameras of the transformed world.
    cameras = {"depth": scale * gt["depth"], "intrinsics": gt["intrinsics"], "extrinsics": transform_world(gt["extrinsics"], scale, rotation, translation)}
    row = pointmap(cameras, gt, source="depth")
    assert_perfect(row)
    assert row["pointmap_source"] == "depth"


def plane_grid(spacing: float = 0.1, size: int = 30) -> np.ndarray:
    x, y = np.meshgrid(np.arange(size) * spacing, np.arange(size) * spacing)
    return np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)


def test_a_cloud_shifted_by_d_has_acc_and_comp_d_before_alignment():
    grid = plane_grid()
    shift = np.array([0.03, 0.0, 0.04])  # |d| = 0.05, less than half the 0.1 grid spacing
    row = cloud_distances(grid + shift, grid)
    for key in ("acc", "acc_med", "comp", "comp_med", "chamfer"):
        assert row[key] == pytest.approx(0.05), key
    assert row["nc"] == pytest.approx(1.0)


def test_normal_consistency_of_a_tilted_plane():
    grid = plane_grid()
    tilt = np.radians(30.0)
    tilted = grid @ np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]]).T
    row = cloud_distances(tilted, grid)
    assert row["nc1"] == pytest.approx(np.cos(tilt)) and row["nc2"] == pytest.approx(np.cos(tilt))


def test_pca_normals_of_a_sphere_point_outwards():
    directions = np.random.default_rng(0).normal(size=(3000, 3))
    sphere = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    normals = estimate_normals(sphere, neighbours=10)
    assert np.min(np.abs(np.sum(normals * sphere, axis=1))) > 0.98


def test_normals_are_stable_under_rounding_and_undefined_on_lines():
    # Two lattice faces meeting at an edge: many exactly equal neighbour distances, so rounding
    # decides which 30 neighbours plain k-NN would take (it then differs by up to 11°).
    x, y = np.meshgrid(np.arange(21) * 0.05, np.arange(21) * 0.05)
    floor = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    corner = np.concatenate([floor, floor[:, [0, 2, 1]] + np.array([0, 0, 0.05])])
    perturbed = corner * (1 + 1e-15 * np.random.default_rng(3).choice([-1, 1], size=corner.shape))
    dots = np.abs(np.sum(estimate_normals(corner) * estimate_normals(perturbed), axis=1))
    assert dots.min() > 1 - 1e-12
    line = np.outer(np.linspace(0, 1, 50), [1.0, 2.0, 0.5])
    assert np.isnan(estimate_normals(line)).all()
    row = cloud_distances(np.concatenate([plane_grid(), line + 5]), np.concatenate([plane_grid(), line + 5]))
    assert row["nc"] == 1.0


def test_voxel_downsampling_keeps_the_mean_of_each_voxel():
    # With a 0.1 voxel the cell of the origin spans [−0.038, 0.062) on each axis (the grid phase).
    points = np.array([[0.0, 0.0, 0.0], [0.02, 0.04, -0.02], [0.15, 0.0, 0.0], [-0.05, 0.0, 0.0], [1e9, 0, 0]])
    down = voxel_downsample(points, 0.1)
    expected = [[0.01, 0.02, -0.01], [0.15, 0.0, 0.0], [-0.05, 0.0, 0.0], [1e9, 0, 0]]
    np.testing.assert_allclose(sorted(map(tuple, down)), sorted(map(tuple, expected)))
    np.testing.assert_array_equal(voxel_downsample(points, 0.0), points)


def test_surfaces_at_round_coordinates_are_not_split_by_rounding():
    wall = np.stack(np.meshgrid(np.linspace(0, 1, 50), np.linspace(0, 1, 50), [2.0]), axis=-1).reshape(-1, 3)
    jittered = wall * (1 + 1e-15 * np.random.default_rng(0).choice([-1, 1], size=wall.shape))
    np.testing.assert_allclose(np.sort(voxel_downsample(jittered, 0.01), axis=0), np.sort(voxel_downsample(wall, 0.01), axis=0), atol=1e-12)


def test_voxel_grid_merges_chunks_exactly():
    points = np.random.default_rng(1).uniform(-1, 1, size=(5000, 3))
    grid = VoxelGrid(0.25)
    for chunk in np.array_split(points, 40):  # more chunks than the grid keeps apart before merging
        grid.add(chunk)
    whole = voxel_downsample(points, 0.25)
    np.testing.assert_allclose(np.sort(grid.points(), axis=0), np.sort(whole, axis=0))
    assert len(whole) == len(np.unique(np.floor(points / 0.25 + VoxelGrid._PHASE), axis=0))


def test_noise_raises_acc_and_comp_and_lowers_nc(gt):
    points = gt_world_points(gt)
    noisy = points + np.random.default_rng(0).normal(scale=0.01, size=points.shape)
    row = pointmap({"world_points": noisy}, gt)
    assert 0.003 < row["acc"] < 0.03 and 0.003 < row["comp"] < 0.03
    assert 0.9 < row["nc"] < 0.9999


def test_icp_refines_a_sim3_pulled_off_by_outliers(gt):
    points = gt_world_points(gt)
    points[:, :5] += np.array([0.3, 0.0, 0.0])  # a fifth of the pixels is wrong; Umeyama follows them part way
    without_icp = pointmap({"world_points": points}, gt, icp_threshold=0)
    with_icp = pointmap({"world_points": points}, gt)
    # ICP re-registers on the pairs within 0.1 (the good points); it is rigid, so the scale bias stays.
    assert with_icp["acc_med"] < without_icp["acc_med"] / 3
    assert with_icp["comp"] < without_icp["comp"]
    assert with_icp["pointmap_icp_threshold"] == 0.1 and without_icp["pointmap_icp_threshold"] == 0.0


def test_nan_points_are_excluded_and_cost_completeness(gt):
    points = gt_world_points(gt)
    points[0, :, :] = np.nan  # frame 0 lost entirely
    row = pointmap({"world_points": points}, gt)
    assert row["acc"] == pytest.approx(0.0, abs=1e-9)  # what is predicted is exact
    assert row["comp"] > 0.01  # frame 0's part of the room is missing
    all_nan = pointmap({"world_points": np.full_like(points, np.nan)}, gt)
    assert all(np.isnan(all_nan[key]) for key in SCORES) and "need at least 3" in all_nan["pointmap_note"]


def test_collinear_prediction_is_noted(gt):
    points = np.zeros((*gt["depth"].shape, 3))
    points[..., 0] = np.arange(points[..., 0].size).reshape(gt["depth"].shape)
    row = pointmap({"world_points": points}, gt)
    assert np.isnan(row["acc"]) and "collinear" in row["pointmap_note"]


def test_confidence_filter_drops_bad_points(gt):
    points = gt_world_points(gt)
    conf = np.ones(gt["depth"].shape)
    points[:, :4] += 0.5  # a band of wrong points…
    conf[:, :4] = 0.01  # …that the model is unsure of
    assert pointmap({"world_points": points}, gt)["acc"] > 0.05
    row = pointmap({"world_points": points, "world_points_conf": conf}, gt, conf_threshold=0.5)
    assert row["acc"] == pytest.approx(0.0, abs=1e-9)
    assert row["pointmap_conf_filter"] == "conf>0.5"


def test_clouds_above_max_points_are_thinned_and_the_counts_recorded(gt):
    points = gt_world_points(gt)
    full = pointmap({"world_points": points}, gt)
    capped = pointmap({"world_points": points}, gt, max_points=500)
    assert capped["pointmap_pred_voxels"] == full["pointmap_pred_voxels"] > 500
    # Identical clouds are thinned alike (seeded, same voxel order): a perfect prediction stays perfect.
    assert_perfect(capped)
    points[0] = np.nan  # now the clouds differ and thinning leaves gaps between them
    gappy, gappy_capped = pointmap({"world_points": points}, gt), pointmap({"world_points": points}, gt, max_points=500)
    assert gappy_capped["acc"] > gappy["acc"] + 0.01
    with pytest.raises(MetricInputError, match="max_points"):
        pointmap({"world_points": points}, gt, max_points=0)


def test_random_subset_is_seeded_and_ordered():
    points = np.arange(30.0).reshape(10, 3)
    subset = random_subset(points, 4)
    np.testing.assert_array_equal(subset, random_subset(points, 4))
    assert len(subset) == 4 and np.all(np.diff(subset[:, 0]) > 0)
    assert random_subset(points, 10) is points


def test_missing_outputs_and_bad_input(gt):
    assert "world_points" in pointmap({}, gt)["pointmap_note"]
    assert "depth" in pointmap({"extrinsics": gt["extrinsics"]}, gt, source="depth")["pointmap_note"]
    with pytest.raises(MetricInputError, match="source"):
        pointmap({}, gt, source="points")
    with pytest.raises(MetricInputError, match=r"pred\['world_points'\]"):
        pointmap({"world_points": np.zeros((6, 24, 32))}, gt)
    with pytest.raises(MetricInputError, match=r"gt\['intrinsics'\]"):
        pointmap({}, {key: gt[key] for key in ("extrinsics", "depth")})


@pytest.mark.slow
def test_two_hundred_frames_of_518_by_392(capsys):
    """Prints the time of the point-map metric on 200 frames at 518×392 (about 40 M points)."""
    frames, height, width = 200, 392, 518
    gt = box_room(frames=frames, height=height, width=width)
    points = np.empty((frames, height, width, 3), dtype=np.float32)
    rng = np.random.default_rng(0)
    for frame in range(frames):  # a noisy prediction, float32 like a model's output
        clean = unproject_depth(gt["depth"][frame : frame + 1], gt["intrinsics"][frame : frame + 1], gt["extrinsics"][frame : frame + 1], gt["valid"][frame : frame + 1])
        points[frame] = (clean + rng.normal(scale=0.005, size=clean.shape)).reshape(height, width, 3)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    row = pointmap({"world_points": points}, gt)
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    assert row["acc"] < 0.02 and row["comp"] < 0.02 and row["nc"] > 0.7
    with capsys.disabled():
        print(f"\npointmap metrics, {frames} frames of {width}x{height}: {wall:.1f} s wall, {cpu:.1f} s CPU")
