"""Point-cloud operations the point-map metrics need: voxel downsampling and PCA normals.

Vectorised numpy/pandas over scipy's cKDTree. Open3D is not used: its wheel brings about 1.6 GB of
dependencies and needs system libraries (libusb) that a plain CI image lacks. The definitions follow
Open3D's: a voxel keeps the mean of its points, a normal is the least-variance direction of the k
nearest neighbours (k = 30 by default there and here; Open3D's plain or a smooth weighting, see
`estimate_normals`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree


class VoxelGrid:
    """Voxel downsampling of a cloud that arrives in chunks: each occupied voxel of edge `voxel_size`
    keeps the mean of its points (as Open3D's ``voxel_down_sample``).

    Every chunk is reduced to (voxel, sum, count) at once and the partial sums are merged at the
    end, so memory follows the number of voxels, not of points. Voxel indices are clipped to
    ±2²⁰ per axis to pack into one int64 key; far outliers share boundary voxels but keep their
    own coordinates in the mean, so they still count as far away. The grid is shifted by an
    irrational fraction of a voxel: surfaces at round coordinates (the walls of a synthetic room)
    would otherwise lie on voxel faces, where two computations of the same point that differ by
    rounding fall into different voxels. A non-positive `voxel_size` keeps every point.
    """

    _BITS = 21
    _OFFSET = 1 << (_BITS - 1)
    _PHASE = 0.3819660112501051  # 2 − golden ratio: far from every simple fraction
    _PARTS = 16  # partial tables kept before merging them (bounds memory on long sequences)

    def __init__(self, voxel_size: float) -> None:
        self.voxel_size = voxel_size
        self._kept: list[np.ndarray] = []  # the points themselves, when not downsampling
        self._keys: list[np.ndarray] = []
        self._sums: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []

    def add(self, points: np.ndarray) -> None:
        """Accumulate finite points (N, 3)."""
        if self.voxel_size <= 0:
            self._kept.append(np.asarray(points, dtype=np.float64))
            return
        scaled = points * (1.0 / self.voxel_size) + self._PHASE
        np.floor(scaled, out=scaled)
        np.clip(scaled, -self._OFFSET, self._OFFSET - 1, out=scaled)
        cells = scaled.astype(np.int64) + self._OFFSET
        keys = (cells[:, 0] << (2 * self._BITS)) | (cells[:, 1] << self._BITS) | cells[:, 2]
        self._merge(keys, points, np.ones(len(points)))
        if len(self._keys) >= self._PARTS:
            self._collapse()

    def _merge(self, keys: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
        codes, uniques = pd.factorize(keys)
        self._keys.append(uniques)
        self._counts.append(np.bincount(codes, weights=counts, minlength=len(uniques)))
        self._sums.append(np.stack([np.bincount(codes, weights=sums[:, axis], minlength=len(uniques)) for axis in range(3)], axis=1))

    def _collapse(self) -> None:
        """Merge the partial sums into one (voxel, sum, count) table."""
        keys, sums, counts = np.concatenate(self._keys), np.concatenate(self._sums), np.concatenate(self._counts)
        self._keys, self._sums, self._counts = [], [], []
        self._merge(keys, sums, counts)

    def points(self) -> np.ndarray:
        """The downsampled cloud (M, 3) of everything added so far."""
        if self.voxel_size <= 0:
            return np.concatenate(self._kept) if self._kept else np.empty((0, 3))
        if not self._sums:
            return np.empty((0, 3))
        self._collapse()
        return self._sums[0] / self._counts[0][:, None]


def voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Mean point of every occupied voxel of edge `voxel_size`: points (N, 3) → (M, 3), M ≤ N."""
    grid = VoxelGrid(voxel_size)
    grid.add(points)
    return grid.points()


LINE_RATIO = 1e-5  # middle / largest covariance eigenvalue below which a neighbourhood is a line


def random_subset(points: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """At most `count` of the points, drawn without replacement by a seeded generator (same input,
    same subset), in their original order; all of them when there are no more than `count`."""
    if len(points) <= count:
        return points
    keep = np.sort(np.random.default_rng(seed).choice(len(points), size=count, replace=False))
    return points[keep]


NORMAL_WEIGHTINGS = ("smooth", "none")


def estimate_normals(
    points: np.ndarray, neighbours: int = 30, tree: cKDTree | None = None, weighting: str = "smooth", chunk: int = 65536
) -> np.ndarray:
    """Unit normals (N, 3): the least-variance direction of each point's k nearest neighbours
    (the point itself included). The sign is arbitrary (normal consistency uses |n·n'|).

    `weighting` ``none`` is Open3D's ``estimate_normals`` (the published protocol): the plain
    covariance of the k neighbours, in float64. ``smooth`` (this project's default) weights
    neighbour j at distance d_j by (1 − (d_j / d_k)²)², which falls smoothly to 0 at the k-th
    distance: unweighted k-NN jumps when rounding reorders near-equal distances at the k-th place,
    so two copies of one cloud that differ by 1e-15 could get visibly different normals at edges;
    with the weights the normal is a continuous function of the points. Smooth normals are solved
    in float32 (the centred patch needs no more), and where the neighbourhood is a line (middle
    eigenvalue ≤ `LINE_RATIO` × largest: a row of voxels on an edge seen end-on) no plane is
    defined and the normal is NaN. Chunks bound memory at chunk·k·3 floats.
    """
    if weighting not in NORMAL_WEIGHTINGS:
        raise ValueError(f"normal weighting {weighting!r} is not one of {NORMAL_WEIGHTINGS}")
    tree = tree if tree is not None else cKDTree(points)
    k = min(neighbours, len(points))
    smooth = weighting == "smooth"
    values_of = np.asarray(points, dtype=np.float32 if smooth else np.float64)
    normals = np.empty((len(points), 3))
    for start in range(0, len(points), chunk):
        distances, index = tree.query(points[start : start + chunk], k=k, workers=-1)
        distances, index = distances.reshape(len(index), k), index.reshape(len(index), k)
        if smooth:
            weights = (1.0 - (distances / np.maximum(distances[:, -1:], 1e-300)) ** 2) ** 2
            weights[weights.sum(axis=1) == 0] = 1.0  # all neighbours at one distance: plain PCA
            weights = weights / weights.sum(axis=1, keepdims=True)
        else:
            weights = np.full(index.shape, 1.0 / k)
        weights = weights.astype(values_of.dtype)
        patch = values_of[index]
        centred = patch - np.einsum("nk,nki->ni", weights, patch)[:, None, :]
        covariance = np.swapaxes(centred * weights[:, :, None], 1, 2) @ centred
        values, vectors = np.linalg.eigh(covariance)
        normals[start : start + chunk] = vectors[:, :, 0]
        if smooth:
            normals[start : start + chunk][values[:, 1] <= LINE_RATIO * values[:, 2]] = np.nan
    return normals / np.linalg.norm(normals, axis=1, keepdims=True)
