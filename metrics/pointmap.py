"""Point-map accuracy: Accuracy, Completeness, normal consistency and Chamfer distance.

The 7-Scenes / NRGBD protocol of CUT3R and π³: ground-truth points from the GT depth, intrinsics
and poses; the predicted points of the same pixels mapped onto them by an Umeyama Sim(3), refined
by point-to-point ICP; normals estimated on both clouds; then nearest-neighbour distances both ways.
Both clouds are voxel-downsampled (GT units) after the Sim(3), frames streamed in chunks, and each
cloud capped at `max_points`, so that 1000-frame scenes and scattered predictions stay fast and
within memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from scipy.spatial import cKDTree
from threadpoolctl import threadpool_limits

from metrics.alignment import CorrespondenceMoments, DegenerateAlignmentError, icp_point_to_point
from metrics.confidence import ConfidenceFilter
from metrics.geometry import unproject_depth
from metrics.inputs import MetricInputError, MetricRow, MetricUnavailable, check_choice, compute_or_note, ground_truth, num_frames, prediction, valid_depth
from metrics.pointcloud import VoxelGrid, estimate_normals, random_subset

SOURCES = ("world_points", "depth")
KEYS = ("acc", "acc_med", "comp", "comp_med", "nc1", "nc2", "nc", "chamfer", "pointmap_pred_voxels", "pointmap_gt_voxels")
FRAMES_PER_CHUNK = 8
ICP_SAMPLE_POINTS = 50_000  # a rigid transform is well determined by far fewer pairs


def normal_consistency(normals: np.ndarray, matched: np.ndarray) -> float:
    """Mean |n · n'| over the pairs whose normals are both defined (NaN when none is)."""
    dots = np.abs(np.sum(normals * matched, axis=1))
    defined = np.isfinite(dots)
    return float(np.mean(dots[defined])) if defined.any() else float("nan")


def cloud_distances(pred_points: np.ndarray, gt_points: np.ndarray, normal_neighbours: int = 30, gt_tree: cKDTree | None = None) -> dict[str, float]:
    """Scores of a predicted cloud (N, 3) against a GT cloud (M, 3), both already in GT coordinates.

    acc / acc_med: mean / median distance from each predicted point to its nearest GT point;
    comp / comp_med: the same from GT to prediction; nc1 = mean |n_pred · n_gt(nearest)| over
    predicted points, nc2 the same over GT points (pairs where either normal is undefined are
    left out), nc = (nc1 + nc2) / 2; chamfer = (acc + comp) / 2.
    `gt_tree` is a KD-tree of `gt_points` when the caller already has one.
    """
    gt_tree = gt_tree if gt_tree is not None else cKDTree(gt_points)
    pred_tree = cKDTree(pred_points)
    gt_normals = estimate_normals(gt_points, normal_neighbours, gt_tree)
    pred_normals = estimate_normals(pred_points, normal_neighbours, pred_tree)
    to_gt, nearest_gt = gt_tree.query(pred_points, workers=-1)
    to_pred, nearest_pred = pred_tree.query(gt_points, workers=-1)
    nc1 = normal_consistency(pred_normals, gt_normals[nearest_gt])
    nc2 = normal_consistency(gt_normals, pred_normals[nearest_pred])
    acc, comp = float(np.mean(to_gt)), float(np.mean(to_pred))
    return {
        "acc": acc,
        "acc_med": float(np.median(to_gt)),
        "comp": comp,
        "comp_med": float(np.median(to_pred)),
        "nc1": nc1,
        "nc2": nc2,
        "nc": (nc1 + nc2) / 2,
        "chamfer": (acc + comp) / 2,
    }


def usable_pixels(pred: Mapping[str, Any], source: str, size: tuple[int, ...], candidates: np.ndarray) -> tuple[np.ndarray, str]:
    """The candidate pixels (S, H, W) where `source` gives a finite point, and the name of the
    confidence map that belongs to that source."""
    if source == "world_points":
        points = prediction(pred, "world_points", (*size, 3))
        finite = np.isfinite(points[..., 0]) & np.isfinite(points[..., 1]) & np.isfinite(points[..., 2])  # ≈8× faster than .all(-1)
        return candidates & finite, "world_points_conf"
    depth = prediction(pred, "depth", size)
    cameras_ok = np.isfinite(prediction(pred, "intrinsics", (size[0], 3, 3))).all(axis=(1, 2))
    cameras_ok &= np.isfinite(prediction(pred, "extrinsics", (size[0], 3, 4))).all(axis=(1, 2))
    with np.errstate(invalid="ignore"):
        return candidates & np.isfinite(depth) & (depth > 0) & cameras_ok[:, None, None], "depth_conf"


def predicted_points(pred: Mapping[str, Any], source: str, usable: np.ndarray, frames: slice) -> np.ndarray:
    """World points (N, 3) of the usable pixels of `frames`, frame-major like ``array[usable]``."""
    if source == "world_points":
        return np.asarray(pred["world_points"][frames])[usable[frames]].astype(np.float64)
    depth, intrinsics, extrinsics = (np.asarray(pred[key][frames]) for key in ("depth", "intrinsics", "extrinsics"))
    return unproject_depth(depth, intrinsics, extrinsics, usable[frames])


class RegisteredClouds(NamedTuple):
    pred: np.ndarray  # (N, 3) predicted cloud in GT coordinates
    gt: np.ndarray  # (M, 3)
    gt_tree: cKDTree  # built once, for ICP and the scores
    pred_size: int  # voxels before the max_points cap
    gt_size: int


