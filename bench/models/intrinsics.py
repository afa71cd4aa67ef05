"""Pixel intrinsics of a camera recovered from its point map in camera coordinates.

A model that predicts per-pixel points (x, y, z) in each camera's frame (pi3's local points)
implies a pinhole camera: pixel (u, v) sees u = fx·x/z + cx and v = fy·y/z + cy. The principal
point is taken at the image centre, ((W − 1)/2, (H − 1)/2) with pixel centres at integer
coordinates (the harness convention), and each focal length is the confidence-weighted least
squares solution of its axis, in closed form:

    fx = Σ w·a·(u − cx) / Σ w·a²,  a = x/z      (fy alike with b = y/z and v − cy)

Why centred: the training data of these models are centre crops, VGGT's intrinsics make the same
assumption (so both models' intrinsics compare), and two unknowns per frame instead of four are
far less sensitive to the noisy points of low-confidence regions. Pixels with z ≤ 0 or non-finite
rays get weight 0; a frame with no usable pixel gets NaN focal lengths.
"""

from __future__ import annotations

import torch

FRAMES_PER_CHUNK = 16  # bounds the float64 temporaries to a few frames at a time


def intrinsics_from_local_points(local_points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Camera-frame points (S, H, W, 3) and per-pixel weights (S, H, W) → K (S, 3, 3) float64."""
    frames, height, width, _ = local_points.shape
    cx, cy = (width - 1) / 2, (height - 1) / 2
    device = local_points.device
    u = torch.arange(width, device=device, dtype=torch.float64) - cx
    v = torch.arange(height, device=device, dtype=torch.float64)[:, None] - cy
    focals = []
    for start in range(0, frames, FRAMES_PER_CHUNK):
        points = local_points[start : start + FRAMES_PER_CHUNK].double()
        w = weights[start : start + FRAMES_PER_CHUNK].double()
        z = points[..., 2]
        a, b = points[..., 0] / z, points[..., 1] / z
        w = torch.where((z > 0) & a.isfinite() & b.isfinite() & (w > 0), w, 0.0)
        a, b = torch.where(w > 0, a, 0.0), torch.where(w > 0, b, 0.0)
        fx = (w * a * u).sum((1, 2)) / (w * a * a).sum((1, 2))
        fy = (w * b * v).sum((1, 2)) / (w * b * b).sum((1, 2))
        focals.append(torch.stack([fx, fy], dim=-1))
    fx, fy = torch.cat(focals).unbind(-1)
    intrinsics = torch.zeros(frames, 3, 3, dtype=torch.float64, device=device)
    intrinsics[:, 0, 0], intrinsics[:, 1, 1] = fx, fy
    intrinsics[:, 0, 2], intrinsics[:, 1, 2], intrinsics[:, 2, 2] = cx, cy, 1.0
    return intrinsics
