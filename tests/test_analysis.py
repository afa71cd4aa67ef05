"""`avggt-bench analyze`: attention statistics against planted attention and closed forms, ablations
as cells, and a recommendation that runs as a plan.

Model `planted` (tests/plugins/planted_attention.py) attends uniformly in global layer 0, within
the frame in layer 1, to the true correspondence in layer 2, near-uniformly at random in layer 3;
its accuracy depends on layer 2 only. So the analysis must find layer 2's correspondences, score
the others at chance, and recommend t_early = 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from bench.analysis import attention_rows, ablation_kind, frame_layers
from bench.attention_stats import layer_statistics, query_targets, uniform_levels
from bench.cli import main
from bench.methods import resolve_plan
from bench.methods.layout import Layout
from bench.methods.params import parse_overrides
from bench.models import model_traits
from bench.store import read_rows
from bench.suite import expand, parse_suite
from datasets_adapters.synthetic import SyntheticScenes
from metrics.geometry import unproject_depth

PLUGIN = "tests.plugins.planted_attention"
FRAMES = 6


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def analysis_suite(model: str = "planted", weights: str = "none", **analysis) -> dict:
    return {
        "name": "analysis-test",
        "plugins": [PLUGIN],
        "models": [{"name": model, "weights": weights}],
        "datasets": [{"name": "synthetic", "options": {"length": 24, "height": 84, "width": 112}, "scenes": ["orbit"], "frames": [FRAMES], "sampling": {"kind": "uniform"}, "preprocess": "none"}],
        "timing": {"warmup": 0, "repeats": 1},
        "metrics": ["pose"],
        "analysis": {"queries": 96, "radius": 1, "accuracy": "pose.auc30", "tolerance": 5.0, "cost": "flops", "sigmas": [2, 4]} | analysis,
    }


def write(tmp_path: Path, data: dict, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """The planted model analysed once: (suite file, results folder, the command's output)."""
    tmp_path = tmp_path_factory.mktemp("planted")
    suite = write(tmp_path, analysis_suite())
    out = tmp_path / "out"
    result = invoke("analyze", suite, "--out", out)
    assert result.exit_code == 0, result.output
    return suite, out, result.output


def test_planted_correspondence_layer_is_found_and_the_others_score_chance(analysed):
    _, out, _ = analysed
    (row,) = attention_rows(out)
    hit, mass = row["arrays"]["attention.hit"], row["arrays"]["attention.mass"]  # (layers, heads)
    chance = row["attention.chance_hit"]
    assert row["attention.pairs"] > 50 and 0 < chance < 0.3
    assert (hit[2] > 0.9).all() and (mass[2] > 0.6).all()  # the planted layer
    assert mass[0] == pytest.approx(np.full(2, chance), abs=1e-5)  # uniform: exactly chance
    assert (np.abs(hit[3] - chance) < 0.12).all() and (np.abs(mass[3] - chance) < 0.02).all()  # near uniform at random
    assert row["attention.other"][2] > 0.9 and row["attention.other"][1] < 1e-6  # layer 2 looks at other frames, layer 1 never


def test_uniform_attention_masses_are_the_closed_form(analysed):
    _, out, _ = analysed
    (row,) = attention_rows(out)
    layout = Layout(**{**row["attention.layout"], "grid": tuple(row["attention.layout"]["grid"])})
    patches, per_frame = 6 * 8, 1 + 6 * 8
    expected = {"other": (FRAMES - 1) * patches / (FRAMES * per_frame), "own": patches / (FRAMES * per_frame), "special": 1 / per_frame, "reference": 1 / FRAMES, "entropy": 1.0}
    assert uniform_levels(layout) == pytest.approx(expected)
    for name, value in expected.items():
        assert row["arrays"][f"attention.{name}"][0] == pytest.approx(np.full(2, value), abs=1e-5), name
        assert row[f"attention.uniform_{name}"] == pytest.approx(value)


def test_ablations_are_cells_and_the_recommendation_follows_the_planted_layer(analysed):
    suite, out, output = analysed
    rows = [r for r in read_rows(out) if r.get("analysis") is None]
    assert {r["status"] for r in rows} == {"ok"}
    single = {r["method"]: r["pose.auc30"] for r in rows if r["method"].startswith("frame-L")}
    dense = next(r["pose.auc30"] for r in rows if r["method"] == "dense")
    assert dense > 90 and single["frame-L02"] < dense - 20  # only the corresponding layer matters
    assert all(single[f"frame-L0{i}"] == pytest.approx(dense, abs=1.0) for i in (0, 1, 3))
    recommendation = json.loads((out / "recommendation.json").read_text())
    assert recommendation["params"]["frame_layers"] == "0-1"  # t_early = 2: layers before the corresponding one
    assert recommendation["chosen"]["within"] and recommendation["params"]["sigma"] in (2, 4)
    t_sweep = {c["t_early"]: c["within"] for c in recommendation["t_sweep"]}
    assert t_sweep == {0: True, 1: True, 2: True, 3: False, 4: False}
    assert {c["t_early"] for c in recommendation["sigma_sweep"]} == {2}
    assert f"recommended plan: --method avggt -p frame_layers=0-1 -p sigma={recommendation['params']['sigma']}" in output
    for name in ("analysis.md", "plots/attention_by_layer_synthetic_6.png", "plots/ablation_by_layer_synthetic_6.png", "plots/accuracy_vs_time_sweeps_synthetic_6.png"):
        assert (out / name).is_file(), name
    report = (out / "analysis.md").read_text()
    assert "## Attention by global layer" in report and "## Ablation: σ swept" in report


def test_the_recommended_plan_runs_as_written(analysed, tmp_path):
    _, out, _ = analysed
    recommendation = json.loads((out / "recommendation.json").read_text())
    traits = model_traits("planted")
    options = recommendation["predict_options"].split()
    plan = resolve_plan(options[1], parse_overrides(options[3::2]), traits)
    assert [rule.operator for rule in plan.layers] == ["frame", "frame", "subsample", "subsample"]
    assert plan.describe(FRAMES)["layers"][-1]["params"]["sigma"] == recommendation["params"]["sigma"]
    data = analysis_suite()
    del data["analysis"]
    data["methods"] = [recommendation["suite_entry"]]
    cells = expand(parse_suite(data, "recommended.yaml")).cells
    assert [rule.operator for rule in cells[0].plan.layers] == ["frame", "frame", "subsample", "subsample"]


def test_method_tables_leave_the_statistics_rows_out(analysed):
    _, out, _ = analysed
    result = invoke("report", out)
    assert result.exit_code == 0 and "| attention" not in result.output and "| frame-L02" in result.output


def test_a_scene_without_depth_is_an_error_row_and_a_failed_command(tmp_path):
    data = analysis_suite("vggt-tiny", "random", sigmas=[2], t_early=1, cost="time")
    data["datasets"][0]["options"]["render"] = False  # noise images, poses only
    data["datasets"][0]["frames"] = [3]
    out = tmp_path / "out"
    result = invoke("analyze", write(tmp_path, data), "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "attention statistics: ValueError: attention analysis needs ground-truth depth" in result.output
    assert "1 cells ended in error" in result.output and (out / "analysis.md").is_file()  # the ablations still conclude
    data["analysis"]["cost"] = "flops"  # which needs the layout the statistics record
    result = invoke("analyze", write(tmp_path, data), "--out", out)
    assert result.exit_code == 1 and "cost flops counts each group's token layout" in result.output


def test_analysis_resumes_without_measuring_again(analysed):
    suite, out, _ = analysed
    before = (out / "cells.jsonl").read_text()
    result = invoke("analyze", suite, "--out", out)
    assert result.exit_code == 0 and (out / "cells.jsonl").read_text() == before


def test_statistics_do_not_depend_on_the_chunk_size():
    """A chunk of one query and one chunk of all give the same numbers: chunks only bound memory."""
    seq = SyntheticScenes(length=12, height=56, width=84).load_frames("orbit", ["000000", "000003", "000006", "000009"])
    layout = Layout(frames=4, tokens_per_frame=5 + 4 * 6, special_tokens=5, grid=(4, 6), reference_frame=0)
    targets = query_targets(seq, layout, queries=40, radius=1, seed=3)
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 3, layout.num_tokens, 8, generator=generator) for _ in range(2))
    whole = layer_statistics(q, k, layout, targets, 1, chunk_elements=1 << 30)
    one_by_one = layer_statistics(q, k, layout, targets, 1, chunk_elements=1)
    for name in whole:
        np.testing.assert_allclose(one_by_one[name], whole[name], rtol=1e-5, err_msg=name)


