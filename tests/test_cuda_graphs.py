"""When a model's forward runs as a captured CUDA graph (model option `cuda_graph_frames`), and
what is captured when. The capture itself needs a GPU (`gpu_tests/test_cuda_graphs.py`); here a
recording stand-in takes its place, and the CPU counts as a GPU."""

from __future__ import annotations

import pytest
import torch

import bench.models.base as base
from bench.attention_stats import AttentionRecorder
from bench.methods import resolve_plan
from bench.models import create_model
from bench.suite import SuiteError, expand, load_suite


class RecordingCapture:
    """Stands in for CapturedForward: runs the forward once at capture and on every call."""

    captures: list[tuple[int, ...]] = []

    def __init__(self, forward, example):
        self.forward, self.shape, self.peak_bytes = forward, example.shape, 3 * 2**30
        RecordingCapture.captures.append(tuple(example.shape))
        self.output = forward(example)

    def matches(self, images):
        return images.shape == self.shape

    def __call__(self, images):
        return self.forward(images)


@pytest.fixture
def graphs_on_cpu(monkeypatch):
    RecordingCapture.captures = []
    monkeypatch.setattr(base, "CapturedForward", RecordingCapture)
    monkeypatch.setattr(base, "captures_on", lambda device: True)
    yield RecordingCapture.captures


def frames(count: int) -> torch.Tensor:
    return torch.rand(count, 3, 28, 42, generator=torch.Generator().manual_seed(count))


def test_the_option_is_off_by_default_and_recorded_with_the_models_options(tmp_path):
    assert create_model("vggt-tiny").cuda_graph_frames == 0
    cells = expand(load_suite_text(tmp_path, "models: [{name: vggt-tiny, options: {cuda_graph_frames: 32}}]")).cells
    assert cells[0].model.resolved_options["cuda_graph_frames"] == 32
    cells = expand(load_suite_text(tmp_path, "models: [{name: pi3-tiny}]")).cells
    assert cells[0].model.resolved_options["cuda_graph_frames"] == 0


def test_a_forward_on_the_cpu_never_runs_as_a_graph():
    model = create_model("vggt-tiny", cuda_graph_frames=8)
    plan = resolve_plan("avggt", {}, model.traits)
    with torch.inference_mode():
        model.prime(frames(4), plan)
        out = model.run(frames(4), plan)
    assert model._captured is None
    torch.testing.assert_close(out["depth"], model(frames(4), plan=plan)["depth"])


def test_one_capture_per_plan_and_shape_made_by_prime_after_the_observations_restart(graphs_on_cpu, monkeypatch):
    model = create_model("vggt-tiny", cuda_graph_frames=6)
    plan, other = resolve_plan("avggt", {}, model.traits), resolve_plan("g2f", {}, model.traits)
    resets = []
    monkeypatch.setattr(plan, "reset_observations", lambda: resets.append(len(graphs_on_cpu)))
    with torch.inference_mode():
        model.prime(frames(4), plan)
        assert graphs_on_cpu == [(4, 3, 28, 42)] and resets == [0], "capture after the reset, so its records count"
        model.run(frames(4), plan)
        model.run(frames(4), plan)
        assert len(graphs_on_cpu) == 1, "replays capture nothing new"
        model.run(frames(5), plan)
        model.run(frames(5), other)
        assert graphs_on_cpu[1:] == [(5, 3, 28, 42), (5, 3, 28, 42)], "a new shape or plan is captured anew"
        assert model._captured[0] is other, "only the latest graph is kept"
        model.run(frames(7), plan)
    assert len(graphs_on_cpu) == 3 and model._captured is None, "more frames than the option: a plain forward, and the graph freed"


def test_the_peak_memory_of_a_replayed_forward_is_the_one_seen_at_capture(graphs_on_cpu):
    model = create_model("vggt-tiny", cuda_graph_frames=4)
    plan = resolve_plan("avggt", {}, model.traits)
    with torch.inference_mode():
        assert model.graph_peak_gib(frames(4), plan) is None, "nothing captured yet"
        model.prime(frames(4), plan)
        assert model.graph_peak_gib(frames(4), plan) == 3.0
        assert model.graph_peak_gib(frames(5), plan) is None, "five frames run plainly"


def test_a_plan_that_works_on_the_host_every_call_is_never_captured(graphs_on_cpu):
    model = create_model("vggt-tiny", cuda_graph_frames=8)
    recorder = AttentionRecorder(queries=4, radius=1, seed=0)
    assert not recorder.capturable
    with torch.inference_mode():
        assert not model._runs_as_graph(frames(4), recorder)
    assert model._runs_as_graph(frames(4), resolve_plan("avggt", {}, model.traits))


def test_a_fractional_frame_count_frame_count_is_refused_when_the_suite_loads(tmp_path):
    with pytest.raises(SuiteError, match="cuda_graph_frames"):
        load_suite_text(tmp_path, "models: [{name: vggt-tiny, options: {cuda_graph_frames: 2.5}}]")


def load_suite_text(folder, models: str):
    text = f"""name: t
device: cpu
{models}
methods: [dense]
datasets:
  - name: synthetic
    options: {{length: 4, height: 28, width: 42}}
    scenes: [orbit]
    frames: [4]
metrics: []
"""
    path = folder / "suite.yaml"
    path.write_text(text)
    return load_suite(path)
