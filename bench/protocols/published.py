"""The published evaluation protocols of VGGT and π³, as data (proved on the official code's vectors in tests/data/protocols).

Each is proved against vectors computed by the official evaluation code
(`tests/test_protocol_vectors.py`). Datasets without an adapter yet (Sintel, Bonn, KITTI, NYU-v2)
are defined all the same: a suite that names them fails validation until their adapter exists.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.protocols.base import Column, Protocol, SceneResult, Setting, register_protocol
from datasets_adapters.sampling import Sampling
from metrics.aggregate import finite_mean, pooled_auc_by_group, pooled_pose_scores, weighted_mean
from metrics.depth import SCORES as DEPTH_SCORES

# -- the data the protocols walk ---------------------------------------------------------------------

VGGT_CO3D_CATEGORIES = (
    "apple", "backpack", "banana", "baseballbat", "baseballglove", "bench", "bicycle", "bottle", "bowl", "broccoli",
    "cake", "car", "carrot", "cellphone", "chair", "cup", "donut", "hairdryer", "handbag", "hydrant", "keyboard",
    "laptop", "microwave", "motorcycle", "mouse", "orange", "parkingmeter", "pizza", "plant", "stopsign",
    "teddybear", "toaster", "toilet", "toybus", "toyplane", "toytrain", "toytruck", "tv", "umbrella", "vase",
    "wineglass",
)  # fmt: skip  # the 41 "seen" categories, alphabetical
PI3_CO3D_CATEGORIES = VGGT_CO3D_CATEGORIES + ("ball", "book", "couch", "frisbee", "hotdog", "kite", "remote", "sandwich", "skateboard", "suitcase")
CO3D_FILTERS = {"subset": "fewview_dev", "split": "test", "min_frames": 50, "min_quality": 0.5, "max_translation": 1e5}

SEVEN_SCENES_TEST = (
    "chess/seq-03", "chess/seq-05", "fire/seq-03", "fire/seq-04", "heads/seq-01", "office/seq-02", "office/seq-06",
    "office/seq-07", "office/seq-09", "pumpkin/seq-01", "pumpkin/seq-07", "redkitchen/seq-03", "redkitchen/seq-04",
    "redkitchen/seq-06", "redkitchen/seq-12", "redkitchen/seq-14", "stairs/seq-01", "stairs/seq-04",
)  # fmt: skip
NRGBD_SCENES = ("breakfast_room", "complete_kitchen", "green_room", "grey_white_room", "kitchen", "morning_apartment", "staircase", "thin_geometry", "whiteroom")
DTU_SCANS = tuple(f"scan{n}" for n in (1, 4, 9, 10, 11, 12, 13, 15, 23, 24, 29, 32, 33, 34, 48, 49, 62, 75, 77, 110, 114, 118))
ETH3D_SCENES = ("courtyard", "delivery_area", "electro", "facade", "kicker", "meadow", "office", "pipes", "playground", "relief", "relief_2", "terrace", "terrains")
TUM_DYNAMICS = tuple(f"rgbd_dataset_freiburg3_{kind}_{motion}" for kind in ("sitting", "walking") for motion in ("static", "xyz", "halfsphere", "rpy"))
SINTEL_SEQUENCES = ("alley_2", "ambush_4", "ambush_5", "ambush_6", "cave_2", "cave_4", "market_2", "market_5", "market_6", "shaman_3", "sleeping_1", "sleeping_2", "temple_2", "temple_3")
BONN_SEQUENCES = ("rgbd_bonn_balloon2", "rgbd_bonn_crowd2", "rgbd_bonn_crowd3", "rgbd_bonn_person_tracking2", "rgbd_bonn_synchronous")

# -- aggregations ------------------------------------------------------------------------------------


def _pose_errors(scenes: list[SceneResult]) -> tuple[list, list]:
    return [s.raw["pose.rot_err_deg"] for s in scenes], [s.raw["pose.trans_err_deg"] for s in scenes]


def pooled_by_category(thresholds: Sequence[int]):
    """VGGT's CO3D aggregation: pairs pooled per category (the scene's first path part), AUC per
    category, unweighted mean over the categories that were scored."""

    def aggregate(scenes: list[SceneResult]) -> dict[str, float]:
        rotation, translation = _pose_errors(scenes)
        mean, _ = pooled_auc_by_group([s.scene.split("/")[0] for s in scenes], rotation, translation, thresholds)
        return mean

    return aggregate


def pooled_pairs(thresholds: Sequence[int]):
    """π³'s aggregation: all pairs of all sequences of the dataset pooled."""

    def aggregate(scenes: list[SceneResult]) -> dict[str, float]:
        return pooled_pose_scores(*_pose_errors(scenes), thresholds)

    return aggregate


