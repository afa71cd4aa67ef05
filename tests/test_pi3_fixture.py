"""pi3 against the official model: state_dict keys and shapes, and outputs on the reference fixture.

The fixture holds the official code's outputs for three real photographs with every weight set
by the deterministic fill of FILL.md; our model with the same weights must reproduce them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.pi3 import Pi3
from tests.reference_fill import REFERENCE_DIR, fill_model, reference_keys, relative_error

KEYS = REFERENCE_DIR / "pi3_keys.tsv"
FIXTURE = REFERENCE_DIR / "pi3_fixture.npz"
TOLERANCE = 1e-4


def _meta_model() -> Pi3:
    with torch.device("meta"):
        return Pi3()


def test_state_dict_has_exactly_the_released_keys_and_shapes() -> None:
    ours = {key: tuple(t.shape) for key, t in _meta_model().state_dict().items()}
    released = dict(reference_keys("pi3"))
    assert sorted(set(released) - set(ours)) == []
    assert sorted(set(ours) - set(released)) == []
    assert {k: s for k, s in ours.items() if released[k] != s} == {}
    assert "encoder.mask_token" not in ours and {"image_mean", "image_std"} <= set(ours)


def test_parameter_count_is_the_released_one() -> None:
    assert sum(p.numel() for p in _meta_model().parameters()) == 958_696_732


@pytest.mark.slow
def test_outputs_match_the_official_model_on_the_fixture() -> None:
    fixture = np.load(FIXTURE)
    model = _meta_model()
    fill_model(model)
    model.eval()
    with torch.inference_mode():
        out = model(torch.from_numpy(fixture["images"]))

    assert relative_error(out["camera_poses"], fixture["camera_poses"]) < TOLERANCE
    for name in ("points", "local_points", "conf"):
        assert relative_error(out[name][:, :, ::4, ::4], fixture[f"{name}_stride4"]) < TOLERANCE, name
