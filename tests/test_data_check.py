"""`avggt-bench check-data`: what it reports on good datasets, and one precise error per kind of bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from bench.check_data import check_data
from datasets_adapters import DatasetError
from datasets_adapters.check import check_dataset
from tests.native_datasets import (
    Co3dSequenceSpec,
    save_uint16_png,
    write_co3d_category,
    write_scannet_scene,
    write_seven_scenes_sequence,
    write_seven_scenes_splits,
)


def run(*args: str):
    return CliRunner().invoke(check_data, list(args))


@pytest.fixture
def scannet(tmp_path):
    write_scannet_scene(tmp_path, "scene0707_00", num_frames=6, invalid=(2, 4))
    write_scannet_scene(tmp_path, "scene0708_00", num_frames=3, invalid=())
    return tmp_path


@pytest.fixture
def co3d(tmp_path):
    write_co3d_category(tmp_path, "apple", [Co3dSequenceSpec("110_13051_23361", 4), Co3dSequenceSpec("12_90_489", 4, quality=0.2)])
    write_co3d_category(tmp_path, "bench", [Co3dSequenceSpec("415_57184_110412", 3)])
    return tmp_path


@pytest.fixture
def seven(tmp_path):
    write_seven_scenes_splits(tmp_path, "chess", test=[3], train=[])
    write_seven_scenes_sequence(tmp_path, "chess", 3, num_frames=2)
    return tmp_path


def test_report_counts_scenes_frames_and_invalid_poses(scannet):
    report = check_dataset("scannet", scannet, decode=None)
    assert report.ok
    assert [(s.scene, s.frames, s.invalid_poses) for s in report.scenes] == [("scene0707_00", 4, 2), ("scene0708_00", 3, 0)]
    result = run("scannet", str(scannet), "--frames", "all")
    assert result.exit_code == 0, result.output
    total = [line.split() for line in result.output.splitlines() if line.startswith("total")][0]
    assert total == ["total", "2", "7", "2", "0", "0"]


def test_co3d_report_names_categories_and_what_the_filters_dropped(co3d):
    result = run("co3d", str(co3d), "-o", "min_frames=3")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:3] for line in result.output.splitlines() if line.split()[:1] in (["apple"], ["bench"])}
    assert rows == {"apple": ["1", "4"], "bench": ["1", "3"]}
    assert "apple: 1 of 2 sequences kept (1 for viewpoint_quality_score <= 0.5)" in result.output


def test_missing_folder_exits_non_zero_naming_it(scannet):
    shutil.rmtree(scannet / "scene0708_00/pose")
    result = run("scannet", str(scannet))
    assert result.exit_code == 1
    assert f"Error: scannet at {scannet} is not usable: missing: {scannet}/scene0708_00/pose (folder)" in result.output


def test_missing_root_exits_non_zero_naming_it(tmp_path):
    result = run("7scenes", str(tmp_path / "7scenes"))
    assert result.exit_code == 1 and f"Error: {tmp_path}/7scenes: missing folder (the 7scenes root)" in result.output


def test_truncated_jgz_exits_non_zero_naming_it(co3d):
    path = co3d / "bench/sequence_annotations.jgz"
    path.write_bytes(path.read_bytes()[:-12])
    result = run("co3d", str(co3d))
    assert result.exit_code == 1
    assert f"Error: {path}: truncated or corrupt gzip stream" in result.output


def test_malformed_pose_exits_non_zero_naming_it(seven):
    (seven / "chess/seq-03/frame-000001.pose.txt").write_text("0.99 0.01\n")
    result = run("7scenes", str(seven))
    assert result.exit_code == 1
    assert f"{seven}/chess/seq-03/frame-000001.pose.txt: malformed matrix, expected 4x4 = 16 numbers, found 2" in result.output


def test_depth_colour_size_mismatch_exits_non_zero_naming_it(seven):
    save_uint16_png(seven / "chess/seq-03/frame-000001.depth.proj.png", np.zeros((240, 320)))
    assert run("7scenes", str(seven)).exit_code == 0, "one decoded frame per scene by default: frame 0 is fine"
    result = run("7scenes", str(seven), "--frames", "all")
    assert result.exit_code == 1
    assert f"{seven}/chess/seq-03/frame-000001.depth.proj.png: depth is 320x240, the colour image frame-000001.color.png is 640x480" in result.output


def test_unknown_dataset_and_option_are_clear(scannet):
    result = run("scannet2", str(scannet))
    assert result.exit_code == 1 and "unknown dataset 'scannet2'; known:" in result.output
    result = run("scannet", str(scannet), "-o", "intrinsic=depth")
    assert result.exit_code == 1 and "dataset 'scannet': option intrinsic: unknown option; allowed: intrinsics," in result.output
    assert run("scannet", str(scannet), "-o", "intrinsics").exit_code == 2
    assert run("scannet", str(scannet), "--frames", "some").exit_code == 2


def test_check_dataset_raises_when_no_scene_can_be_listed(tmp_path):
    with pytest.raises(DatasetError, match="no 7-Scenes scene folders"):
        check_dataset("7scenes", tmp_path)