def scene_mean(keys: Sequence[str]):
    """The mean over the sequences that were scored (a sequence the published evaluation skips is NaN here)."""

    def aggregate(scenes: list[SceneResult]) -> dict[str, float]:
        return finite_mean([s.values for s in scenes], keys)[0]

    return aggregate


def valid_pixel_weighted(keys: Sequence[str]):
    """π³'s video depth: sequences weighted by their valid pixels."""

    def aggregate(scenes: list[SceneResult]) -> dict[str, float]:
        return weighted_mean([s.values for s in scenes], [s.values["depth.depth_valid_pixels"] for s in scenes], keys)

    return aggregate


def frame_weighted(keys: Sequence[str]):
    """π³'s monocular depth: every frame of every sequence, weighted by its valid pixels."""

    def aggregate(scenes: list[SceneResult]) -> dict[str, float]:
        frames = [{key: float(s.raw[f"depth.frame_{key.split('.', 1)[1]}"][i]) for key in keys} for s in scenes for i in range(len(s.raw["depth.frame_valid_pixels"]))]
        weights = [float(w) for s in scenes for w in s.raw["depth.frame_valid_pixels"]]
        return weighted_mean(frames, weights, keys)

    return aggregate


# -- relative pose -----------------------------------------------------------------------------------

VGGT_AUC = (30, 15, 5, 3)
register_protocol(
    Protocol(
        name="vggt-co3d",
        version=1,
        summary="VGGT's CO3Dv2 camera pose: 10 frames of each test sequence, AUC@30/15/5/3 pooled per category",
        reproduces="VGGT (CVPR 2025), CO3Dv2 pose AUC (Table 1); evaluation/test_co3d.py at 4b8be14",
        settings=(
            Setting(
                dataset="co3d",
                variant="test",
                options={"categories": list(VGGT_CO3D_CATEGORIES), **CO3D_FILTERS},
                frames=(10,),
                sampling=Sampling(kind="stream", seed=0, order="sorted"),
                metrics={"pose": {"thresholds": list(VGGT_AUC), "pair_order": "ij", "angles": "quaternion"}},
                note="41 categories; one seed-0 stream over categories and sequences in name order",
            ),
        ),
        aggregate=pooled_by_category(VGGT_AUC),
        columns=tuple(Column(f"AUC@{t}", f"auc{t}", 100.0) for t in VGGT_AUC),
        notes="RRA and RTA are not aggregated by the published script (it prints them per sequence at 5°).",
    )
)

PI3_THRESHOLDS = (5, 15, 30)
PI3_POSE = {"pose": {"thresholds": list(PI3_THRESHOLDS), "pair_order": "ji", "angles": "quaternion", "precision": "float32"}}
register_protocol(
    Protocol(
        name="pi3-relpose-angular",
        version=1,
        summary="π³'s angular pose: 10 frames of each CO3Dv2 / RealEstate10K sequence by the seed-42 maps, all pairs pooled",
        reproduces="π³ (2025), camera pose on RealEstate10K and CO3Dv2 (Racc/Tacc/AUC); evaluation relpose/eval_angle.py at 97ce97b",
        settings=(
            Setting(
                dataset="co3d",
                variant="test",
                options={"categories": list(PI3_CO3D_CATEGORIES), **CO3D_FILTERS},
                frames=(10,),
                sampling=Sampling(kind="stream", seed=42),
                metrics=PI3_POSE,
                note="51 categories (the 41, then ball … suitcase); sequences in annotation-file order",
            ),
            Setting(
                dataset="re10k",
                variant="test",
                options={"split": "test", "sequences": "test-1719", "min_frames": 10},
                frames=(10,),
                sampling=Sampling(kind="stream", seed=42),
                metrics=PI3_POSE,
                note="the 1719 test sequences, sorted; a sequence of fewer than 10 frames draws nothing",
            ),
        ),
        aggregate=pooled_pairs(PI3_THRESHOLDS),
        columns=tuple(Column(f"{name}@{t}", f"{key}{t}", 100.0) for t in PI3_THRESHOLDS for name, key in (("Racc", "rra"), ("Tacc", "rta"), ("Auc", "auc"))),
        notes="Poses are held in float32, as π³'s loaders hold them; pair order T_j·T_i⁻¹.",
    )
)

