"""pi3's camera head: one camera-to-world pose per frame from that frame's decoded patch tokens.

Residual MLPs act on each token, an average over the patches pools the frame, two more MLP
layers follow, and two linear maps give the translation (3) and a 3×3 matrix (9) that is
projected onto the nearest rotation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ResidualMlp(nn.Module):
    """x + relu(fc3(relu(fc2(relu(fc1(x)))))); the layers keep the checkpoint's `res_conv*` names."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.res_conv1 = nn.Linear(dim, dim)
        self.res_conv2 = nn.Linear(dim, dim)
        self.res_conv3 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.res_conv1(x))
        y = F.relu(self.res_conv2(y))
        return x + F.relu(self.res_conv3(y))


class Pi3CameraHead(nn.Module):
    def __init__(self, dim: int = 512, num_residual: int = 2) -> None:
        super().__init__()
        self.res_conv = nn.ModuleList(_ResidualMlp(dim) for _ in range(num_residual))
        self.more_mlps = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())
        self.fc_t = nn.Linear(dim, 3)
        self.fc_rot = nn.Linear(dim, 9)

    def forward(self, patch_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, h·w, dim) → translation (N, 3) and the unconstrained rotation matrix (N, 3, 3).

        The rotation still needs `nearest_rotation`, which synchronises with the host on CUDA,
        so the caller runs it once after every frame's head work is queued.
        """
        x = patch_tokens
        for block in self.res_conv:
            x = block(x)
        x = self.more_mlps(x.mean(dim=1))
        return self.fc_t(x), self.fc_rot(x).unflatten(-1, (3, 3))


def nearest_rotation(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) → the rotation closest in Frobenius norm to `matrix` with unit-normalised rows.

    With matrix = U S Vᵀ, that is U diag(1, 1, det(U Vᵀ)) Vᵀ: the sign flip keeps det = +1.
    """
    u, _, vh = torch.linalg.svd(F.normalize(matrix, dim=-1))
    flip = torch.ones_like(matrix[..., 0])
    flip[..., 2] = torch.det(u @ vh)
    return (u * flip[..., None, :]) @ vh
