"""Weights: files of both formats, the local Hugging Face cache, sha256 caching, the track-head
filter and strict checking with errors that name what is wrong."""

from __future__ import annotations

import hashlib
import json
import os
import warnings

import pytest
import torch
from safetensors.torch import save_file

from bench.models import create_model
from bench.models.weights import WeightsError, file_sha256

IMAGES = torch.rand(2, 3, 28, 42, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def source():
    return create_model("vggt-tiny", weights="random", seed=7)


@pytest.fixture(scope="module")
def state(source):
    return {k: v.clone() for k, v in source.state_dict().items()}


def _outputs(model):
    with torch.inference_mode():
        return model(IMAGES)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_file_loads_strictly_and_records_its_sha256(tmp_path, source, state, suffix):
    path = tmp_path / f"tiny{suffix}"
    torch.save(state, path) if suffix == ".pt" else save_file(state, str(path))
    model = create_model("vggt-tiny", weights=str(path))
    expected, got = _outputs(source), _outputs(model)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert model.weights_info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.weights_info.id == str(path) and not model.weights_info.random


def test_sha256_is_cached_beside_the_file_until_it_changes(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"first")
    assert file_sha256(path) == hashlib.sha256(b"first").hexdigest()
    cache = tmp_path / "w.pt.sha256"
    record = json.loads(cache.read_text())
    cache.write_text(json.dumps({**record, "sha256": "from-cache"}))
    assert file_sha256(path) == "from-cache"  # trusted while size and mtime hold
    path.write_bytes(b"second!")
    os.utime(path, ns=(record["mtime_ns"] + 10**9, record["mtime_ns"] + 10**9))
    assert file_sha256(path) == hashlib.sha256(b"second!").hexdigest()


def test_track_head_is_skipped_with_one_warning(tmp_path, state):
    path = tmp_path / "with_track.pt"
    torch.save({**state, "track_head.tracker.query_ref_token": torch.zeros(1, 2, 3), "track_head.fnet.weight": torch.zeros(2, 2)}, path)
    with pytest.warns(UserWarning, match=r"skipped 2 keys under track_head\.\*") as record:
        create_model("vggt-tiny", weights=str(path))
    assert len(record) == 1


def test_training_checkpoint_wrapper_is_unwrapped(tmp_path, state):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": state, "epoch": 3}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_model("vggt-tiny", weights=str(path))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("camera_head.embed_pose.bias"), r"missing \(1\): camera_head\.embed_pose\.bias"),
        (lambda s: s.update({"aggregator.extra": torch.zeros(1)}), r"unexpected \(1\): aggregator\.extra"),
        (lambda s: s.update({"aggregator.camera_token": torch.zeros(1, 2, 1, 3)}), r"aggregator\.camera_token \(1, 2, 1, 3\) \(model \(1, 2, 1, 64\)\)"),
    ],
)
def test_mismatched_files_name_the_keys(tmp_path, state, change, message):
    broken = dict(state)
    change(broken)
    path = tmp_path / "broken.safetensors"
    save_file(broken, str(path))
    with pytest.raises(WeightsError, match=message):
        create_model("vggt-tiny", weights=str(path))


def test_a_pi3_file_is_recognised(tmp_path):
    path = tmp_path / "pi3.safetensors"
    save_file({"encoder.cls_token": torch.zeros(1, 1, 4), "decoder.0.norm1.weight": torch.ones(4), "point_decoder.0.norm1.weight": torch.ones(4)}, str(path))
    with pytest.raises(WeightsError, match=r"missing \(\d+\).*unexpected \(3\).*looks like a pi3 checkpoint"):
        create_model("vggt-tiny", weights=str(path))


@pytest.mark.parametrize(
    "content, message",
    [(lambda p: torch.save([1, 2, 3], p), "does not hold a state dict"), (lambda p: p.write_bytes(b"not a checkpoint"), "cannot read .* as a state dict")],
)
def test_files_that_are_not_state_dicts(tmp_path, content, message):
    path = tmp_path / "odd.pt"
    content(path)
    with pytest.raises(WeightsError, match=message):
        create_model("vggt-tiny", weights=str(path))


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(WeightsError, match="weights file not found"):
        create_model("vggt-tiny", weights=str(tmp_path / "nope.pt"))
    with pytest.raises(WeightsError, match="is a directory"):
        create_model("vggt-tiny", weights=str(tmp_path))


def _fake_hub_cache(root, repo_id, filename, writer):
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    writer(snapshot / filename)


def test_hugging_face_id_resolves_from_the_local_cache_only(tmp_path, monkeypatch, state):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match=r"'acme/tiny-vggt' is not in the local cache .*`hf download acme/tiny-vggt"):
        create_model("vggt-tiny", weights="acme/tiny-vggt")
    _fake_hub_cache(tmp_path, "acme/tiny-vggt", "model.pt", lambda p: torch.save(state, p))
    model = create_model("vggt-tiny", weights="acme/tiny-vggt")
    assert model.weights_info.id == "acme/tiny-vggt"
    assert model.weights_info.sha256 == hashlib.sha256((tmp_path / "models--acme--tiny-vggt/snapshots/0123abcd/model.pt").read_bytes()).hexdigest()


def test_the_runner_draws_random_weights_on_the_cells_device(monkeypatch):
    """The model is built inside its device's context, so a GPU draws its own random weights; the
    seed still fixes them and the caller's random stream is left as it was."""
    import bench.runner
    from bench.suite import ModelSpec

    seen = []
    real = bench.runner.create_model

    def recording(*args, **kwargs):
        seen.append(torch.get_default_device())
        return real(*args, **kwargs)

    monkeypatch.setattr(bench.runner, "create_model", recording)
    spec = ModelSpec(name="vggt-tiny", label="vggt-tiny", weights="random", weights_path="random")
    state = torch.random.get_rng_state()
    on_meta = bench.runner._build_model((spec, "meta"))
    assert seen == [torch.device("meta")] and next(on_meta.parameters()).device.type == "meta"
    first, second = (bench.runner._build_model((spec, "cpu")) for _ in range(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
