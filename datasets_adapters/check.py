"""Walk a dataset on disk through its adapter and report what is there and what is wrong.

This is the API behind `avggt-bench check-data`: it uses the same code paths a run uses (scene
listing, frame inventories, frame loading), so a dataset that checks clean loads in a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate
from tqdm import tqdm

from datasets_adapters.base import DatasetAdapter, DatasetError, create_adapter
from datasets_adapters.sampling import Sampling

LOAD_CHUNK = 32  # frames decoded at once, to bound memory when every frame is checked
SHOWN_PROBLEMS = 20


@dataclass
class SceneCheck:
    scene: str
    frames: int = 0  # usable frames
    invalid_poses: int = 0
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files that exist but cannot be read as the dataset says

    @property
    def group(self) -> str:
        """The category (CO3D) or scene (7-Scenes) a sequence belongs to; the scene itself otherwise."""
        return self.scene.split("/")[0]


@dataclass
class DataReport:
    dataset: str
    root: Path | None  # None: a dataset generated, not read
    scenes: list[SceneCheck]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.scenes) and not any(s.missing or s.problems for s in self.scenes)

    def issues(self) -> list[str]:
        lines = [f"missing: {path}" for s in self.scenes for path in s.missing]
        return lines + [problem for s in self.scenes for problem in s.problems]

    def format(self) -> str:
        groups: dict[str, list[SceneCheck]] = {}
        for s in self.scenes:
            groups.setdefault(s.group, []).append(s)
        rows = [
            [g, len(ss), sum(s.frames for s in ss), sum(s.invalid_poses for s in ss), sum(len(s.missing) for s in ss), sum(len(s.problems) for s in ss)]
            for g, ss in groups.items()
        ]
        totals = ["total", len(self.scenes)] + [sum(r[i] for r in rows) for i in range(2, 6)]
        table = tabulate(rows + [totals], headers=["group", "scenes", "frames", "invalid poses", "missing files", "unreadable"])
        out = [f"{self.dataset} at {self.root}" if self.root else f"{self.dataset} (generated)", "", table]
        out += [""] + self.notes if self.notes else []
        issues = self.issues()
        if issues:
            out += ["", f"{len(issues)} problem(s):"] + [f"  {line}" for line in issues[:SHOWN_PROBLEMS]]
            if len(issues) > SHOWN_PROBLEMS:
                out.append(f"  ... and {len(issues) - SHOWN_PROBLEMS} more")
        return "\n".join(out)


def _frames_to_decode(count: int, decode: int | None) -> list[int]:
    if count == 0:
        return []
    return list(Sampling(kind="uniform").select(count, None if decode is None else min(decode, count)))


def check_scene(adapter: DatasetAdapter, scene: str, decode: int | None) -> SceneCheck:
    """Inventory one scene, then load `decode` of its frames (evenly spread; None = all)."""
    result = SceneCheck(scene=scene)
    try:
        inv = adapter.inventory(scene)
    except DatasetError as err:
        result.problems.append(str(err))
        return result
    result.frames, result.invalid_poses, result.missing = len(inv.frames), len(inv.invalid), list(inv.missing)
    if inv.missing:
        return result
    chosen = [inv.frames[i] for i in _frames_to_decode(len(inv.frames), decode)]
    for start in range(0, len(chosen), LOAD_CHUNK):
        try:
            adapter.load_frames(scene, chosen[start : start + LOAD_CHUNK])
        except DatasetError as err:
            result.problems.append(str(err))
            break
    return result


def check_dataset(
    name: str, root: str | Path | None, options: dict[str, Any] | None = None, decode: int | None = 1, scenes: Iterable[str] | None = None, progress: bool = False
) -> DataReport:
    """Check dataset `name` at `root` with adapter `options`, decoding `decode` frames per scene.

    A layout too wrong to list any scene raises `DatasetError`; everything else is in the report.
    """
    adapter = create_adapter(name, root, **(options or {}))
    names = list(scenes) if scenes is not None else adapter.scenes()
    checks = [check_scene(adapter, s, decode) for s in tqdm(names, desc=f"check {name}", unit="scene", disable=not progress)]
    return DataReport(dataset=name, root=None if root is None else Path(root), scenes=checks, notes=adapter.notes())
