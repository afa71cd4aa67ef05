"""VGGT-1B against the official model: keys and shapes of the released checkpoint, and outputs of
the official code on fixed images with deterministically filled weights (tests/data/reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.pose_encoding import pose_encoding_to_extri_intri
from bench.models.vggt import VGGT
from tests.reference_fill import REFERENCE_DIR, fill_model, reference_keys, relative_error

FIXTURE = REFERENCE_DIR / "vggt_fixture.npz"
TOLERANCE = 1e-4


def test_state_dict_keys_and_shapes_are_the_released_ones_without_track_head():
    with torch.device("meta"):
        model = VGGT()
    ours = [(key, tuple(t.shape)) for key, t in model.state_dict().items()]
    released = [(key, shape) for key, shape in reference_keys("vggt") if not key.startswith("track_head.")]
    assert ours == released


@pytest.fixture(scope="module")
def official_run():
    """Our VGGT-1B with the fixture's weights, run on the fixture's images in float32 on the CPU."""
    reference = dict(np.load(FIXTURE))
    with torch.device("meta"):
        model = VGGT()
    fill_model(model)
    model.eval()
    captured: dict[int, torch.Tensor] = {}
    model.aggregator.register_forward_hook(lambda module, args, out: captured.update(out))
    with torch.inference_mode():
        outputs = model(torch.from_numpy(reference["images"]))
    return reference, outputs, captured


@pytest.mark.slow
def test_pose_encoding_matches_official(official_run):
    reference, outputs, _ = official_run
    assert relative_error(outputs["pose_enc"], reference["pose_enc"]) < TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("name", ["depth", "depth_conf", "world_points", "world_points_conf"])
def test_dense_outputs_match_official(official_run, name):
    reference, outputs, _ = official_run
    assert relative_error(outputs[name][:, :, ::4, ::4], reference[f"{name}_stride4"]) < TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("layer", [4, 23])
def test_aggregator_tokens_match_official(official_run, layer):
    reference, _, captured = official_run
    assert int(reference["patch_start_idx"]) == 5
    ours = captured[layer][0, 1, :64]  # batch 0, frame 1, first 64 tokens, frame ‖ global channels
    assert relative_error(ours, reference[f"aggregator_layer{layer}_frame1_tokens64"]) < TOLERANCE


def test_pose_encoding_conversion_matches_official():
    reference = np.load(FIXTURE)
    extrinsics, intrinsics = pose_encoding_to_extri_intri(torch.from_numpy(reference["conv_pose_enc"]), (294, 518))
    assert relative_error(extrinsics, reference["conv_extrinsic"]) < TOLERANCE
    assert relative_error(intrinsics, reference["conv_intrinsic"]) < TOLERANCE
