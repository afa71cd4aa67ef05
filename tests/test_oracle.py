"""The oracle model: ground truth back when noise is 0, seeded noise of the asked size otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from bench.models import create_model
from datasets_adapters import DATASETS, Sampling
from metrics.geometry import camera_centres, unproject_depth


@pytest.fixture(scope="module")
def seq():
    return DATASETS.get("synthetic")(length=20, height=24, width=32).load("orbit", 6, Sampling())


def predict(seq, **options):
    model = create_model("oracle", "none", **options)
    return model.to_prediction(model.run(torch.from_numpy(seq.images), None, seq))


def test_noise_free_oracle_returns_the_ground_truth(seq):
    pred = predict(seq)
    assert np.array_equal(pred.extrinsics, seq.extrinsics)
    assert np.array_equal(pred.intrinsics, seq.intrinsics)
    assert np.array_equal(pred.depth, seq.depth)
    points = unproject_depth(seq.depth, seq.intrinsics, seq.extrinsics)
    assert np.allclose(pred.world_points[seq.valid], points[seq.valid])


def test_rotation_noise_has_the_asked_size(seq):
    pred = predict(seq, rotation_noise_deg=2.0)
    rel = pred.extrinsics[:, :, :3] @ np.transpose(seq.extrinsics[:, :, :3], (0, 2, 1))
    angles = np.degrees(Rotation.from_matrix(rel).magnitude())
    # each rotation-vector component ~ N(0, 2°): the angle is 2° × a chi(3) variable
    assert 0.2 < angles.mean() / 2.0 < 3.0
    assert np.allclose(camera_centres(pred.extrinsics), camera_centres(seq.extrinsics))  # positions untouched


def test_translation_and_depth_noise(seq):
    pred = predict(seq, translation_noise=0.1, depth_noise=0.05)
    shift = np.linalg.norm(camera_centres(pred.extrinsics) - camera_centres(seq.extrinsics), axis=1)
    assert (shift > 0).all() and shift.mean() < 0.5
    ratio = np.log(pred.depth[seq.valid] / seq.depth[seq.valid])
    assert ratio.std() == pytest.approx(0.05, rel=0.05)
    assert (pred.depth[~seq.valid] == 0).all()


def test_noise_is_seeded(seq):
    a, b, c = predict(seq, depth_noise=0.1), predict(seq, depth_noise=0.1), predict(seq, depth_noise=0.1, seed=3)
    assert np.array_equal(a.depth, b.depth) and not np.array_equal(a.depth, c.depth)


def test_oracle_contract_and_errors(seq):
    model = create_model("oracle", "random")
    assert (model.family, model.num_global_layers, model.preprocess_mode) == ("oracle", 0, None)
    assert model.weights_info.as_row() == {"weights": "none", "weights_sha256": None, "weights_random": False}
    with pytest.raises(ValueError, match="no weights"):
        create_model("oracle", "facebook/VGGT-1B")
    with pytest.raises(ValueError, match="depth_noise must be >= 0"):
        create_model("oracle", depth_noise=-1.0)
    with pytest.raises(ValueError, match="pass the sequence"):
        model.run(torch.from_numpy(seq.images))
