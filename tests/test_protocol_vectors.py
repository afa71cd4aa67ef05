"""Every value of the protocol vectors (computed by the official VGGT / π³ evaluation code, evo and
Open3D) reproduced by the harness's own protocol code: the metric a protocol configures, with the
protocol's options, and the protocol's aggregation. Tolerances are those of the vectors' README.
The end-to-end vectors (co3d_e2e, re10k_e2e) go through the runner in test_protocol_e2e.py."""

from __future__ import annotations

import numpy as np
import pytest

from bench.protocols import PROTOCOLS, SceneResult
from datasets_adapters.sampling import stream_map
from metrics import METRICS, split_raw
from metrics.aggregate import pooled_pose_scores
from metrics.geometry import invert_rigid, unproject_depth
from metrics.pointcloud import estimate_normals
from metrics.pointmap import registered_clouds
from metrics.pose import error_histogram, pose_auc
from tests.protocol_vectors import FILES, VECTORS, case, load, options, tally

THRESHOLDS = [3, 5, 15, 30]  # the vectors' pose thresholds (π³'s config reports 5, 15, 30 of them)


def test_every_vector_file_is_checked():
    assert sorted(p.name for p in VECTORS.glob("*.npz")) == sorted(FILES)


def metric_options(protocol: str, dataset: str, variant: str | None = None, metric: str | None = None) -> dict:
    setting = PROTOCOLS.get(protocol).setting(dataset, variant)
    (name, opts), *_ = setting.metrics.items() if metric is None else [(metric, setting.metrics[metric])]
    return dict(opts)


def score(metric: str, pred: dict, gt: dict, opts: dict) -> tuple[dict, dict]:
    return split_raw(METRICS.get(metric)(pred, gt, **opts))


# -- relative pose -----------------------------------------------------------------------------------


@pytest.mark.parametrize("file, protocol", [("vggt_relpose.npz", "vggt-co3d"), ("pi3_relpose.npz", "pi3-relpose-angular")])
def test_pair_errors_and_scores(file, protocol):
    data, worst = load(file), tally(protocol)
    assert list(data["thresholds"]) == THRESHOLDS
    # The vectors hold float64 poses and were computed in float64; all else is the protocol's.
    opts = metric_options(protocol, "co3d") | {"thresholds": THRESHOLDS, "precision": "float64"}
    scenes = []
    for name in data["cases"]:
        c = case(data, name)
        values, raw = score("pose", {"extrinsics": c["pred_w2c"]}, {"extrinsics": c["gt_w2c"]}, opts)
        worst.check(raw["rot_err_deg"], c["rot_err_deg"], rel=1e-6, abs_=1e-5, what=f"{name} rotation errors")
        worst.check(raw["trans_err_deg"], c["trans_err_deg"], rel=1e-6, abs_=1e-5, what=f"{name} translation errors")
        for key in ("rra", "rta", "auc"):
            worst.check([values[f"{key}{t}"] / 100 for t in THRESHOLDS], c[key], rel=1e-12, what=f"{name} {key}")
        scenes.append(SceneResult(str(name), {f"pose.{k}": v for k, v in values.items()}, {f"pose.{k}": v for k, v in raw.items()}))
    if protocol == "pi3-relpose-angular":  # all pairs of all cases pooled, as π³ aggregates a dataset
        table = PROTOCOLS.get(protocol).aggregate(scenes)
        pooled_3 = pooled_pose_scores([s.raw["pose.rot_err_deg"] for s in scenes], [s.raw["pose.trans_err_deg"] for s in scenes], [3])
        for key in ("rra", "rta", "auc"):
            worst.check([pooled_3[f"{key}3"]] + [table[f"{key}{t}"] for t in (5, 15, 30)], data[f"pooled__{key}"], rel=1e-12, what=f"pooled {key}")


def test_auc_at_bin_edges_nan_inf_and_the_failure_fallback():
    data, worst = load("vggt_relpose.npz"), tally("vggt-co3d")
    rotation, translation = data["auc_edge__r_err"], data["auc_edge__t_err"]
    assert np.isnan(rotation).any() or np.isnan(translation).any()
    worst.check([pose_auc(rotation, translation, t) for t in THRESHOLDS], data["auc_edge__auc"], rel=1e-12, what="edge AUC")
    worst.check(error_histogram(rotation, translation, 30), data["auc_edge__hist30"], rel=1e-12, what="histogram")


