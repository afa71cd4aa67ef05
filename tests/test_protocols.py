"""Protocols in suites: what a protocol sets, what a suite may change (and how rows say so), the
report's protocol tables, and one clear error per kind of mistake."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_suite

from bench.cli import main
from bench.protocols import PROTOCOLS, Column, Protocol, Setting
from bench.report import protocol_tables, render, load_results
from bench.store import read_raw, read_rows
from bench.suite import SuiteError, expand, load_suite
from datasets_adapters import Sampling
from metrics.aggregate import pooled_pose_scores

SYNTHETIC = {"length": 12, "height": 48, "width": 64}


def pooled(scenes):
    return pooled_pose_scores([s.raw["pose.rot_err_deg"] for s in scenes], [s.raw["pose.trans_err_deg"] for s in scenes], (5, 30))


@pytest.fixture
def toy_protocol(register):
    """A protocol over the synthetic scenes: 6 uniform frames, pose pooled over all pairs."""
    settings = tuple(
        Setting(
            dataset="synthetic", variant=variant, options=SYNTHETIC, frames=(6,), sampling=sampling,
            metrics={"pose": {"thresholds": [5, 30], "angles": "quaternion"}}, preprocess="none",
        )  # fmt: skip
        for variant, sampling in (("uniform", Sampling(kind="uniform")), ("stride", Sampling(kind="stride", stride=2)))
    )
    protocol = Protocol("t-pooled", 3, "toy", "nothing", settings, pooled, (Column("AUC@30", "auc30", 100.0), Column("RRA@5", "rra5", 100.0)))
    register(PROTOCOLS, "t-pooled", protocol)
    return protocol


def suite_with(entry: dict, **top) -> dict:
    return {
        "name": "proto",
        "models": [{"name": "oracle", "weights": "none", "options": {"rotation_noise_deg": 2.0, "translation_noise": 0.05}}],
        "methods": ["dense"],
        "datasets": [{"name": "synthetic", "protocol": "t-pooled", **entry}],
        "timing": {"warmup": 0, "repeats": 1},
        **top,
    }


def error_of(tmp_path, data) -> str:
    with pytest.raises(SuiteError) as info:
        expand(load_suite(write_suite(tmp_path, data)))
    return str(info.value)


def test_a_protocol_sets_the_whole_dataset_entry(tmp_path, toy_protocol):
    suite = load_suite(write_suite(tmp_path, suite_with({"variant": "stride"})))
    [spec] = suite.datasets
    assert (spec.frames, spec.sampling, spec.preprocess, spec.options, spec.adapter_options) == ((6,), Sampling(kind="stride", stride=2), "none", {}, SYNTHETIC)
    assert spec.protocol.overrides == {} and spec.protocol.as_row() == {"protocol": "t-pooled", "protocol_version": 3, "protocol_variant": "stride", "protocol_overrides": None}
    cells = expand(suite).cells
    assert [c.metrics for c in cells] == [("pose",)] * 2 and cells[0].metric_options == {"pose": {"thresholds": [5, 30], "angles": "quaternion"}}
    assert cells[0].inputs["protocol"]["protocol"] == "t-pooled", "the protocol is part of a cell's identity"


def test_every_change_from_the_protocol_is_an_override(tmp_path, toy_protocol):
    entry = {
        "variant": "uniform", "frames": [4], "scenes": ["orbit"], "options": {**SYNTHETIC, "boxes": 2},
        "metric_options": {"pose": {"thresholds": [5, 30], "pair_order": "ji"}},
    }  # fmt: skip
    [spec] = load_suite(write_suite(tmp_path, suite_with(entry))).datasets
    assert spec.protocol.overrides == {"options": {"boxes": 2}, "frames": [4], "scenes": ["orbit"], "metric_options": {"pose": {"pair_order": "ji"}}}
    assert spec.metric_options == {"pose": {"thresholds": [5, 30], "angles": "quaternion", "pair_order": "ji"}}
    same = {"variant": "uniform", "frames": [6], "sampling": {"kind": "uniform"}, "options": {"length": 12}}  # the protocol's own values
    [spec] = load_suite(write_suite(tmp_path, suite_with(same))).datasets
    assert spec.protocol.overrides == {}


def test_rows_the_report_and_comparability(tmp_path, toy_protocol):
    suite = suite_with({"variant": "uniform"}, datasets=[
        {"name": "synthetic", "protocol": "t-pooled", "variant": "uniform"},
        {"name": "synthetic", "label": "changed", "protocol": "t-pooled", "variant": "uniform", "frames": [8]},
    ])  # fmt: skip
    path = write_suite(tmp_path, suite)
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "out")
    assert {r["protocol_overrides"] and tuple(r["protocol_overrides"]) for r in rows} == {None, ("frames",)}
    df = load_results(tmp_path / "out")
    tables = dict(protocol_tables(df, tmp_path / "out"))
    assert [t.split(" · ")[:3] for t in tables] == [["t-pooled v3", "synthetic (uniform)", "6 frames"], ["t-pooled v3", "changed (uniform)", "8 frames"]]
    published, changed = tables.values()
    assert published["comparable"].tolist() == ["yes"] and changed["comparable"].tolist() == ["no: overrides frames"]
    assert published["scenes"].tolist() == ["2/2"]
    mine = [r for r in rows if r["dataset"] == "synthetic"]
    expected = pooled_pose_scores(*zip(*((read_raw(tmp_path / "out", r)["pose.rot_err_deg"], read_raw(tmp_path / "out", r)["pose.trans_err_deg"]) for r in mine)), (5, 30))
    assert published["AUC@30"].iloc[0] == pytest.approx(100 * expected["auc30"]) and published["RRA@5"].iloc[0] == pytest.approx(100 * expected["rra5"])
    text = render(df, "md", tmp_path / "out")
    assert text.startswith("## t-pooled v3 · synthetic (uniform) · 6 frames") and "AUC@30" in text.splitlines()[2]
    assert "oracle (none) · synthetic · 6 frames" not in text, "protocol rows are reported the protocol's way only"
    with pytest.raises(Exception, match="raw arrays"):
        render(df, "md")


def test_a_row_from_another_protocol_version_is_not_comparable(tmp_path, toy_protocol):
    path = write_suite(tmp_path, suite_with({"variant": "uniform"}))
    CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out")], catch_exceptions=False)
    PROTOCOLS.unregister("t-pooled")
    PROTOCOLS.register("t-pooled", replace(toy_protocol, version=4))  # the protocol changed since those rows
    [(title, table)] = protocol_tables(load_results(tmp_path / "out"), tmp_path / "out")
    assert title.startswith("t-pooled v4") and table["comparable"].tolist() == ["no: measured under another version than v4"]


def test_mistakes_name_the_field(tmp_path, toy_protocol):
    assert re.search(r"datasets\[0\]\.protocol: unknown protocol 'nope'; allowed: vggt-co3d, pi3-relpose-angular", error_of(tmp_path, suite_with({}, datasets=[{"name": "synthetic", "protocol": "nope"}])))
    message = error_of(tmp_path, suite_with({}))
    assert "datasets[0].name: protocol 't-pooled' has several variants for 'synthetic': say which with `variant:` (uniform, stride)" in message
    assert "has no variant 'other' for 'synthetic'; its variants: uniform, stride" in error_of(tmp_path, suite_with({"variant": "other"}))
    message = error_of(tmp_path, suite_with({}, datasets=[{"name": "co3d", "protocol": "pi3-mv-recon"}]))
    assert "protocol 'pi3-mv-recon' does not cover dataset 'co3d'; it covers 7scenes, nrgbd, dtu, eth3d" in message
    message = error_of(tmp_path, suite_with({}, datasets=[{"name": "sintel", "protocol": "pi3-videodepth", "variant": "scale"}]))
    assert "datasets[0].name: protocol 'pi3-videodepth' covers 'sintel', which has no dataset adapter in this harness yet" in message
    assert "a variant belongs to a protocol" in error_of(tmp_path, suite_with({}, datasets=[{"name": "synthetic", "variant": "a", "frames": [2]}]))
    assert "datasets[0].frames: missing" in error_of(tmp_path, suite_with({}, datasets=[{"name": "synthetic"}]))
    stream = {"name": "synthetic", "frames": "all", "sampling": {"kind": "stream", "seed": 1}}
    assert "stream sampling draws a fixed number of frames per scene" in error_of(tmp_path, suite_with({}, datasets=[stream]))
    assert "sampling order only applies to kind stream" in error_of(tmp_path, suite_with({}, datasets=[{"name": "synthetic", "frames": [2], "sampling": {"kind": "uniform", "order": "sorted"}}]))


def test_list_protocols_shows_datasets_variants_and_columns():
    result = CliRunner().invoke(main, ["list", "protocols"])
    assert result.exit_code == 0
    for expected in ("vggt-co3d", "v1: VGGT's CO3Dv2 camera pose", "columns: AUC@30, AUC@15, AUC@5, AUC@3", "7scenes, variant kf40", "sintel, variant scale-shift", "(no adapter yet)"):
        assert expected in result.output, expected


def test_stream_sampling_walks_the_scenes_in_order_with_one_generator():
    from datasets_adapters.sampling import stream_map

    drawn = stream_map([("a", 20), ("b", 30)], 5, seed=7)
    legacy = np.random.RandomState(7)
    np.testing.assert_array_equal(drawn["a"], legacy.choice(20, 5, replace=False))
    np.testing.assert_array_equal(drawn["b"], legacy.choice(30, 5, replace=False))  # the stream continues
    assert Sampling(kind="stream", order="sorted").walk(["b/2", "a/9", "b/1"]) == ["a/9", "b/1", "b/2"]
    with pytest.raises(ValueError, match="b has 3 frames, fewer than the 5"):
        stream_map([("a", 20), ("b", 3)], 5, seed=7)
