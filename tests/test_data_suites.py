"""suites/sparse.yaml, dense.yaml and paper.yaml against dataset listings in the native layouts.

Every dataset entry must validate with its protocol, build its adapter, list the scenes the
protocol asks for and select the frames it names; the CO3D and RealEstate10K entries must draw the
published π³ seq-id maps from the frame counts of the vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bench.cli import main
from bench.protocols.published import DTU_SCANS, ETH3D_SCENES, NRGBD_SCENES, PI3_CO3D_CATEGORIES, SEVEN_SCENES_TEST, TUM_DYNAMICS
from bench.suite import expand, load_suite
from tests.native_datasets import (
    list_co3d_prepared,
    list_nrgbd_scene,
    list_re10k_sequence,
    list_scannet_scene,
    list_seven_scenes_sequence,
    write_seven_scenes_splits,
)
from tests.protocol_vectors import load

SUITES = Path(__file__).resolve().parents[1] / "suites"
SCANNET_FRAMES = {"scene0706_00": 10, "scene0707_00": 1100, "scene0708_00": 300, "scene0806_00": 1000, "scene0807_00": 10}
SEVEN_SCENES_FRAMES = {"chess/seq-03": 1000, "stairs/seq-01": 500}  # the others: a few frames (only listed, never sampled)


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    names = ("co3d", "co3d_annotations", "re10k", "7scenes", "scannet", "nrgbd", "dtu", "eth3d", "tum")
    co3d, annotations, re10k, seven, scannet, nrgbd, dtu, eth3d, tum = (tmp_path_factory.mktemp(n) for n in names)
    maps = load("seqid_maps.npz")
    first = dict(zip(maps["co3d__first_seq"], maps["co3d__first_inferred_frames"]))
    for category in PI3_CO3D_CATEGORIES:  # apple first holds the 20 sequences the published map starts with
        sequences = {str(k): int(n) for k, n in first.items()} if category == "apple" else {f"{category}_seq": 50}
        list_co3d_prepared(co3d, annotations, category, sequences | {f"{category}_short": 49})
    counts = dict(zip(maps["re10k__first_seq"], maps["re10k__first_inferred_frames"]))
    for name in (Path(__file__).resolve().parents[1] / "datasets_adapters/splits/re10k_test_1719.txt").read_text().split():
        list_re10k_sequence(re10k, name, int(counts.get(name, 10)))
    for scene in {s.split("/")[0] for s in SEVEN_SCENES_TEST}:
        write_seven_scenes_splits(seven, scene, test=sorted(int(s.split("-")[-1]) for s in SEVEN_SCENES_TEST if s.startswith(scene + "/")), train=[])
    for name in SEVEN_SCENES_TEST:
        scene, seq = name.split("/")
        list_seven_scenes_sequence(seven, scene, int(seq.split("-")[1]), SEVEN_SCENES_FRAMES.get(name, 5))
    for scene, count in SCANNET_FRAMES.items():
        list_scannet_scene(scannet, scene, count)
    for scene in NRGBD_SCENES:
        list_nrgbd_scene(nrgbd, scene, 1001 if scene == "breakfast_room" else 5)
    for folder in [dtu / scan for scan in DTU_SCANS] + [eth3d / scene / "dslr_calibration_jpg" for scene in ETH3D_SCENES] + [tum / name for name in TUM_DYNAMICS]:
        folder.mkdir(parents=True)  # listed by name only: their adapters' own tests read their files
    for scene in ETH3D_SCENES:
        (eth3d / scene / "dslr_calibration_jpg" / "images.txt").touch()
    return {
        "CO3D_ROOT": co3d, "CO3D_ANNOTATION_DIR": annotations, "RE10K_ROOT": re10k, "SEVEN_SCENES_ROOT": seven, "SCANNET_ROOT": scannet,
        "NRGBD_ROOT": nrgbd, "DTU_ROOT": dtu, "ETH3D_ROOT": eth3d, "TUM_ROOT": tum,
    }  # fmt: skip


@pytest.fixture
def env(roots, monkeypatch):
    for variable, path in roots.items():
        monkeypatch.setenv(variable, str(path))
    return roots


@pytest.fixture(scope="module")
def expanded_suites(roots, tmp_path_factory):
    """Each shipped suite, parsed and expanded with the oracle as its model (what is under test is
    data and protocols), built once: expanding lists every scene of every dataset."""
    folder = tmp_path_factory.mktemp("suites")
    with pytest.MonkeyPatch.context() as patch:
        for variable, path in roots.items():
            patch.setenv(variable, str(path))
        out = {}
        for name in ("sparse", "dense", "paper"):
            data = yaml.safe_load((SUITES / f"{name}.yaml").read_text())
            data["models"] = [{"name": "oracle", "weights": "none"}]
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(data))
            suite = load_suite(folder / f"{name}.yaml")
            out[name] = (suite, expand(suite))
    return out


def frames_of(expanded, label: str, scene: str, frames) -> list[str]:
    cell = next(c for c in expanded.cells if c.dataset.label == label and c.scene == scene and c.frames == frames)
    adapter = expanded.adapters[label]
    ids = adapter.frame_ids(scene)
    return [ids[i] for i in adapter.select(scene, frames, cell.dataset.sampling)]


def test_sparse_runs_every_protocol_unchanged(expanded_suites):
    suite, expanded = expanded_suites["sparse"]
    by_label = {spec.label: spec for spec in suite.datasets}
    assert {label: (spec.protocol.protocol.name, spec.protocol.setting.variant) for label, spec in by_label.items()} == {
        "co3d-vggt": ("vggt-co3d", "test"), "co3d-pi3": ("pi3-relpose-angular", "test"), "re10k": ("pi3-relpose-angular", "test"),
        "7scenes-kf200": ("pi3-mv-recon", "kf200"), "7scenes-kf40": ("pi3-mv-recon", "kf40"), "nrgbd-kf500": ("pi3-mv-recon", "kf500"),
        "nrgbd-kf100": ("pi3-mv-recon", "kf100"), "dtu": ("pi3-mv-recon", "kf5"), "eth3d": ("pi3-mv-recon", "kf5"),
        "scannet": ("pi3-relpose-distance", "90"), "tum": ("pi3-relpose-distance", "90"),
    }  # fmt: skip
    assert all(spec.protocol.overrides == {} for spec in suite.datasets), "annotations only says where the files are"
    scenes = {label: sorted({c.scene for c in expanded.cells if c.dataset.label == label}) for label in by_label}
    assert len(scenes["co3d-vggt"]) == 41 + 19 and len(scenes["co3d-pi3"]) == 51 + 19, "49-frame sequences are left out"
    assert len(scenes["re10k"]) == 1719 and scenes["7scenes-kf200"] == sorted(SEVEN_SCENES_TEST)
    assert scenes["scannet"] == ["scene0707_00", "scene0708_00", "scene0806_00"]
    assert (scenes["nrgbd-kf500"], scenes["dtu"], scenes["eth3d"], scenes["tum"]) == tuple(sorted(s) for s in (NRGBD_SCENES, DTU_SCANS, ETH3D_SCENES, TUM_DYNAMICS))


def test_nrgbd_keyframes(expanded_suites):
    _, expanded = expanded_suites["sparse"]
    assert frames_of(expanded, "nrgbd-kf500", "breakfast_room", None) == ["0", "500", "1000"]
    assert frames_of(expanded, "nrgbd-kf100", "breakfast_room", None) == [str(i) for i in range(0, 1001, 100)]


@pytest.mark.parametrize("label, dataset", [("co3d-pi3", "co3d"), ("re10k", "re10k")])
def test_sparse_draws_the_published_seq_id_maps(expanded_suites, label, dataset):
    """The adapter's sequences and frame counts, walked by the protocol's stream, give π³'s maps."""
    maps = load("seqid_maps.npz")
    _, expanded = expanded_suites["sparse"]
    for name, ids in zip(maps[f"{dataset}__first_seq"], maps[f"{dataset}__first_ids"]):
        scene = f"apple/{name}" if dataset == "co3d" else str(name)
        cell = next(c for c in expanded.cells if c.dataset.label == label and c.scene == scene)
        np.testing.assert_array_equal(expanded.adapters[label].select(scene, 10, cell.dataset.sampling), ids)