# -- frame selection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["co3d", "re10k"])
def test_published_seq_id_maps_are_regenerated_from_frame_counts(dataset):
    data, worst = load("seqid_maps.npz"), tally("pi3-relpose-angular")
    setting = PROTOCOLS.get("pi3-relpose-angular").setting(dataset)
    assert setting.sampling.kind == "stream" and setting.frames == (10,)
    names, counts = data[f"{dataset}__first_seq"], data[f"{dataset}__first_inferred_frames"]
    drawn = stream_map(list(zip(names, counts)), setting.frames[0], setting.sampling.seed)
    np.testing.assert_array_equal(np.stack([drawn[n] for n in names]), data[f"{dataset}__first_ids"])
    worst.check(np.stack([drawn[n] for n in names]), data[f"{dataset}__first_ids"], rel=0, what=f"{dataset} seq-id map")
    assert int(data[f"{dataset}__chain_reproduced"]) == int(data[f"{dataset}__num_sequences"])


@pytest.mark.parametrize("key, dataset, variant", [
    ("7scenes_kf200", "7scenes", "kf200"), ("7scenes_kf40", "7scenes", "kf40"), ("nrgbd_kf500", "nrgbd", "kf500"),
    ("nrgbd_kf100", "nrgbd", "kf100"), ("dtu_kf5", "dtu", "kf5"), ("eth3d_kf5", "eth3d", "kf5"),
])  # fmt: skip
def test_keyframe_maps(key, dataset, variant):
    data, worst = load("seqid_maps.npz"), tally("pi3-mv-recon")
    setting = PROTOCOLS.get("pi3-mv-recon").setting(dataset, variant)
    assert set(setting.scenes) == set(data[f"{key}__seq"])
    stride = setting.sampling.stride
    for num_ids, last in zip(data[f"{key}__num_ids"], data[f"{key}__last_id"]):
        for frames in (last + 1, last + stride):  # every sequence length that gives this map
            ids = setting.sampling.select(int(frames), None)
            worst.check([len(ids), ids[-1]], [num_ids, last], rel=0, what=f"{key} keyframes")


# -- trajectories ------------------------------------------------------------------------------------


def test_ate_and_rpe_as_evo_computes_them():
    data, worst = load("evo_trajectory.npz"), tally("pi3-relpose-distance")
    protocol = PROTOCOLS.get("pi3-relpose-distance")
    scenes = []
    for name, gt_format in zip(data["cases"], data["gt_format"]):
        c = case(data, name)
        assert str(c["status"]) == "ok"
        dataset = {"replica": "scannet", "tum": "tum", "sintel": "sintel"}[str(gt_format)]
        opts = metric_options("pi3-relpose-distance", dataset, metric="trajectory")
        values, _ = score("trajectory", {"extrinsics": invert_rigid(c["pred_c2w"][:, :3])}, {"extrinsics": invert_rigid(c["gt_c2w"][:, :3])}, opts)
        for key in ("ate", "rpe_trans", "rpe_rot"):
            worst.check(values[key], c[key], what=f"{name} {key}")
        scenes.append(SceneResult(str(name), {f"trajectory.{k}": v for k, v in values.items()}, {}))
    table = protocol.aggregate([s for s in scenes if s.scene in set(data["agg__cases"])])
    for key in ("ate", "rpe_trans", "rpe_rot"):
        worst.check(table[f"trajectory.{key}"], data[f"agg__{key}"], what=f"mean {key}")


# -- depth ---------------------------------------------------------------------------------------------


def published_depth_options(official: dict, dtype: np.dtype, per: str = "sequence") -> dict:
    """The harness's depth options for the official `depth_evaluation` keyword arguments of a vector."""
    base = metric_options("pi3-videodepth", "sintel", "scale-shift")
    if official.get("metric_scale"):
        align = "none"
    elif official.get("align_with_lad2"):
        align = "l1_adam"
    elif official.get("align_with_scale"):
        align = "weiszfeld_scale"
    else:
        align = "median"
    return base | {
        "align": align,
        "per": per,
        "adam_lr": official.get("lr", 1e-4),
        "max_depth": official.get("max_depth", 80),  # absent: the function's default
        "post_clip": official.get("post_clip_max"),
        "precision": "float32" if dtype == np.float32 else "float64",
    }


def depth_inputs(pred: np.ndarray, gt: np.ndarray) -> tuple[dict, dict]:
    return {"depth": pred}, {"extrinsics": np.zeros((len(gt), 3, 4)), "depth": gt}


