"""suites/sparse.yaml and suites/dense.yaml against dataset listings in the native layouts.

Every dataset entry must build its adapter from the suite's options, list the scenes the protocol
asks for, and sample every frame count it names from them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.cli import main
from datasets_adapters import Sampling, create_adapter
from tests.native_datasets import list_co3d_category, list_scannet_scene, list_seven_scenes_sequence, write_seven_scenes_splits

SUITES = Path(__file__).resolve().parents[1] / "suites"
SCANNET_FRAMES = {"scene0706_00": 10, "scene0707_00": 1100, "scene0708_00": 300, "scene0806_00": 1000, "scene0807_00": 10}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    co3d, seven, scannet = (tmp_path_factory.mktemp(n) for n in ("co3d", "7scenes", "scannet"))
    for category in yaml.safe_load((SUITES / "sparse.yaml").read_text())["datasets"][0]["options"]["categories"]:
        list_co3d_category(co3d, category, {f"{category}_seq": 50, f"{category}_short": 49})
    write_seven_scenes_splits(seven, "chess", test=[3], train=[1])
    write_seven_scenes_splits(seven, "stairs", test=[1], train=[2])
    for scene, seq, count in (("chess", 3, 1000), ("stairs", 1, 500)):
        list_seven_scenes_sequence(seven, scene, seq, count)
    for scene, count in SCANNET_FRAMES.items():
        list_scannet_scene(scannet, scene, count)
    return {"CO3D_ROOT": co3d, "SEVEN_SCENES_ROOT": seven, "SCANNET_ROOT": scannet}


def cells(entry: dict, roots: dict[str, Path]) -> dict[str, list[list[str]]]:
    """scene → the frame ids each of the entry's frame counts selects."""
    variable = re.fullmatch(r"\$\{(\w+)\}", entry["root"]).group(1)
    adapter = create_adapter(entry["name"], roots[variable], **entry.get("options", {}))
    sampling = Sampling(**entry.get("sampling", {}))
    assert entry["scenes"] == "all"
    counts = [None] if entry["frames"] == "all" else entry["frames"]
    out = {}
    for scene in adapter.scenes():
        ids = adapter.frame_ids(scene)
        out[scene] = [[ids[i] for i in sampling.select(len(ids), n)] for n in counts]
    return out


def entries(suite: str) -> dict[str, dict]:
    data = yaml.safe_load((SUITES / f"{suite}.yaml").read_text())
    assert data["name"] == suite
    return {entry.get("label", entry["name"]): entry for entry in data["datasets"]}


def test_sparse_co3d_is_the_pose_protocol(roots):
    entry = entries("sparse")["co3d"]
    assert len(set(entry["options"]["categories"])) == 41
    got = cells(entry, roots)
    assert sorted(got) == sorted(f"{c}/{c}_seq" for c in entry["options"]["categories"]), "49-frame sequences are left out"
    for (selected,) in got.values():
        assert len(set(selected)) == 10
    assert cells(entry, roots) == got, "seeded"


@pytest.mark.parametrize("label, stride", [("7scenes", 200), ("7scenes-kf40", 40)])
def test_sparse_seven_scenes_takes_keyframes_of_the_test_sequences(roots, label, stride):
    got = cells(entries("sparse")[label], roots)
    assert got == {"chess/seq-03": [[f"{i:06d}" for i in range(0, 1000, stride)]], "stairs/seq-01": [[f"{i:06d}" for i in range(0, 500, stride)]]}


def test_sparse_scannet_takes_the_first_90_frames_at_stride_3(roots):
    got = cells(entries("sparse")["scannet"], roots)
    assert sorted(got) == ["scene0707_00", "scene0708_00", "scene0806_00"]
    for (selected,) in got.values():
        assert selected == [str(i) for i in range(0, 270, 3)]


@pytest.mark.parametrize("dataset, scenes", [("7scenes", ["chess/seq-03"]), ("scannet", ["scene0707_00", "scene0806_00"])])
def test_dense_spreads_100_to_1000_frames_over_long_sequences(roots, dataset, scenes):
    entry = entries("dense")[dataset]
    assert entry["frames"] == [100, 200, 300, 500, 800, 1000]
    got = cells(entry, roots)
    assert sorted(got) == scenes, "sequences shorter than 1000 frames are left out"
    for selections in got.values():
        assert [len(set(s)) for s in selections] == entry["frames"]
        assert all(s[0] == "0" or s[0] == "000000" for s in selections)


def test_dense_dry_run_lists_the_expected_cells(roots, monkeypatch, tmp_path):
    """`avggt-bench run dense.yaml --dry-run`: model × method × scene × frame count, nothing run.

    The suite's models are swapped for the oracle and its metrics left out: what is under test is
    the datasets side (scenes, frame counts) and the methods, not model code, checkpoints or metrics.
    """
    suite = yaml.safe_load((SUITES / "dense.yaml").read_text())
    suite["models"] = [{"name": "oracle", "weights": "random"}]
    del suite["metrics"]
    (tmp_path / "dense.yaml").write_text(yaml.safe_dump(suite))
    for variable, path in roots.items():
        monkeypatch.setenv(variable, str(path))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "dense.yaml"), "--dry-run", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    listed = [line.split()[1] for line in result.output.splitlines() if line.startswith("todo")]
    scenes = {"7scenes": ["chess/seq-03"], "scannet": ["scene0707_00", "scene0806_00"]}
    methods = ["dense", "avggt", "sparse-vggt-50", "fastvggt"]
    frames = (100, 200, 300, 500, 800, 1000)
    assert listed == [f"oracle/{m}/{d}/{s}/{n}" for d, names in scenes.items() for s in names for n in frames for m in methods]
    assert not (tmp_path / "out" / "cells.jsonl").exists()
