"""Point-cloud operations the point-map metrics need: voxel downsampling and PCA normals.

Vectorised numpy/pandas over scipy's cKDTree (Open3D would need a 1.6 GB install and system USB
libraries it cannot find here); the results follow Open3D's definitions: a voxel keeps the mean of
its points, a normal is the least-variance direction of the k nearest neighbours (k = 30 there).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree


def voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Mean point of every occupied voxel of edge `voxel_size`; points (N, 3) → (M, 3), M ≤ N.

    Voxel ids come from hashing (pandas.factorize) one axis pair at a time, so integer keys never
    overflow however far outliers lie. A non-positive `voxel_size` returns the points unchanged.
    """
    if voxel_size <= 0 or len(points) == 0:
        return points
    cells = np.floor(points / voxel_size).astype(np.int64)
    key = pd.factorize(cells[:, 0])[0]
    for axis in (1, 2):
        codes, uniques = pd.factorize(cells[:, axis])
        key = pd.factorize(key * len(uniques) + codes)[0]
    voxels = int(key.max()) + 1
    sizes = np.bincount(key, minlength=voxels).astype(np.float64)
    return np.stack([np.bincount(key, weights=points[:, axis], minlength=voxels) / sizes for axis in range(3)], axis=1)


def estimate_normals(points: np.ndarray, neighbours: int = 30, tree: cKDTree | None = None, chunk: int = 65536) -> np.ndarray:
    """Unit normals (N, 3): eigenvector of the smallest eigenvalue of each point's k-NN covariance.

    The sign is arbitrary (the normal-consistency metrics use |n·n'|). Processed in chunks to
    bound memory at N·k·3 floats per chunk.
    """
    tree = tree if tree is not None else cKDTree(points)
    k = min(neighbours, len(points))
    normals = np.empty_like(points, dtype=np.float64)
    for start in range(0, len(points), chunk):
        _, index = tree.query(points[start : start + chunk], k=k, workers=-1)
        patch = points[index.reshape(len(index), k)]
        centred = patch - patch.mean(axis=1, keepdims=True)
        covariance = np.einsum("nki,nkj->nij", centred, centred)
        _, vectors = np.linalg.eigh(covariance)
        normals[start : start + chunk] = vectors[:, :, 0]
    return normals