# -- trajectories ------------------------------------------------------------------------------------

TRAJECTORY = {"trajectory": {"rotations": "quaternion"}}
register_protocol(
    Protocol(
        name="pi3-relpose-distance",
        version=1,
        summary="π³'s trajectory accuracy: ATE and RPE (Δ = 1 frame) after Sim(3) alignment, mean over sequences",
        reproduces="π³ (2025), camera pose on ScanNet, TUM dynamics and Sintel (ATE, RPE trans, RPE rot); evaluation relpose/ with evo",
        settings=(
            Setting(
                dataset="scannet",
                variant="90",
                options={"first_scene": "scene0707_00", "last_scene": "scene0806_00", "invalid_poses": "keep"},
                frames=(90,),
                sampling=Sampling(kind="stride", stride=3),
                metrics=TRAJECTORY,
                note="raw frames 0, 3, …, 267 whether or not their pose is valid; a scene with an invalid GT pose is skipped",
            ),
            Setting(
                dataset="tum",
                variant="90",
                scenes=TUM_DYNAMICS,
                frames=(90,),
                sampling=Sampling(kind="stride", stride=3),
                metrics=TRAJECTORY,
                note="RGB frames associated with ground truth (|Δt| < 0.02 s), every 3rd match, the first 90",
            ),
            Setting(dataset="sintel", variant="all", scenes=SINTEL_SEQUENCES, frames=(None,), sampling=Sampling(kind="first-n"), metrics=TRAJECTORY),
        ),
        aggregate=scene_mean(("trajectory.ate", "trajectory.rpe_trans", "trajectory.rpe_rot")),
        columns=(
            Column("ATE", "trajectory.ate", better="lower"),
            Column("RPE trans", "trajectory.rpe_trans", better="lower"),
            Column("RPE rot", "trajectory.rpe_rot", better="lower"),
        ),
        notes="Where the published run stops (evo cannot align 2 or collinear frames) the scene is NaN here and left out of the mean.",
    )
)

# -- point maps --------------------------------------------------------------------------------------


def _mv_recon(dataset: str, variant: str, scenes: str | tuple[str, ...], keyframe: int, icp_threshold: float = 0.1, **extra) -> Setting:
    return Setting(
        dataset=dataset,
        variant=variant,
        scenes=scenes,
        frames=(None,),
        sampling=Sampling(kind="stride", stride=keyframe),
        preprocess="mv-recon",
        metrics={
            "pointmap": {
                "source": "world_points", "icp_threshold": icp_threshold, "voxel_size": 0, "max_points": None,
                "icp_max_points": None, "normal_weighting": "none", "gt_precision": "float32",
            }
        },  # fmt: skip
        **extra,
    )


METRIC_DEPTH_RANGE = {"min_depth": 0.001, "max_depth": 10.0}  # depth outside [1 mm, 10 m] is invalid
SEVEN_SCENES_DEPTH = {"split": "test", "depth": "proj", **METRIC_DEPTH_RANGE}
POINTMAP_KEYS = ("acc", "acc_med", "comp", "comp_med", "nc", "nc_med")
register_protocol(
    Protocol(
        name="pi3-mv-recon",
        version=1,
        summary="π³'s point-map reconstruction: Acc, Comp, NC (mean, median) after Umeyama Sim(3) and ICP, every point, mean over sequences",
        reproduces="π³ (2025), point-map estimation on 7-Scenes, NRGBD (sparse / dense views), DTU and ETH3D; evaluation mv_recon/eval.py at 97ce97b",
        settings=(
            _mv_recon("7scenes", "kf200", SEVEN_SCENES_TEST, 200, options=SEVEN_SCENES_DEPTH, note="sparse views: every 200th frame"),
            _mv_recon("7scenes", "kf40", SEVEN_SCENES_TEST, 40, options=SEVEN_SCENES_DEPTH, note="dense views: every 40th frame"),
            _mv_recon("nrgbd", "kf500", NRGBD_SCENES, 500, options=METRIC_DEPTH_RANGE, note="sparse views: every 500th frame"),
            _mv_recon("nrgbd", "kf100", NRGBD_SCENES, 100, options=METRIC_DEPTH_RANGE, note="dense views: every 100th frame"),
            _mv_recon("dtu", "kf5", DTU_SCANS, 5, note="views 0, 5, …, 45; ICP threshold 100 mm", distance_scale=1000.0),
            _mv_recon("eth3d", "kf5", ETH3D_SCENES, 5, note="images sorted by name, every 5th"),
        ),
        aggregate=scene_mean(tuple(f"pointmap.{key}" for key in POINTMAP_KEYS)),
        columns=(
            Column("Acc", "pointmap.acc", better="lower", distance=True),
            Column("Acc med", "pointmap.acc_med", better="lower", distance=True),
            Column("Comp", "pointmap.comp", better="lower", distance=True),
            Column("Comp med", "pointmap.comp_med", better="lower", distance=True),
            Column("NC", "pointmap.nc"),
            Column("NC med", "pointmap.nc_med"),
        ),
        notes="GT points: each keyframe's depth unprojected (camera coordinates rounded to float32) at 518 px width, K scaled by the larger factor. Distances in metres; DTU's columns in millimetres, as published (its adapter delivers metres, so its ICP threshold of 100 mm is 0.1).",
    )
)

