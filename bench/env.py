"""The environment fingerprint stored beside results, so a number can be traced to what produced it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bench

PROJECT_ROOT = Path(bench.__file__).resolve().parent.parent
RESULTS_DIR = "results"  # where runs write by default: measurements written there leave the code clean
VOLATILE_KEYS = ("time",)  # left out of the env id: the same machine and code later is the same environment


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu(device: str) -> dict[str, Any]:
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return {"gpu": None, "gpu_memory_gib": None, "gpu_capability": None}
    props = torch.cuda.get_device_properties(torch.device(device))
    return {
        "gpu": props.name,
        "gpu_memory_gib": round(props.total_memory / 2**30, 2),
        "gpu_capability": f"{props.major}.{props.minor}",
    }


def unavailable(device: str) -> str | None:
    """Why this torch cannot run on `device` (cpu, cuda, cuda:N), or None when it can."""
    if not device.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        return "CUDA was asked for but this torch has none (torch.cuda.is_available() is False); use --device cpu or install a CUDA build of torch"
    index, count = torch.device(device).index, torch.cuda.device_count()
    if index is not None and index >= count:
        return f"{device}: this machine has {count} CUDA device{'s' if count != 1 else ''} (cuda:0 .. cuda:{count - 1})"
    return None


def device_name(env: dict[str, Any]) -> str:
    """What ran the rows of an environment: the GPU's name, or the CPU's."""
    return env.get("gpu") or f"CPU ({env.get('cpu') or 'unknown'})"


def commit_name(env: dict[str, Any]) -> str:
    """The short commit of an environment, marked when the tree had uncommitted changes."""
    return (env.get("git_commit") or "unknown")[:7] + ("+dirty" if env.get("git_dirty") else "")


def fingerprint(device: str) -> dict[str, Any]:
    """Code version, library versions and hardware of this run (`device` picks the GPU described).

    A copy of the project whose git folder is missing or does not describe it (a working tree
    shipped to a GPU machine) names its commit in AVGGT_BENCH_GIT_COMMIT, which then wins over git
    (and its dirty flag, measured against the wrong commit, is left unknown). The dirty flag is
    about the code: rows a run writes into the committed results folder do not set it.
    """
    named = os.environ.get("AVGGT_BENCH_GIT_COMMIT")
    status = None if named else _git("status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){RESULTS_DIR}")
    return {
        "git_commit": named or _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "bench_version": bench.__version__,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": device,
        **_gpu(device),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def env_id(env: dict[str, Any]) -> str:
    """A short hash of the fingerprint without its time, carried by every row as `env_id`."""
    stable = {k: v for k, v in env.items() if k not in VOLATILE_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:12]


def summary(env: dict[str, Any]) -> str:
    """One line naming what produced a set of numbers: hardware, code version, torch."""
    commit = (env.get("git_commit") or "unknown commit")[:10] + (" (dirty)" if env.get("git_dirty") else "")
    hardware = env.get("gpu") or f"CPU {env.get('cpu')}"
    return f"{hardware}, commit {commit}, torch {env.get('torch')}" + (f", CUDA {env['cuda']}" if env.get("gpu") and env.get("cuda") else "")
