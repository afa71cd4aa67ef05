"""pi3 at toy size: output contract, geometry of its outputs, frame-order equivariance, chunking,
the attention-plan hookup, conversion to a Prediction, and weights loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from bench.methods.layout import Layout
from bench.methods.plan import DensePlan
from bench.models import MODELS, create_model
from bench.models.pi3 import PI3_TINY, Pi3
from bench.models.weights import WeightsError
from bench.predict import predict
from bench.preprocess import pi3_size

FRAMES, HEIGHT, WIDTH = 3, 42, 56  # a 3×4 patch grid


@pytest.fixture(scope="module")
def model() -> Pi3:
    return create_model("pi3-tiny", seed=0)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(FRAMES, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def raw(model: Pi3, images: torch.Tensor) -> dict[str, torch.Tensor]:
    return model(images)


def test_registered_with_the_pi3_contract() -> None:
    """The harness reads these traits from a build on the meta device: no memory, no initialisation."""
    assert {"pi3", "pi3-tiny"} <= set(MODELS.names())
    with torch.device("meta"):
        full, tiny = create_model("pi3"), create_model("pi3-tiny")
    assert full.register_token.is_meta and full.image_mean.is_meta
    assert (full.family, full.num_global_layers, full.reference_frame, full.preprocess_mode) == ("pi3", 18, None, "pi3")
    assert tiny.num_global_layers == 4


def test_output_shapes(raw: dict[str, torch.Tensor]) -> None:
    assert raw["camera_poses"].shape == (1, FRAMES, 4, 4)
    assert raw["local_points"].shape == raw["points"].shape == (1, FRAMES, HEIGHT, WIDTH, 3)
    assert raw["conf"].shape == (1, FRAMES, HEIGHT, WIDTH, 1)
    assert all(t.dtype == torch.float32 for t in raw.values())


def test_poses_are_rigid_and_move_local_points_to_world_points(raw: dict[str, torch.Tensor]) -> None:
    poses = raw["camera_poses"][0].double()
    rotation, translation = poses[:, :3, :3], poses[:, :3, 3]
    torch.testing.assert_close(rotation @ rotation.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(FRAMES, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.det(rotation), torch.ones(FRAMES, dtype=torch.float64), atol=1e-5, rtol=0)
    assert torch.equal(poses[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(FRAMES, 4))
    local = raw["local_points"][0].double()
    world = torch.einsum("sij,shwj->shwi", rotation, local) + translation[:, None, None]
    torch.testing.assert_close(raw["points"][0].double(), world, rtol=1e-5, atol=1e-5)
    assert (local[..., 2] > 0).all()  # z = exp(·)


def test_permuting_frames_permutes_outputs(model: Pi3, images: torch.Tensor, raw: dict[str, torch.Tensor]) -> None:
    """No reference frame: every frame gets the same register tokens, so the order of frames is arbitrary."""
    order = torch.tensor([2, 0, 1])
    permuted = model(images[order])
    for name, value in raw.items():
        torch.testing.assert_close(permuted[name], value[:, order], rtol=1e-4, atol=1e-5, msg=name)


def test_chunking_does_not_change_outputs(images: torch.Tensor, raw: dict[str, torch.Tensor]) -> None:
    chunked = create_model("pi3-tiny", seed=0, head_frames_per_chunk=1, token_chunk_frames=1)
    for name, value in chunked(images).items():
        torch.testing.assert_close(value, raw[name], rtol=1e-5, atol=1e-6, msg=name)


def test_batch_entries_are_independent_sequences(model: Pi3, images: torch.Tensor, raw: dict[str, torch.Tensor]) -> None:
    other = torch.rand(FRAMES, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(2))
    batched = model(torch.stack([other, images]))
    for name, value in raw.items():
        torch.testing.assert_close(batched[name][1:], value, rtol=1e-5, atol=1e-6, msg=name)


class RecordingPlan(DensePlan):
    """Dense attention that records which global layer was asked for, with which layout."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, Layout, tuple[int, ...]]] = []

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout) -> torch.Tensor:
        self.calls.append((layer, layout, tuple(q.shape)))
        return super().attend(layer, q, k, v, layout)


def test_every_global_layer_goes_through_the_plan_once_in_order(model: Pi3, images: torch.Tensor, raw: dict[str, torch.Tensor]) -> None:
    plan = RecordingPlan()
    out = model(images, plan=plan)
    tokens = 5 + 3 * 4
    layout = Layout(frames=FRAMES, tokens_per_frame=tokens, special_tokens=5, grid=(3, 4), reference_frame=None)
    heads, head_dim = PI3_TINY.num_heads, PI3_TINY.embed_dim // PI3_TINY.num_heads
    assert plan.calls == [(layer, layout, (1, heads, FRAMES * tokens, head_dim)) for layer in range(4)]
    torch.testing.assert_close(out["points"], raw["points"])


def test_bad_images_get_one_clear_error(model: Pi3) -> None:
    with pytest.raises(ValueError, match=r"divisible by 14, got 40×56; preprocess with mode 'pi3'"):
        model(torch.rand(2, 3, 40, 56))
    with pytest.raises(ValueError, match=r"pi3 takes images shaped \(S, 3, H, W\)"):
        model(torch.rand(2, 1, 42, 56))


