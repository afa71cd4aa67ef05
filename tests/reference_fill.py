"""The deterministic weights behind the reference fixtures (tests/data/reference/FILL.md), and where they live.

The fixtures were made by the official code with every state_dict entry set by a function of its
key and shape only; giving our model the same values must reproduce the official outputs.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn


REFERENCE_DIR = Path(__file__).parent / "data" / "reference"  # the official models' key lists and fixtures, part of the tests


def fill_value(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """FILL.md: a float64 normal seeded by crc32(key), scaled by the entry's role, cast to float32."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    z = torch.randn(*shape, generator=generator, dtype=torch.float64)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "weight" and len(shape) >= 2:
        z = z / math.sqrt(math.prod(shape[1:]))
    elif leaf == "weight":
        z = 1 + 0.1 * z
    else:
        z = z * {"bias": 0.02, "gamma": 0.3}.get(leaf, 0.5)
    return z.float()


def fill_model(model: nn.Module) -> None:
    """Give every state_dict entry of `model` (possibly built on the meta device) its fill value."""
    state = {key: fill_value(key, tuple(t.shape)) for key, t in model.state_dict().items()}
    model.load_state_dict(state, strict=True, assign=True)


def reference_keys(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) rows of `<name>_keys.tsv`, in the official state_dict order."""
    rows = [line.split("\t") for line in (REFERENCE_DIR / f"{name}_keys.tsv").read_text().splitlines()[1:]]
    return [(key, tuple(int(d) for d in shape.split("x"))) for key, shape, _dtype in rows]


def relative_error(ours: np.ndarray | torch.Tensor, reference: np.ndarray) -> float:
    """‖ours − reference‖ / ‖reference‖, in float64."""
    a = np.asarray(ours.detach().cpu() if isinstance(ours, torch.Tensor) else ours, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != reference {b.shape}"
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
