"""How per-scene values become one table number: the published aggregations.

A protocol scores each scene (sequence) in its own row; a paper's table then pools or weights them
in a way that changes the number, so each rule is written once here and named by the protocols:

- `pooled_pose_scores`: pose errors of all pairs of all scenes pooled before RRA/RTA/AUC (π³);
- `pooled_auc_by_group`: pooled within each group (CO3D category), AUC per group, then the
  unweighted mean over groups that have pairs (VGGT);
- `weighted_mean`: a mean weighted by counts (valid pixels: π³'s video and monocular depth);
- `finite_mean`: the plain mean over the scenes that were scored (NaN rows, skipped by the
  published evaluation, left out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from metrics.pose import pose_auc, pose_scores


def pooled_pose_scores(rotation_errors: Iterable[np.ndarray], translation_errors: Iterable[np.ndarray], thresholds: Sequence[int]) -> dict[str, float]:
    """RRA@τ, RTA@τ, AUC@τ (fractions) over all pairs of all scenes together."""
    return pose_scores(np.concatenate(list(rotation_errors)), np.concatenate(list(translation_errors)), thresholds)


def pooled_auc_by_group(
    groups: Iterable[str], rotation_errors: Iterable[np.ndarray], translation_errors: Iterable[np.ndarray], thresholds: Sequence[int]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(mean over groups of AUC@τ, AUC@τ of each group), fractions; each group pools its scenes' pairs."""
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for group, rotation, translation in zip(groups, rotation_errors, translation_errors):
        entry = pooled.setdefault(group, ([], []))
        entry[0].append(rotation)
        entry[1].append(translation)
    per_group = {}
    for group, (rotations, translations) in pooled.items():
        rotation, translation = np.concatenate(rotations), np.concatenate(translations)
        if len(rotation):
            per_group[group] = {f"auc{t}": pose_auc(rotation, translation, t) for t in thresholds}
    mean = {f"auc{t}": float(np.mean([g[f"auc{t}"] for g in per_group.values()])) if per_group else float("nan") for t in thresholds}
    return mean, per_group


def weighted_mean(values: Sequence[Mapping[str, float]], weights: Sequence[float], keys: Sequence[str]) -> dict[str, float]:
    """Σ wᵢ·vᵢ / Σ wᵢ for each key over entries with a positive weight (NaN when none has one)."""
    weights = np.asarray(weights, dtype=np.float64)
    used = np.flatnonzero(weights > 0)
    if not len(used):
        return dict.fromkeys(keys, float("nan"))
    return {key: float(np.sum([values[i][key] * weights[i] for i in used]) / weights[used].sum()) for key in keys}


def finite_mean(values: Sequence[Mapping[str, float]], keys: Sequence[str]) -> tuple[dict[str, float], int]:
    """(the mean of each key over the entries whose keys are all finite, how many those are)."""
    scored = [v for v in values if all(np.isfinite(v.get(key, np.nan)) for key in keys)]
    return {key: float(np.mean([v[key] for v in scored])) if scored else float("nan") for key in keys}, len(scored)
