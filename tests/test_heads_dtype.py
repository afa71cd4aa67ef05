"""Model option `heads_dtype` of VGGT and π³: the default is the released float32 heads bit for
bit, bf16 heads differ from them by a few bf16 roundings, a bad value is one clear error, and every
row records the heads' precision."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_suite, write_suite

from bench.models import create_model
from bench.registry import OptionError
from bench.suite import SuiteError, load_suite
from datasets_adapters.synthetic import SyntheticScenes
from scripts.heads_precision import differences

MODELS = ("vggt-tiny", "pi3-tiny")
BF16_UNIT = 2.0**-8  # bf16 keeps 8 significant bits: one rounding moves a value by at most half of this


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    scenes = SyntheticScenes(length=3, height=98, width=126)
    return torch.from_numpy(scenes.load_frames("orbit", scenes.frame_ids("orbit")).images)


def forward(name: str, images: torch.Tensor, **options) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        return create_model(name, seed=0, **options)(images)


@pytest.mark.parametrize("name", MODELS)
def test_the_default_is_float32_heads_bit_for_bit(name, images):
    omitted, explicit = forward(name, images), forward(name, images, heads_dtype="float32")
    assert omitted.keys() == explicit.keys() and all(torch.equal(omitted[k], explicit[k]) for k in omitted)
    assert all(t.dtype == torch.float32 for t in omitted.values())


@pytest.mark.parametrize("name", MODELS)
def test_bf16_heads_move_depth_points_and_cameras_by_a_few_bf16_roundings(name, images):
    """The heads are a few layers deep, each rounding by at most 2⁻⁹ relative: the mean relative
    change of depth and points stays within 2 units of 2⁻⁸, the largest within 8, and no camera
    turns by 2° (measured here: mean ≤ 0.8 units, largest ≤ 2.1, turns ≤ 0.9°). A value computed
    in the wrong precision or place would be off by orders of magnitude more; no change at all
    means the option did nothing."""
    model = create_model(name, seed=0)
    reference = model.to_prediction(forward(name, images))
    changed = differences(reference, model.to_prediction(forward(name, images, heads_dtype="bfloat16")))
    for output in ("depth", "world_points"):
        assert 0 < changed[output]["mean_rel"] < 2 * BF16_UNIT, (output, changed[output])
        assert changed[output]["max_rel"] < 8 * BF16_UNIT, (output, changed[output])
    assert 0 < changed["rotation_deg"]["max_abs"] < 2.0


def test_a_bad_value_is_one_error_naming_the_option_and_its_values(tmp_path, fake_metrics):
    expected = "heads_dtype: expected one of 'float32', 'bfloat16', got 'fp16'"
    with pytest.raises(OptionError, match=f"option {expected}"):
        create_model("pi3-tiny", heads_dtype="fp16")
    suite = write_suite(tmp_path, tiny_suite(models=[{"name": "vggt-tiny", "options": {"heads_dtype": "fp16"}}]))
    with pytest.raises(SuiteError, match=f"{suite}: models\\[0\\].options.{expected}"):
        load_suite(suite)


def test_rows_record_the_heads_precision_where_the_suite_leaves_it_out(tmp_path, fake_metrics):
    models = [{"name": "vggt-tiny"}, {"name": "pi3-tiny", "options": {"heads_dtype": "bfloat16"}}]
    specs = load_suite(write_suite(tmp_path, tiny_suite(models=models))).models
    assert [spec.resolved_options["heads_dtype"] for spec in specs] == ["float32", "bfloat16"]
    assert specs[0].options == {}  # the identity keeps the options as written