def test_prediction_follows_the_harness_conventions(model: Pi3, raw: dict[str, torch.Tensor]) -> None:
    pred = model.to_prediction(raw)
    poses = raw["camera_poses"][0].double().numpy()
    w2c = np.concatenate([pred.extrinsics, np.tile([[[0.0, 0.0, 0.0, 1.0]]], (FRAMES, 1, 1))], axis=1)
    np.testing.assert_allclose(w2c @ poses, np.tile(np.eye(4), (FRAMES, 1, 1)), atol=1e-6)
    np.testing.assert_array_equal(pred.depth, raw["local_points"][0, ..., 2].numpy())
    confidence = 1 / (1 + np.exp(-raw["conf"][0, ..., 0].double().numpy()))
    np.testing.assert_allclose(pred.depth_conf, confidence, rtol=1e-6)
    np.testing.assert_array_equal(pred.world_points_conf, pred.depth_conf)
    np.testing.assert_array_equal(pred.world_points, raw["points"][0].numpy())
    assert pred.intrinsics.shape == (FRAMES, 3, 3) and pred.intrinsics.dtype == np.float64
    np.testing.assert_array_equal(pred.intrinsics[:, :2, 2], np.tile([(WIDTH - 1) / 2, (HEIGHT - 1) / 2], (FRAMES, 1)))
    assert set(pred.raw) == {"camera_poses", "local_points", "conf"}
    assert pred.raw["conf"].shape == (FRAMES, HEIGHT, WIDTH, 1)


def test_prediction_refuses_a_batch(model: Pi3, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="one sequence, got a batch of 2"):
        model.to_prediction(model(torch.stack([images, images])))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_load_strictly_from_a_file_including_the_normalisation_buffers(tmp_path, images: torch.Tensor, suffix: str) -> None:
    state = {k: v.clone() for k, v in create_model("pi3-tiny", seed=3).state_dict().items()}
    state["image_mean"] = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    path = tmp_path / f"pi3-tiny{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)

    loaded = create_model("pi3-tiny", weights=str(path))
    assert not loaded.weights_info.random and loaded.weights_info.sha256
    assert torch.equal(loaded.image_mean, state["image_mean"])
    reference = create_model("pi3-tiny", seed=3)
    reference.image_mean.copy_(state["image_mean"])
    torch.testing.assert_close(loaded(images)["points"], reference(images)["points"])


def test_a_vggt_checkpoint_is_named_as_such(tmp_path) -> None:
    path = tmp_path / "vggt.pt"
    torch.save(create_model("vggt-tiny").state_dict(), path)
    with pytest.raises(WeightsError, match="looks like a VGGT checkpoint"):
        create_model("pi3-tiny", weights=str(path))


def test_a_checkpoint_without_the_buffers_is_refused(tmp_path) -> None:
    state = create_model("pi3-tiny").state_dict()
    del state["image_std"]
    path = tmp_path / "no-std.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing \(1\): image_std"):
        create_model("pi3-tiny", weights=str(path))


def test_the_released_id_resolves_from_the_local_hugging_face_cache_only(tmp_path, monkeypatch, images: torch.Tensor) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="'yyfz233/Pi3' is not in the local cache"):
        create_model("pi3-tiny", weights="yyfz233/Pi3")

    snapshot = tmp_path / "models--yyfz233--Pi3" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (tmp_path / "models--yyfz233--Pi3" / "refs").mkdir()
    (tmp_path / "models--yyfz233--Pi3" / "refs" / "main").write_text("0" * 40)
    save_file(create_model("pi3-tiny", seed=4).state_dict(), str(snapshot / "model.safetensors"))
    loaded = create_model("pi3-tiny", weights="yyfz233/Pi3")
    assert loaded.weights_info.id == "yyfz233/Pi3"
    torch.testing.assert_close(loaded(images)["conf"], create_model("pi3-tiny", seed=4)(images)["conf"])


def test_heads_stay_float32_under_an_outer_autocast(model: Pi3, images: torch.Tensor) -> None:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images)
    assert all(t.dtype == torch.float32 for t in out.values())


def test_predict_command_writes_the_common_keys_and_pi3_raw_outputs(tmp_path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        Image.fromarray(rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    out = tmp_path / "pred.npz"
    args = ["--model", "pi3-tiny", "--weights", "random", "--device", "cpu", "--images", str(folder), "--out", str(out)]
    result = CliRunner().invoke(predict, args)
    assert result.exit_code == 0, result.output

    saved = np.load(out)
    height, width = pi3_size(30, 40)
    common = {"extrinsic", "intrinsic", "depth", "depth_conf", "world_points", "world_points_conf", "images"}
    assert set(saved.files) == common | {"camera_poses", "local_points", "conf"}
    assert saved["images"].shape == (2, 3, height, width)
    assert saved["camera_poses"].shape == (2, 4, 4) and saved["local_points"].shape == (2, height, width, 3)
    assert saved["conf"].shape == (2, height, width, 1)
    np.testing.assert_allclose(saved["depth_conf"], 1 / (1 + np.exp(-saved["conf"][..., 0].astype(np.float64))), rtol=1e-6)
