"""The protocol parity vectors (tests/data/protocols/, computed by the official evaluation code; see
the README there): loading them, and the tolerance rules their README gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

VECTORS = Path(__file__).parent / "data" / "protocols"
FILES = (
    "vggt_relpose.npz", "pi3_relpose.npz", "co3d_e2e.npz", "re10k_e2e.npz", "seqid_maps.npz",
    "evo_trajectory.npz", "depth.npz", "pointmap.npz", "aggregation.npz",
)  # fmt: skip


def load(name: str) -> dict[str, np.ndarray]:
    """Every array of a vector file (a missing file fails: the vectors are part of the tests)."""
    path = VECTORS / name
    assert path.is_file(), f"{path} is missing: the protocol vectors are test data of this project"
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def case(data: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """The fields of one case: ``<case>__<field>`` → ``<field>``."""
    prefix = f"{name}__"
    return {key[len(prefix) :]: value for key, value in data.items() if key.startswith(prefix)}


def options(value: np.ndarray) -> dict:
    return json.loads(str(value))


class Worst:
    """Collects |a − b| / |b| over every compared value, for the closing report of each protocol."""

    def __init__(self) -> None:
        self.count, self.largest = 0, 0.0

    def check(self, got, expected, rel: float = 1e-6, abs_: float = 0.0, what: str = "") -> None:
        got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
        assert got.shape == expected.shape, (what, got.shape, expected.shape)
        both_nan = np.isnan(got) & np.isnan(expected)
        assert (np.isnan(got) == np.isnan(expected)).all(), f"{what}: NaN where the vector has none, or the reverse"
        difference = np.abs(got - expected)[~both_nan]
        scale = np.abs(expected)[~both_nan]
        ok = difference <= np.maximum(rel * scale, abs_)
        assert ok.all(), f"{what}: {got[~both_nan][~ok][:5]} != {expected[~both_nan][~ok][:5]} (rel {rel}, abs {abs_})"
        self.count += got.size
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(scale > 0, difference / scale, difference)
        self.largest = max(self.largest, float(relative.max(initial=0.0)))


PARITY: dict[str, Worst] = {}


def tally(protocol: str) -> Worst:
    """The running count and largest relative error of the vector values `protocol` reproduced."""
    return PARITY.setdefault(protocol, Worst())


def parity_table() -> str:
    lines = [f"{'protocol':<32} {'values':>8} {'largest relative error':>24}"]
    lines += [f"{name:<32} {w.count:>8} {w.largest:>24.3g}" for name, w in sorted(PARITY.items())]
    return "\n".join(lines)