@pytest.mark.parametrize("label, stride", [("7scenes-kf200", 200), ("7scenes-kf40", 40)])
def test_sparse_seven_scenes_takes_keyframes_of_the_test_sequences(expanded_suites, label, stride):
    _, expanded = expanded_suites["sparse"]
    assert frames_of(expanded, label, "chess/seq-03", None) == [f"{i:06d}" for i in range(0, 1000, stride)]
    assert frames_of(expanded, label, "stairs/seq-01", None) == [f"{i:06d}" for i in range(0, 500, stride)]


def test_sparse_scannet_takes_raw_frames_0_to_267_at_stride_3(expanded_suites):
    _, expanded = expanded_suites["sparse"]
    for scene in ("scene0707_00", "scene0806_00"):
        assert frames_of(expanded, "scannet", scene, 90) == [str(i) for i in range(0, 270, 3)]


def test_dense_and_paper_name_what_they_change_from_the_protocols(expanded_suites):
    dense, expanded = expanded_suites["dense"]
    seven, scannet, nrgbd = dense.datasets
    assert set(seven.protocol.overrides) == {"scenes", "frames", "sampling", "metrics", "metric_options"}
    assert seven.protocol.overrides["metric_options"] == {"pointmap": {"voxel_size": 0.01, "max_points": 1000000, "icp_max_points": 50000}}
    assert scannet.protocol.overrides["options"] == {"spread_scenes": 50, "min_frames": 1000, "invalid_poses": "drop"}
    assert set(nrgbd.protocol.overrides) == {"options", "scenes", "frames", "sampling", "metrics", "metric_options"}
    got = [frames_of(expanded, "7scenes", "chess/seq-03", n) for n in (100, 1000)]
    assert [len(set(g)) for g in got] == [100, 1000] and got[0][0] == "000000"
    paper, _ = expanded_suites["paper"]
    assert [spec.label for spec in paper.datasets if spec.protocol.overrides] == ["7scenes-800"]


def test_dense_dry_run_lists_the_expected_cells(env, tmp_path):
    """`avggt-bench run dense.yaml --dry-run`: model × method × scene × frame count, nothing run."""
    data = yaml.safe_load((SUITES / "dense.yaml").read_text())
    data["models"] = [{"name": "oracle", "weights": "random"}]
    (tmp_path / "dense.yaml").write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "dense.yaml"), "--dry-run", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    listed = [line.split()[1] for line in result.output.splitlines() if line.startswith("todo")]
    scenes = {"7scenes": data["datasets"][0]["scenes"], "scannet": ["scene0707_00", "scene0806_00"], "nrgbd": ["breakfast_room"]}
    methods = ["dense", "avggt", "sparse-vggt-50", "fastvggt"]
    frames = (100, 200, 300, 500, 800, 1000)
    assert listed == [f"oracle/{m}/{d}/{s}/{n}" for d, names in scenes.items() for s in names for n in frames for m in methods]
    assert not (tmp_path / "out" / "cells.jsonl").exists()