# -- depth -------------------------------------------------------------------------------------------

DEPTH_COLUMNS = (
    Column("AbsRel", "depth.abs_rel", better="lower"),
    Column("δ<1.25", "depth.delta_1_25"),
    Column("SqRel", "depth.sq_rel", better="lower"),
    Column("RMSE", "depth.depth_rmse", better="lower"),
    Column("log RMSE", "depth.log_rmse", better="lower"),
    Column("δ<1.25²", "depth.delta_1_25_2"),
    Column("δ<1.25³", "depth.delta_1_25_3"),
)
DEPTH_KEYS = tuple(f"depth.{key}" for key in DEPTH_SCORES)
PUBLISHED_DEPTH = {"median_rule": "lower", "invalid_pred": "keep", "adam_lr": 1e-4, "precision": "float32"}
DEPTH_DATASETS = {  # dataset: (scenes, frames, sampling, max depth, clip after alignment)
    "sintel": (SINTEL_SEQUENCES, (None,), Sampling(kind="first-n"), 70.0, 70.0),
    "bonn": (BONN_SEQUENCES, (110,), Sampling(kind="stride", start=30), 70.0, None),
    "kitti": ("all", (110,), Sampling(kind="first-n"), None, None),
    "nyu": ("all", (None,), Sampling(kind="first-n"), None, None),
}


def _depth(dataset: str, variant: str, per: str, align: str) -> Setting:
    scenes, frames, sampling, max_depth, clip = DEPTH_DATASETS[dataset]
    return Setting(
        dataset=dataset,
        variant=variant,
        scenes=scenes,
        frames=frames,
        sampling=sampling,
        metrics={"depth": {"align": align, "per": per, "max_depth": max_depth, "post_clip": clip, **PUBLISHED_DEPTH}},
    )


register_protocol(
    Protocol(
        name="pi3-videodepth",
        version=1,
        summary="π³'s video depth: one scale&shift (L1 by Adam) or scale (Weiszfeld) per sequence, sequences weighted by valid pixels",
        reproduces="π³ (2025), video depth on Sintel, Bonn and KITTI (AbsRel, δ<1.25); evaluation videodepth/ at 97ce97b",
        settings=tuple(
            _depth(dataset, variant, "sequence", align)
            for dataset in ("sintel", "bonn", "kitti")
            for variant, align in (("scale-shift", "l1_adam"), ("scale", "weiszfeld_scale"))
        ),
        aggregate=valid_pixel_weighted(DEPTH_KEYS),
        columns=DEPTH_COLUMNS,
        notes="Scored at the model's resolution with nearest-resized GT; π³ resizes the prediction to the GT's resolution (bicubic).",
    )
)
register_protocol(
    Protocol(
        name="pi3-monodepth",
        version=1,
        summary="π³'s monocular depth: one scale per frame (Weiszfeld, or the lower-median ratio), every frame weighted by valid pixels",
        reproduces="π³ (2025), monocular depth on Sintel, Bonn, KITTI and NYU-v2 (AbsRel, δ<1.25); evaluation monodepth/ at 97ce97b",
        settings=tuple(
            _depth(dataset, variant, "frame", align)
            for dataset in ("sintel", "bonn", "kitti", "nyu")
            for variant, align in (("median-scale", "weiszfeld_scale"), ("scale", "median"))
        ),
        aggregate=frame_weighted(DEPTH_KEYS),
        columns=DEPTH_COLUMNS,
        notes="`median-scale` (Weiszfeld per frame) is the published default. Scored at the model's resolution (see pi3-videodepth).",
    )
)
