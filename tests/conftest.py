"""Shared fixtures: temporary registry entries, small stand-in metrics, and tiny suites."""

from __future__ import annotations

import os

# Triton kernels (`bench.models.layers.fused_qkv`) run on the CPU through Triton's interpreter.
# Triton fixes that choice for its own library functions when it is first imported, which any
# test may cause (torch imports it lazily), so it is set before all of them.
os.environ["TRITON_INTERPRET"] = "1"

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml

from metrics import METRICS, Metric
from metrics.geometry import camera_centres
from metrics.registry import lower


@pytest.fixture
def register() -> Callable[[Any, str, Any], Any]:
    """Add entries to registries for one test; they are removed afterwards."""
    added = []

    def add(registry: Any, name: str, entry: Any) -> Any:
        registry.register(name, entry)
        added.append((registry, name))
        return entry

    yield add
    for registry, name in reversed(added):
        registry.unregister(name)


def rotation_error_deg(pred: dict[str, np.ndarray], gt: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest per-frame rotation error (degrees) and camera-centre error: a stand-in pose metric."""
    rel = pred["extrinsics"][:, :, :3] @ np.transpose(gt["extrinsics"][:, :, :3], (0, 2, 1))
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)

    return {
        "rot_err_max": float(np.degrees(np.arccos(cos)).max()),
        "centre_err_max": float(np.linalg.norm(camera_centres(pred["extrinsics"]) - camera_centres(gt["extrinsics"]), axis=1).max()),
    }


def depth_abs_rel(pred: dict[str, np.ndarray], gt: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean |pred - gt| / gt over valid pixels, no alignment: a stand-in depth metric."""
    valid = gt["valid"]
    return {"abs_rel": float(np.mean(np.abs(pred["depth"][valid] - gt["depth"][valid]) / gt["depth"][valid]))}


@pytest.fixture
def fake_metrics(register) -> tuple[str, str]:
    """Stand-in metrics `t_pose` and `t_depth`, so harness tests do not depend on metrics/."""
    register(METRICS, "t_pose", Metric("t_pose", rotation_error_deg, (lower("rot_err_max"), lower("centre_err_max")), 1, "stand-in pose metric"))
    register(METRICS, "t_depth", Metric("t_depth", depth_abs_rel, (lower("abs_rel"),), 1, "stand-in depth metric"))
    return "t_pose", "t_depth"


class FrameLocalPlan:
    """A stand-in non-dense plan (the oracle ignores plans, so it only has to describe itself)."""

    is_dense = False

    def describe(self, frames=None):
        return {"operator": "frame"}

    def attend(self, layer, q, k, v, layout):
        raise NotImplementedError("the oracle never calls attend")

    def reset_observations(self):
        pass


@pytest.fixture
def frame_method(register) -> str:
    """Method `t_frame`: a non-dense plan that the oracle runs like any other."""
    from bench.methods import METHODS

    register(METHODS, "t_frame", lambda traits, **params: FrameLocalPlan())
    return "t_frame"


def tiny_suite(**changes: Any) -> dict[str, Any]:
    """A suite of 8 small cells: two oracles (exact and noisy) × 2 synthetic scenes × 2 frame counts."""
    suite = {
        "name": "tiny",
        "models": [
            {"name": "oracle", "weights": "none"},
            {"name": "oracle", "label": "noisy", "weights": "none", "options": {"rotation_noise_deg": 3.0, "depth_noise": 0.1}},
        ],
        "methods": ["dense"],
        "datasets": [
            {"name": "synthetic", "options": {"length": 12, "height": 48, "width": 64}, "scenes": "all", "frames": [3, 6]}
        ],
        "timing": {"warmup": 0, "repeats": 2},
        "metrics": ["t_pose", "t_depth"],
    }
    suite.update(changes)
    return suite


def write_suite(directory: Path, data: Any, name: str = "suite.yaml") -> Path:
    path = directory / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After a run that checked protocol vectors: how many values each protocol reproduced, and the largest relative error."""
    from tests.protocol_vectors import PARITY, parity_table

    if PARITY:
        terminalreporter.write_sep("-", "protocol parity with the official evaluation code (tests/data/protocols)")
        terminalreporter.write_line(parity_table())
