"""Confidence filtering of predicted pixels, an option of the depth and point-map metrics.

Either keep the `top_percent` % most confident of the candidate pixels, or those with confidence
above `threshold`; the label is recorded in the result row so filtered and unfiltered numbers are
never confused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metrics.inputs import MetricInputError


@dataclass(frozen=True)
class ConfidenceFilter:
    top_percent: float | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.top_percent is not None and self.threshold is not None:
            raise MetricInputError("give conf_top_percent or conf_threshold, not both")
        if self.top_percent is not None and not 0 < self.top_percent <= 100:
            raise MetricInputError(f"conf_top_percent={self.top_percent} must be in (0, 100]")

    @property
    def active(self) -> bool:
        return self.top_percent is not None or self.threshold is not None

    @property
    def label(self) -> str:
        """How the row was filtered: ``none``, ``top30%`` or ``conf>1.5``."""
        if self.top_percent is not None:
            return f"top{self.top_percent:g}%"
        if self.threshold is not None:
            return f"conf>{self.threshold:g}"
        return "none"

    def keep(self, confidence: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Boolean mask: the candidates (bool, same shape as `confidence`) that pass the filter.

        Top-k % keeps candidates at or above the (100 − k)th percentile of the candidates'
        confidence (ties at the cut are all kept); non-finite confidences never pass.
        """
        if not self.active:
            return candidates
        candidates = candidates & np.isfinite(confidence)
        if self.threshold is not None:
            return candidates & (confidence > self.threshold)
        if not candidates.any():
            return candidates
        cut = np.percentile(confidence[candidates], 100.0 - self.top_percent)
        return candidates & (confidence >= cut)