def test_depth_alignments_and_scores():
    data = load("depth.npz")
    worst = tally("pi3-video/monodepth (depth.npz)")  # one procedure serves both protocols
    for name in data["cases"]:
        c = case(data, name)
        opts = published_depth_options(options(c["options"]), c["pred"].dtype)
        values, _ = score("depth", *depth_inputs(c["pred"], c["gt"]), opts)
        assert str(c["status"]) == "ok" and "depth_note" not in values
        rel = 1e-5 if c["pred"].dtype == np.float32 else 1e-6
        for key, ours in (("abs_rel", "abs_rel"), ("sq_rel", "sq_rel"), ("rmse", "depth_rmse"), ("log_rmse", "log_rmse")):
            worst.check(values[ours], c[key], rel=rel, what=f"{name} {key}")
        for key in ("delta_1_25", "delta_1_25_2", "delta_1_25_3"):
            worst.check(values[key], c[key], rel=rel, abs_=1e-6, what=f"{name} {key}")
        assert float(c["delta_1"]) == 0.0  # δ < 1 is 0 by construction (max(p/g, g/p) ≥ 1): not reported
        worst.check(values["depth_valid_pixels"], c["valid_pixels"], rel=0, what=f"{name} valid pixels")
        if "adam_steps" in c:  # compared first: a different summation order would move the stop by a step
            worst.check(values["depth_adam_steps"], c["adam_steps"], rel=0, what=f"{name} Adam steps")
        for key in ("fit_scale", "fit_shift"):
            if key in c:
                worst.check(values[f"depth_{key}"], c[key], rel=rel, abs_=1e-16, what=f"{name} {key}")


def test_video_depth_weights_sequences_by_valid_pixels():
    data, worst = load("aggregation.npz"), tally("pi3-videodepth")
    keys = [str(k) for k in data["metric_keys"]]
    ours = {"rmse": "depth_rmse"}
    scenes = []
    for k in range(int(data["video__num_seqs"])):
        pred, gt = data[f"video__seq{k}__pred"], data[f"video__seq{k}__gt"]
        values, raw = score("depth", *depth_inputs(pred, gt), published_depth_options(options(data["video__options"]), pred.dtype))
        worst.check([values.get(ours.get(key, key), 0.0) for key in keys], data["video__per_seq"][k], what=f"sequence {k}")
        worst.check(values["depth_valid_pixels"], data["video__valid_pixels"][k], rel=0, what=f"sequence {k} pixels")
        scenes.append(SceneResult(f"seq{k}", {f"depth.{key}": v for key, v in values.items()}, {}))
    table = PROTOCOLS.get("pi3-videodepth").aggregate(scenes)
    worst.check([table.get(f"depth.{ours.get(key, key)}", 0.0) for key in keys], data["video__weighted"], what="weighted")


@pytest.mark.parametrize("invariant", ["mono_median_scale", "mono_scale"])
def test_monodepth_weights_every_frame_by_valid_pixels(invariant):
    data, worst = load("aggregation.npz"), tally("pi3-monodepth")
    keys = [str(k) for k in data["metric_keys"]]
    ours = {"rmse": "depth_rmse"}
    official = options(data[f"{invariant}__options"])
    scenes, per_frame, pixels = [], [], []
    for k in range(int(data["mono__num_seqs"])):
        pred, gt = data[f"mono__seq{k}__pred"], data[f"mono__seq{k}__gt"]
        values, raw = score("depth", *depth_inputs(pred, gt), published_depth_options(official, pred.dtype, per="frame"))
        per_frame += [[raw.get(f"frame_{ours.get(key, key)}", np.zeros(len(pred)))[f] for key in keys] for f in range(len(pred))]
        pixels += list(raw["frame_valid_pixels"])
        worst.check([values.get(ours.get(key, key), 0.0) for key in keys], data[f"{invariant}__per_seq"][k], what=f"{invariant} sequence {k}")
        scenes.append(SceneResult(f"seq{k}", {f"depth.{key}": v for key, v in values.items()}, {f"depth.{key}": v for key, v in raw.items()}))
    worst.check(per_frame, data[f"{invariant}__per_frame"], what=f"{invariant} frames")
    worst.check(pixels, data[f"{invariant}__valid_pixels"], rel=0, what=f"{invariant} pixels")
    table = PROTOCOLS.get("pi3-monodepth").aggregate(scenes)
    worst.check([table.get(f"depth.{ours.get(key, key)}", 0.0) for key in keys], data[f"{invariant}__dataset"], what=f"{invariant} dataset")


