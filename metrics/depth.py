"""Depth accuracy: AbsRel, SqRel, RMSE, log RMSE and δ < 1.25ᵏ after a selectable alignment.

One evaluation call scores a set of pixels: a whole sequence (`per: sequence`, video depth: one
alignment for all frames) or each frame alone (`per: frame`, monocular depth; the row then holds
the frames' scores weighted by their valid pixels, and the per-frame scores are kept as raw arrays
so a protocol can weight frames across sequences).

Alignments (`align`):

- ``median``: s = median(gt) / median(pred); `median_rule` ``middle_mean`` averages the two middle
  values of an even count (numpy), ``lower`` takes the lower one (torch, the published rule);
- ``least_squares``: scale and shift minimising the squared error (this project's own);
- ``l1_adam``: the published scale&shift: Σ|s·p + t − g| minimised by torch's Adam from
  (s, t) = (the lower-median ratio, 0) at learning rate `adam_lr`, at most 1000 steps, stopping
  after the first step whose loss changed by less than 1e-6 (it rarely converges: the fixed
  schedule is the procedure);
- ``weiszfeld_scale``: the published scale: s = mean(g)/mean(p), then ten reweighted steps
  s = Σwpg / Σwp² with w = 1/(|s·p − g| + 1e-8), then s ≥ 0.001;
- ``none``: metric depth.

Pixels: GT valid (finite, > 0, in ``gt['valid']``, below `max_depth`); `invalid_pred` ``drop``
(this project's default) also leaves out pixels whose prediction is not finite and positive and
records their share as ``depth_pred_invalid``, ``keep`` (the published rule) scores predictions as
they are: a NaN prediction makes AbsRel and RMSE NaN and fails δ, a zero scores 1 in AbsRel. After
alignment, `post_clip` caps predictions (Sintel's 70); log RMSE and δ use max(p, 1e-5).
`precision` ``float32`` computes in float32 like the published evaluation on float32 inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metrics.confidence import ConfidenceFilter
from metrics.inputs import MetricInputError, MetricRow, MetricUnavailable, check_choice, compute_or_note, ground_truth, num_frames, prediction, valid_depth
from metrics.registry import diagnostic, higher, lower, option, raw, register_metric

ALIGNMENTS = ("median", "least_squares", "l1_adam", "weiszfeld_scale", "none")
PER = ("sequence", "frame")
MEDIAN_RULES = ("middle_mean", "lower")
INVALID_PRED = ("drop", "keep")
PRECISIONS = {"float64": torch.float64, "float32": torch.float32}
SCORES = ("abs_rel", "sq_rel", "depth_rmse", "log_rmse", "delta_1_25", "delta_1_25_2", "delta_1_25_3")
FITS = ("depth_fit_scale", "depth_fit_shift", "depth_adam_steps")
LOG_FLOOR = 1e-5  # predictions are raised to this before log RMSE and δ
ADAM_STEPS, ADAM_STOP = 1000, 1e-6
WEISZFELD_STEPS, WEISZFELD_EPS, MIN_SCALE = 10, 1e-8, 1e-3


@dataclass(frozen=True)
class DepthProcedure:
    """How one evaluation call aligns and scores its pixels (the metric's options, validated)."""

    align: str = "median"
    median_rule: str = "middle_mean"
    post_clip: float | None = None
    adam_lr: float = 1e-4
    precision: str = "float64"

    def __post_init__(self) -> None:
        check_choice(self.align, ALIGNMENTS, "align")
        check_choice(self.median_rule, MEDIAN_RULES, "median_rule")
        check_choice(self.precision, PRECISIONS, "precision")
        if not self.adam_lr > 0:
            raise MetricInputError(f"option adam_lr={self.adam_lr!r} must be > 0")

    def median(self, values: torch.Tensor) -> torch.Tensor:
        if self.median_rule == "lower":
            return torch.median(values)  # the lower middle value; NaN if any value is NaN
        return torch.as_tensor(np.median(values.numpy()), dtype=values.dtype)

    def fit(self, pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The aligned prediction and the fitted parameters (depth_fit_scale, _shift, depth_adam_steps)."""
        if self.align == "none":
            return pred, {}
        if self.align == "median":
            scale = self.median(gt) / self.median(pred)
            return scale * pred, {"depth_fit_scale": scale.item()}
        if self.align == "least_squares":
            design = torch.stack([pred, torch.ones_like(pred)], dim=1)
            scale, shift = torch.linalg.lstsq(design, gt[:, None]).solution[:, 0]
            return scale * pred + shift, {"depth_fit_scale": scale.item(), "depth_fit_shift": shift.item()}
        if self.align == "weiszfeld_scale":
            scale = torch.nanmean(gt) / torch.nanmean(pred)
            for _ in range(WEISZFELD_STEPS):
                weight = 1.0 / (torch.abs(scale * pred - gt) + WEISZFELD_EPS)
                scale = torch.sum(weight * pred * gt) / torch.sum(weight * pred * pred)
            scale = torch.clamp(scale, min=MIN_SCALE)
            return scale * pred, {"depth_fit_scale": scale.item()}
        return self._l1_adam(pred, gt)

    def _l1_adam(self, pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        scale = (torch.median(gt) / torch.median(pred)).detach().clone().requires_grad_(True)
        shift = torch.zeros((), dtype=pred.dtype, requires_grad=True)
        optimizer = torch.optim.Adam([scale, shift], lr=self.adam_lr)
        previous, steps = None, 0
        with torch.enable_grad():
            for steps in range(1, ADAM_STEPS + 1):
                optimizer.zero_grad()
                loss = torch.sum(torch.abs(scale * pred + shift - gt))
                loss.backward()
                optimizer.step()
                if previous is not None and abs(previous - loss.item()) < ADAM_STOP:
                    break
                previous = loss.item()
        scale, shift = scale.detach(), shift.detach()
        return scale * pred + shift, {"depth_fit_scale": scale.item(), "depth_fit_shift": shift.item(), "depth_adam_steps": float(steps)}

    def evaluate(self, pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        """Scores and fitted parameters of corresponding pixels (1-D arrays, at least one)."""
        dtype = PRECISIONS[self.precision]
        p, g = torch.from_numpy(np.asarray(pred)).to(dtype), torch.from_numpy(np.asarray(gt)).to(dtype)
        with torch.no_grad():
            p, fitted = self.fit(p, g)
            if self.post_clip is not None:
                p = torch.clamp(p, max=self.post_clip)
            error = p - g
            scores = {
                "abs_rel": torch.mean(torch.abs(error) / g).item(),
                "sq_rel": torch.mean(error**2 / g).item(),
                "depth_rmse": torch.sqrt(torch.mean(error**2)).item(),
            }
            p = torch.clamp(p, min=LOG_FLOOR)
            scores["log_rmse"] = torch.sqrt(torch.mean((torch.log(p) - torch.log(g)) ** 2)).item()
            ratio = torch.maximum(p / g, g / p)
            for key, power in (("delta_1_25", 1), ("delta_1_25_2", 2), ("delta_1_25_3", 3)):
                scores[key] = torch.mean((ratio < 1.25**power).to(dtype)).item()
        return scores | fitted


def _weighted(per_frame: list[dict[str, float]], weights: np.ndarray) -> dict[str, float]:
    """The frames' scores averaged with their valid-pixel counts as weights."""
    return {key: float(np.sum([f[key] * w for f, w in zip(per_frame, weights)]) / weights.sum()) for key in SCORES}


@register_metric(
    "depth",
    version=2,
    keys=(
        lower("abs_rel", "mean |p − g| / g"),
        lower("sq_rel", "mean (p − g)² / g"),
        lower("depth_rmse", "root mean squared error, GT units"),
        lower("log_rmse", "RMSE of log depth"),
        higher("delta_1_25", "fraction of pixels with max(p/g, g/p) < 1.25"),
        higher("delta_1_25_2", "the same below 1.25²"),
        higher("delta_1_25_3", "the same below 1.25³"),
        lower("depth_pred_invalid", "share of GT-valid pixels whose prediction is not finite and positive"),
        diagnostic("depth_valid_pixels", "pixels scored (the weight of this row in published aggregates)", aggregate="sum"),
        diagnostic("depth_fit_scale"),
        diagnostic("depth_fit_shift"),
        diagnostic("depth_adam_steps"),
        *(option(f"depth_{name}") for name in ("align", "per", "median_rule", "invalid_pred", "post_clip", "max_depth", "precision", "conf_filter")),
        *(raw(f"frame_{key}") for key in (*SCORES, "valid_pixels")),
    ),
    help="depth AbsRel, SqRel, RMSE, log RMSE, δ < 1.25ᵏ after median, scale&shift or Weiszfeld alignment",
)
def depth_metrics(
    pred: Mapping[str, Any],
    gt: Mapping[str, Any],
    align: str = "median",
    per: str = "sequence",
    median_rule: str = "middle_mean",
    invalid_pred: str = "drop",
    post_clip: float | None = None,
    max_depth: float | None = None,
    adam_lr: float = 1e-4,
    precision: str = "float64",
    conf_top_percent: float | None = None,
    conf_threshold: float | None = None,
) -> MetricRow:
    """Depth scores of the predicted depth against the GT depth; see the module doc for the options."""
    procedure = DepthProcedure(align, median_rule, post_clip, adam_lr, precision)
    check_choice(per, PER, "per")
    check_choice(invalid_pred, INVALID_PRED, "invalid_pred")
    confidence_filter = ConfidenceFilter(conf_top_percent, conf_threshold)
    frames = num_frames(gt)
    gt_depth = ground_truth(gt, "depth", (frames, None, None))
    size = gt_depth.shape

    def compute() -> dict[str, Any]:
        pred_depth = prediction(pred, "depth", size)
        gt_valid = valid_depth(gt, gt_depth)
        if max_depth is not None:
            gt_valid &= gt_depth < max_depth
        with np.errstate(invalid="ignore"):
            pred_ok = np.isfinite(pred_depth) & (pred_depth > 0)
        usable = gt_valid & pred_ok if invalid_pred == "drop" else gt_valid
        if confidence_filter.active:
            usable = confidence_filter.keep(prediction(pred, "depth_conf", size), usable)
        if not usable.any():
            raise MetricUnavailable("no pixel is valid in both the ground truth and the prediction")
        row: dict[str, Any] = {"depth_pred_invalid": float(1.0 - pred_ok[gt_valid].mean()), "depth_valid_pixels": float(usable.sum())}
        if per == "sequence":
            return row | procedure.evaluate(pred_depth[usable], gt_depth[usable])
        counts = usable.reshape(frames, -1).sum(axis=1)
        scored = [procedure.evaluate(pred_depth[f][usable[f]], gt_depth[f][usable[f]]) if counts[f] else dict.fromkeys(SCORES, np.nan) for f in range(frames)]
        row |= _weighted([scored[f] for f in np.flatnonzero(counts)], counts[counts > 0])
        return row | {f"frame_{key}": np.array([s[key] for s in scored]) for key in SCORES} | {"frame_valid_pixels": counts}

    options = {
        "depth_align": align, "depth_per": per, "depth_median_rule": median_rule, "depth_invalid_pred": invalid_pred,
        "depth_post_clip": post_clip, "depth_max_depth": max_depth, "depth_precision": precision, "depth_conf_filter": confidence_filter.label,
    }  # fmt: skip
    return compute_or_note("depth", (*SCORES, "depth_pred_invalid"), compute) | options