def registered_clouds(
    pred: Mapping[str, Any],
    source: str,
    usable: np.ndarray,
    gt: Mapping[str, Any],
    gt_valid: np.ndarray,
    icp_threshold: float,
    voxel_size: float,
    max_points: int,
) -> RegisteredClouds:
    """The predicted cloud registered onto the GT cloud, both voxel-downsampled and capped.

    The Umeyama Sim(3) is fitted on corresponding pixels (usable ⊆ gt_valid); the GT cloud holds
    every valid GT pixel, so pixels the prediction misses cost completeness. Frames are processed
    in chunks (two passes: moments and the GT grid, then the aligned predicted grid) so memory stays
    bounded for 1000-frame scenes. A cloud with more than `max_points` voxels is randomly thinned
    to that many (seeded): it bounds the cost when a prediction scatters its points (random
    weights, failed frames). ICP (`icp_threshold` ≤ 0 skips it) estimates its rigid transform from
    at most ICP_SAMPLE_POINTS predicted points against the whole GT cloud.
    """
    depth, intrinsics, extrinsics = (np.asarray(gt[key]) for key in ("depth", "intrinsics", "extrinsics"))
    chunks = [slice(start, start + FRAMES_PER_CHUNK) for start in range(0, len(depth), FRAMES_PER_CHUNK)]
    moments, gt_grid, pred_grid = CorrespondenceMoments(), VoxelGrid(voxel_size), VoxelGrid(voxel_size)
    for frames in chunks:
        gt_points = unproject_depth(depth[frames], intrinsics[frames], extrinsics[frames], gt_valid[frames])
        gt_grid.add(gt_points)
        moments.add(predicted_points(pred, source, usable, frames), gt_points[usable[frames][gt_valid[frames]]])
    try:
        coarse = moments.similarity(with_scale=True)
    except DegenerateAlignmentError as reason:
        raise MetricUnavailable(f"Sim(3) alignment of predicted to GT points failed: {reason}") from None
    for frames in chunks:
        pred_grid.add(coarse.apply(predicted_points(pred, source, usable, frames)))
    pred_voxels, gt_voxels = pred_grid.points(), gt_grid.points()
    pred_cloud, gt_cloud = random_subset(pred_voxels, max_points), random_subset(gt_voxels, max_points)
    gt_tree = cKDTree(gt_cloud)
    if icp_threshold > 0:
        refined = icp_point_to_point(random_subset(pred_cloud, ICP_SAMPLE_POINTS), gt_cloud, icp_threshold, target_tree=gt_tree)
        pred_cloud = refined.apply(pred_cloud)
    return RegisteredClouds(pred_cloud, gt_cloud, gt_tree, len(pred_voxels), len(gt_voxels))


def pointmap_metrics(
    pred: Mapping[str, Any],
    gt: Mapping[str, Any],
    source: str = "world_points",
    icp_threshold: float = 0.1,
    voxel_size: float = 0.01,
    normal_neighbours: int = 30,
    max_points: int = 1_000_000,
    conf_top_percent: float | None = None,
    conf_threshold: float | None = None,
) -> MetricRow:
    """Acc, Comp (mean and median), NC1, NC2, NC and Chamfer of the predicted point map.

    `source`: ``world_points`` (the point head) or ``depth`` (predicted depth unprojected with the
    predicted cameras). `icp_threshold` and `voxel_size` are in GT units (0 disables either);
    `max_points` caps each downsampled cloud. The row records the options and the voxel counts of
    both clouds (``pointmap_pred_voxels``, ``pointmap_gt_voxels``: above `max_points` means thinned).
    """
    check_choice(source, SOURCES, "source")
    if max_points < 3:
        raise MetricInputError(f"option max_points={max_points} must be at least 3")
    confidence_filter = ConfidenceFilter(conf_top_percent, conf_threshold)
    frames = num_frames(gt)
    gt_depth = ground_truth(gt, "depth", (frames, None, None))
    size = gt_depth.shape
    ground_truth(gt, "intrinsics", (frames, 3, 3))

    def compute() -> dict[str, float]:
        gt_valid = valid_depth(gt, gt_depth)
        usable, conf_key = usable_pixels(pred, source, size, gt_valid)
        if confidence_filter.active:
            usable = confidence_filter.keep(prediction(pred, conf_key, size), usable)
        if np.count_nonzero(usable) < 3:
            raise MetricUnavailable(f"{np.count_nonzero(usable)} pixels valid in both GT and prediction; need at least 3")
        # Every BLAS call below is a thin 3×N product that extra BLAS threads only slow down (they
        # spin on the cores the KD-tree queries use): one BLAS thread is faster here.
        with threadpool_limits(limits=1, user_api="blas"):
            clouds = registered_clouds(pred, source, usable, gt, gt_valid, icp_threshold, voxel_size, max_points)
            row = cloud_distances(clouds.pred, clouds.gt, normal_neighbours, clouds.gt_tree)
        return row | {"pointmap_pred_voxels": float(clouds.pred_size), "pointmap_gt_voxels": float(clouds.gt_size)}

    options = {
        "pointmap_source": source,
        "pointmap_icp_threshold": float(icp_threshold),
        "pointmap_voxel_size": float(voxel_size),
        "pointmap_max_points": int(max_points),
        "pointmap_conf_filter": confidence_filter.label,
    }
    return compute_or_note("pointmap", KEYS, compute) | options
