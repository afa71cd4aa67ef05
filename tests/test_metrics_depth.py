import numpy as np
import pytest

from metrics import METRICS, MetricInputError
from tests.metrics_scene import box_room

SCORES = ("abs_rel", "sq_rel", "log_rmse", "delta_1_25", "delta_1_25_2", "delta_1_25_3", "depth_rmse")
ALIGNMENTS = {  # name in these tests → options
    "median_frame": {"align": "median", "per": "frame"},
    "median_sequence": {"align": "median"},
    "least_squares": {"align": "least_squares"},
    "none": {"align": "none"},
}


def depth(pred_depth, gt, **options):
    return METRICS.get("depth")({"depth": pred_depth, "depth_conf": options.pop("conf", None)}, gt, **options)


@pytest.fixture
def gt():
    return box_room(frames=4, height=12, width=16)


def assert_perfect(row):
    assert row["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert row["sq_rel"] == pytest.approx(0.0, abs=1e-12)
    assert row["log_rmse"] == pytest.approx(0.0, abs=1e-12)
    assert row["depth_rmse"] == pytest.approx(0.0, abs=1e-12)
    assert row["delta_1_25"] == row["delta_1_25_2"] == row["delta_1_25_3"] == 1.0


@pytest.mark.parametrize("name", list(ALIGNMENTS))
def test_perfect_prediction(gt, name):
    options = ALIGNMENTS[name]
    row = depth(gt["depth"].copy(), gt, **options)
    assert_perfect(row)
    assert row["depth_align"] == options["align"] and row["depth_per"] == options.get("per", "sequence")
    assert row["depth_conf_filter"] == "none" and row["depth_max_depth"] is None


def test_depth_scaled_by_two_is_perfect_after_median_alignment_only(gt):
    scaled = 2.0 * gt["depth"]
    assert_perfect(depth(scaled, gt, align="median"))
    assert_perfect(depth(scaled, gt, align="median", per="frame"))
    unaligned = depth(scaled, gt, align="none")
    assert unaligned["abs_rel"] == pytest.approx(1.0)
    assert unaligned["delta_1_25"] == unaligned["delta_1_25_2"] == unaligned["delta_1_25_3"] == 0.0  # 2 > 1.25³


def test_scale_and_shift_alignment(gt):
    pred = (gt["depth"] - 0.4) / 3.0
    assert_perfect(depth(pred, gt, align="least_squares"))
    assert depth(pred, gt, align="median")["abs_rel"] > 0.01


def test_per_frame_and_per_sequence_scales_differ(gt):
    pred = gt["depth"] * np.array([2.0, 3.0, 2.0, 3.0])[:, None, None]
    assert_perfect(depth(pred, gt, align="median", per="frame"))
    assert depth(pred, gt, align="median")["abs_rel"] > 0.1


def test_known_perturbation_gives_hand_computed_scores(gt):
    pred = gt["depth"].copy()
    pred[:, :3, :] *= 1.3  # 3 of 12 rows: a quarter of the pixels 30 % too far
    row = depth(pred, gt, align="none")
    assert row["abs_rel"] == pytest.approx(0.25 * 0.3)
    assert row["delta_1_25"] == pytest.approx(0.75)  # 1.3 ≥ 1.25
    assert row["delta_1_25_2"] == row["delta_1_25_3"] == 1.0
    expected_rmse = np.sqrt(np.mean(((pred - gt["depth"]) ** 2)))
    assert row["depth_rmse"] == pytest.approx(expected_rmse)


def test_median_alignment_of_a_perturbation(gt):
    pred = gt["depth"] * 0.5
    pred[0, 0, 0] = 1e6  # one wild pixel moves neither median
    row = depth(pred, gt, align="median")
    n = gt["depth"].size
    assert row["delta_1_25"] == pytest.approx((n - 1) / n)


def test_max_depth_excludes_far_ground_truth(gt):
    pred = gt["depth"].copy()
    far = gt["depth"] >= 1.8
    assert 0 < far.mean() < 1
    pred[far] *= 5
    assert depth(pred, gt, align="none")["abs_rel"] > 0.1
    clipped = depth(pred, gt, align="none", max_depth=1.8)
    assert_perfect(clipped)
    assert clipped["depth_max_depth"] == 1.8


def test_invalid_pixels_are_skipped_and_counted(gt):
    gt = dict(gt, valid=gt["valid"].copy())
    gt["valid"][0] = False  # frame 0 has no GT
    pred = gt["depth"].copy()
    pred[0] = 99.0  # ignored: no GT there
    pred[1, 0, :4] = np.nan
    pred[1, 1, :4] = -1.0
    row = depth(pred, gt, align="median")
    assert_perfect(row)
    assert row["depth_pred_invalid"] == pytest.approx(8 / (3 * 12 * 16))


def test_all_nan_prediction_gives_nan_and_a_note(gt):
    row = depth(np.full_like(gt["depth"], np.nan), gt)
    assert all(np.isnan(row[key]) for key in SCORES)
    assert "no pixel" in row["depth_note"]


def test_confidence_filtering(gt):
    pred = gt["depth"].copy()
    conf = np.ones_like(pred)
    pred[:, :3] *= 1.5
    conf[:, :3] = 0.1  # the bad quarter is the least confident
    top = depth(pred, gt, align="none", conf=conf, conf_top_percent=75)
    assert_perfect(top)
    assert top["depth_conf_filter"] == "top75%"
    above = depth(pred, gt, align="none", conf=conf, conf_threshold=0.5)
    assert_perfect(above)
    assert above["depth_conf_filter"] == "conf>0.5"
    missing = METRICS.get("depth")({"depth": pred}, gt, conf_threshold=0.5)
    assert "depth_conf" in missing["depth_note"]


def test_bad_options_and_shapes_raise_clear_errors(gt):
    with pytest.raises(MetricInputError, match="align"):
        depth(gt["depth"], gt, align="median_sequence")
    with pytest.raises(MetricInputError, match="per"):
        depth(gt["depth"], gt, per="pixel")
    with pytest.raises(MetricInputError, match="not both"):
        depth(gt["depth"], gt, conf_top_percent=50, conf_threshold=1.0)
    with pytest.raises(MetricInputError, match=r"pred\['depth'\]"):
        depth(gt["depth"][..., None], gt)
    with pytest.raises(MetricInputError, match=r"gt\['depth'\]"):
        depth(gt["depth"], {"extrinsics": gt["extrinsics"]})


def test_model_without_depth_is_noted(gt):
    row = METRICS.get("depth")({"extrinsics": gt["extrinsics"]}, gt)
    assert np.isnan(row["abs_rel"]) and "'depth'" in row["depth_note"]


def test_fitted_scales_and_shifts_in_closed_form(gt):
    truth = gt["depth"]
    least_squares = depth((truth - 0.3) / 1.7, gt, align="least_squares")
    assert least_squares["depth_fit_scale"] == pytest.approx(1.7) and least_squares["depth_fit_shift"] == pytest.approx(0.3)
    assert depth(truth / 2.5, gt, align="median")["depth_fit_scale"] == pytest.approx(2.5)
    weiszfeld = depth(truth / 2.5, gt, align="weiszfeld_scale")
    assert weiszfeld["depth_fit_scale"] == pytest.approx(2.5) and weiszfeld["abs_rel"] == pytest.approx(0.0, abs=1e-9)


def test_lower_median_takes_the_lower_middle_value():
    # GT 1, 2, 3, 4 and a prediction of ones: numpy's median is 2.5, the lower median 2.
    extrinsics = np.tile(np.eye(3, 4), (1, 1, 1))
    gt = {"extrinsics": extrinsics, "depth": np.array([[[1.0, 2.0, 3.0, 4.0]]])}
    pred = {"depth": np.ones((1, 1, 4))}
    assert METRICS.get("depth")(pred, gt)["depth_fit_scale"] == 2.5
    assert METRICS.get("depth")(pred, gt, median_rule="lower")["depth_fit_scale"] == 2.0


def test_per_frame_scores_are_weighted_by_valid_pixels_and_kept_raw(gt):
    gt = dict(gt, valid=gt["valid"].copy())
    gt["valid"][0, :6] = False  # frame 0 keeps half its pixels
    pred = gt["depth"].copy()
    pred[0] *= 1.5  # only frame 0 is wrong, after no alignment
    row = depth(pred, gt, align="none", per="frame")
    counts = gt["valid"].reshape(4, -1).sum(axis=1)
    np.testing.assert_array_equal(row["frame_valid_pixels"], counts)
    np.testing.assert_allclose(row["frame_abs_rel"], [0.5, 0, 0, 0], atol=1e-12)
    assert row["abs_rel"] == pytest.approx(0.5 * counts[0] / counts.sum())


def test_kept_invalid_predictions_score_as_published(gt):
    pred = gt["depth"].copy()
    pred[0, 0, 0] = 0.0
    kept = depth(pred, gt, align="none", invalid_pred="keep")
    n = gt["depth"].size
    assert kept["abs_rel"] == pytest.approx(1.0 / n)  # a zero prediction scores 1 in AbsRel
    assert kept["delta_1_25"] == pytest.approx((n - 1) / n)
    assert_perfect(depth(pred, gt, align="none"))  # dropped by default
    pred[0, 0, 1] = np.nan
    nan_kept = depth(pred, gt, align="none", invalid_pred="keep")
    assert np.isnan(nan_kept["abs_rel"]) and nan_kept["delta_1_25"] == pytest.approx((n - 2) / n)
