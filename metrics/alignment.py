"""Alignment steps the protocols apply before scoring point maps and trajectories: Umeyama Sim(3), ICP.

Alignment is explicit and separate from the metrics (as in evo): each function returns the fitted
transform, and the metric applies it and records which alignment it used. (Depth alignments are
scalar fits that live with the depth procedure in `metrics.depth`.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from metrics.geometry import transform_points


class DegenerateAlignmentError(ValueError):
    """The data do not determine the transform (too few points, collinear or coincident points)."""


@dataclass(frozen=True)
class Similarity:
    """x ↦ scale · R x + t."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform points (N, 3)."""
        return transform_points(points, self.scale * self.rotation, self.translation)

    def then(self, other: "Similarity") -> "Similarity":
        """The composition: first this transform, then `other`."""
        return Similarity(
            scale=other.scale * self.scale,
            rotation=other.rotation @ self.rotation,
            translation=other.scale * (other.rotation @ self.translation) + other.translation,
        )

    @classmethod
    def identity(cls) -> "Similarity":
        return cls(1.0, np.eye(3), np.zeros(3))


class CorrespondenceMoments:
    """Running first and second moments of corresponding point pairs, for Umeyama on data that
    arrives in chunks (a 1000-frame scene does not fit in memory at once).

    Sums are taken around origins fixed by the first chunk (its means), which keeps the covariance
    free of the cancellation that raw moments suffer far from the world origin.
    """

    def __init__(self) -> None:
        self.count = 0
        self.source_origin = self.target_origin = np.zeros(3)
        self.source_sum, self.target_sum = np.zeros(3), np.zeros(3)
        self.cross = np.zeros((3, 3))  # Σ (target − o_t)(source − o_s)ᵀ
        self.source_square = 0.0  # Σ |source − o_s|²

    def add(self, source: np.ndarray, target: np.ndarray) -> "CorrespondenceMoments":
        """Accumulate corresponding points source (N, 3) → target (N, 3)."""
        source = np.asarray(source, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3:
            raise ValueError(f"Umeyama needs two (N, 3) arrays of corresponding points, got {source.shape} and {target.shape}")
        if len(source) == 0:
            return self
        if self.count == 0:
            self.source_origin, self.target_origin = source.mean(axis=0), target.mean(axis=0)
        source, target = source - self.source_origin, target - self.target_origin
        self.count += len(source)
        ones = np.ones(len(source))
        self.source_sum += ones @ source  # a GEMV: much faster than a strided sum over axis 0
        self.target_sum += ones @ target
        self.cross += target.T @ source
        self.source_square += float(np.einsum("ni,ni->", source, source))
        return self

    def similarity(self, with_scale: bool = True, rank_tol: float = 1e-9) -> Similarity:
        """Least-squares similarity mapping the accumulated source points onto the target points.

        Umeyama (1991): from the SVD U D Vᵀ of the cross-covariance Σ = cov(target, source),
        R = U S Vᵀ with S = diag(1, 1, det(U Vᵀ)) so that R is a proper rotation even when the best
        orthogonal map would be a reflection, scale = tr(D S) / var(source), t = μ_t − scale · R μ_s.
        Raises DegenerateAlignmentError when there are fewer than 3 pairs or Σ has rank < 2
        (relative to its largest singular value): collinear or coincident points leave the rotation
        undetermined.
        """
        if self.count < 3:
            raise DegenerateAlignmentError(f"{self.count} corresponding points; a Sim(3) fit needs at least 3")
        mean_source, mean_target = self.source_sum / self.count, self.target_sum / self.count
        covariance = self.cross / self.count - np.outer(mean_target, mean_source)
        if not np.all(np.isfinite(covariance)):
            raise DegenerateAlignmentError("points are not finite")
        u, d, vt = np.linalg.svd(covariance)
        if d[0] <= 0 or d[1] <= rank_tol * d[0]:
            raise DegenerateAlignmentError("points are collinear or coincident; the rotation is undetermined")
        signs = np.array([1.0, 1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
        rotation = (u * signs) @ vt
        variance = self.source_square / self.count - float(mean_source @ mean_source)
        scale = float(np.sum(d * signs) / variance) if with_scale else 1.0
        centre_source, centre_target = self.source_origin + mean_source, self.target_origin + mean_target
        return Similarity(scale, rotation, centre_target - scale * rotation @ centre_source)


def umeyama(source: np.ndarray, target: np.ndarray, with_scale: bool = True) -> Similarity:
    """Least-squares Sim(3) (or SE(3) without scale) mapping source (N, 3) onto target (N, 3);
    see `CorrespondenceMoments.similarity`."""
    return CorrespondenceMoments().add(source, target).similarity(with_scale)


@dataclass(frozen=True)
class IcpResult:
    """A rigid refinement and how well it registers: the share of source points with a target
    within the threshold (fitness) and the RMSE of those distances (inlier RMSE)."""

    transform: Similarity
    fitness: float
    inlier_rmse: float


def _correspondences(points: np.ndarray, tree: cKDTree, threshold: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(inlier mask, nearest target index, fitness, inlier RMSE) of each point's nearest target within `threshold`."""
    distances, index = tree.query(points, distance_upper_bound=threshold, workers=-1)
    inliers = np.isfinite(distances)
    fitness = float(inliers.mean()) if len(inliers) else 0.0
    rmse = float(np.sqrt(np.mean(distances[inliers] ** 2))) if inliers.any() else 0.0
    return inliers, index, fitness, rmse


def icp_point_to_point(
    source: np.ndarray,
    target: np.ndarray,
    threshold: float,
    max_iterations: int = 30,
    tolerance: float = 1e-6,
    target_tree: cKDTree | None = None,
) -> IcpResult:
    """Rigid transform refining the registration of source (N, 3) onto target (M, 3).

    Open3D's ``registration_icp`` point-to-point loop with its default criteria, step for step:
    pair every source point with its nearest target point closer than `threshold`; then, at most
    `max_iterations` times, fit the rigid Umeyama transform on the pairs, move the source by it,
    pair again, and stop once both the fitness and the inlier RMSE changed by less than
    `tolerance` (absolute, as Open3D compares them). Without pairs the transform stays the identity.
    """
    tree = target_tree if target_tree is not None else cKDTree(target)
    total = Similarity.identity()
    moved = source
    inliers, index, fitness, rmse = _correspondences(moved, tree, threshold)
    for _ in range(max_iterations):
        try:
            step = umeyama(moved[inliers], target[index[inliers]], with_scale=False)
        except DegenerateAlignmentError:
            break
        total = total.then(step)
        moved = step.apply(moved)
        previous = (fitness, rmse)
        inliers, index, fitness, rmse = _correspondences(moved, tree, threshold)
        if abs(previous[0] - fitness) < tolerance and abs(previous[1] - rmse) < tolerance:
            break
    return IcpResult(total, fitness, rmse)