def test_correspondence_targets_follow_the_true_geometry():
    """Every target pair lands where the query's patch-centre point projects, and is seen there."""
    seq = SyntheticScenes(length=12, height=56, width=84).load_frames("orbit", ["000000", "000003", "000006", "000009"])
    layout = Layout(frames=4, tokens_per_frame=1 + 4 * 6, special_tokens=1, grid=(4, 6), reference_frame=0)
    targets = query_targets(seq, layout, queries=60, radius=0, seed=0)
    assert len(targets.pair_query) > 20 and (targets.pair_frame != targets.frames[targets.pair_query]).all()
    assert targets.chance == pytest.approx(np.full(len(targets.chance), 1 / 24))  # radius 0: one patch of 24
    world = unproject_depth(seq.depth, seq.intrinsics, seq.extrinsics)  # (S, H, W, 3)
    frame, patch = np.divmod(targets.tokens - 1, 25)
    query_points = world[frame, (patch // 6) * 14 + 7, (patch % 6) * 14 + 7]
    nearest = []
    for query, target, true_patch in zip(targets.pair_query, targets.pair_frame, targets.pair_patch):
        row, col = divmod(int(true_patch), 6)
        seen = world[target, row * 14 : row * 14 + 14, col * 14 : col * 14 + 14][seq.valid[target, row * 14 : row * 14 + 14, col * 14 : col * 14 + 14]]
        nearest.append(np.linalg.norm(seen - query_points[query], axis=1).min())
    assert np.median(nearest) < 0.05 and max(nearest) < 0.25  # the true patch sees the query's point


def test_tiny_pi3_is_analysed_without_a_reference_frame(tmp_path):
    data = analysis_suite("pi3-tiny", "random", queries=32, sigmas=[2])
    data["datasets"][0]["frames"] = [3]
    out = tmp_path / "out"
    result = invoke("analyze", write(tmp_path, data), "--out", out)
    assert result.exit_code == 0, result.output
    (row,) = attention_rows(out)
    assert len(row["attention.layers"]) == 4 and row["attention.reference"] == [None] * 4  # NaN, written as null
    assert "random weights: the accuracy means nothing" in result.output


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda d: d["models"].append({"name": "vggt-tiny"}), ["models", "one model"]),
        (lambda d: d.update(methods=["dense"]), ["methods", "generates its methods"]),
        (lambda d: d["analysis"].update(accuracy="depth.abs_rel"), ["analysis.accuracy", "not every dataset entry is scored with metric 'depth'"]),
        (lambda d: d["analysis"].update(accuracy="pose.nope"), ["analysis.accuracy", "is not a metric value"]),
        (lambda d: d["analysis"].update(t_early=7), ["analysis.t_early", "more than the model's 4 global layers"]),
        (lambda d: d["analysis"].update(cost="energy"), ["analysis.cost", "time, flops"]),
        (lambda d: d["analysis"].update(sigmas=[2, 3]), ["analysis.sigmas[1]"]),
        (lambda d: d["analysis"].update(queries=0), ["analysis.queries", "integer >= 1"]),
    ],
)
def test_bad_analysis_settings_are_one_clear_error(tmp_path, change, fragments):
    data = analysis_suite()
    change(data)
    result = invoke("analyze", write(tmp_path, data), "--out", tmp_path / "out")
    assert result.exit_code != 0 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and all(f in errors[0] for f in fragments), result.output


def test_run_and_analyze_refuse_each_others_suites(tmp_path):
    analysis = write(tmp_path, analysis_suite(), "analysis.yaml")
    result = invoke("run", analysis, "--out", tmp_path / "a")
    assert result.exit_code != 0 and "run `avggt-bench analyze" in result.output
    plain = analysis_suite()
    del plain["analysis"]
    plain["methods"] = ["dense"]
    result = invoke("analyze", write(tmp_path, plain, "plain.yaml"), "--out", tmp_path / "b")
    assert result.exit_code != 0 and "no `analysis:` settings" in result.output
    assert "valid analysis suite; 8 ablation cells" in invoke("validate", analysis).output


def test_ablation_kinds_read_from_rows():
    assert ablation_kind({"method_name": "dense"}, 4) == ("t", 0, 1)
    assert ablation_kind({"method_name": "g2f", "method_params": {"frame_layers": frame_layers(3)}}, 4) == ("t", 3, 1)
    assert ablation_kind({"method_name": "g2f", "method_params": {"frame_layers": "2"}}, 4) is None
    assert ablation_kind({"method_name": "avggt", "method_params": {"frame_layers": "none", "sigma": 4}}, 4) == ("σ", 0, 4)