# -- point maps ----------------------------------------------------------------------------------------


def pointmap_inputs(c: dict) -> tuple[dict, dict]:
    return {"world_points": c["pred_pts"]}, {"extrinsics": c["w2c"], "intrinsics": c["intrinsics"], "depth": c["depth"], "valid": c["valid"]}


def test_point_map_registration_and_scores():
    data, worst = load("pointmap.npz"), tally("pi3-mv-recon")
    protocol = PROTOCOLS.get("pi3-mv-recon")
    scenes = []
    for name in data["cases"]:
        c = case(data, name)
        # The vectors' GT points skip the published float32 cast, except in case dense_gtf32.
        opts = metric_options("pi3-mv-recon", "7scenes", "kf200") | {"icp_threshold": float(c["icp_threshold"])}
        if name != "dense_gtf32":
            opts["gt_precision"] = "float64"
        pred, gt = pointmap_inputs(c)
        gt_points = unproject_depth(c["depth"], c["intrinsics"], c["w2c"], c["valid"], np.float32 if name == "dense_gtf32" else None)
        worst.check(gt_points, c["gt_pts"][c["valid"]], what=f"{name} GT points")
        values, _ = score("pointmap", pred, gt, opts)
        for key in ("acc", "acc_med", "comp", "comp_med"):
            worst.check(values[key], c[key], what=f"{name} {key}")
        for key in ("nc1", "nc1_med", "nc2", "nc2_med", "nc", "nc_med"):
            worst.check(values[key], c[key], rel=1e-5, what=f"{name} {key}")
        worst.check(values["pointmap_icp_fitness"], c["icp_fitness"], what=f"{name} ICP fitness")
        worst.check(values["pointmap_icp_rmse"], c["icp_inlier_rmse"], rel=1e-12, what=f"{name} ICP inlier RMSE")
        clouds = registered_clouds(
            pred, opts["source"], c["valid"], gt, c["valid"], opts["icp_threshold"], opts["voxel_size"], opts["max_points"], opts["icp_max_points"], opts["gt_precision"]
        )
        worst.check(clouds.sim3.scale, c["umeyama_scale"], what=f"{name} Umeyama scale")
        worst.check(clouds.sim3.rotation, c["umeyama_R"], rel=1e-6, abs_=1e-12, what=f"{name} Umeyama R")
        worst.check(clouds.sim3.translation, c["umeyama_t"], what=f"{name} Umeyama t")
        icp = np.eye(4)
        icp[:3, :3], icp[:3, 3] = clouds.icp.transform.rotation, clouds.icp.transform.translation
        worst.check(icp, c["icp_transformation"], rel=1e-6, abs_=1e-12, what=f"{name} ICP transformation")
        for normals, cloud in ((c["pred_normals"], clouds.pred), (c["gt_normals"], clouds.gt)):  # Open3D's, sign arbitrary
            ours = estimate_normals(cloud, 30, weighting=opts["normal_weighting"])
            assert len(ours) == len(normals) and np.abs(np.sum(ours * normals, axis=1)).min() > 1 - 1e-5
        scenes.append(SceneResult(str(name), {f"pointmap.{k}": v for k, v in values.items()}, {}))
    table = protocol.aggregate([s for s in scenes if s.scene in set(data["agg__cases"])])
    for key in ("acc", "acc_med", "comp", "comp_med", "nc", "nc_med"):
        worst.check(table[f"pointmap.{key}"], data[f"agg__{key}"], rel=1e-6 if "nc" not in key else 1e-5, what=f"mean {key}")
    for key in ("nc1", "nc1_med", "nc2", "nc2_med"):
        worst.check(np.mean([s.values[f"pointmap.{key}"] for s in scenes if s.scene in set(data["agg__cases"])]), data[f"agg__{key}"], rel=1e-5, what=f"mean {key}")


def test_published_ground_truth_unprojection():
    data, worst = load("pointmap.npz"), tally("pi3-mv-recon")
    depth, intrinsics, w2c, valid = (data[f"unproject__{k}"] for k in ("depth", "intrinsics", "w2c", "valid"))
    worst.check(unproject_depth(depth, intrinsics, w2c, valid, np.float32), data["unproject__world_published"][valid], what="published unprojection")
    worst.check(unproject_depth(depth, intrinsics, w2c, valid), data["unproject__world_float64"][valid], what="float64 unprojection")
