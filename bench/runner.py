"""The runner: the one place that joins dataset adapters, models, methods and metrics.

For each cell it loads (or reuses) the model and the preprocessed sequence, times `model.run`,
converts the output outside the timed region, scores it with the suite's metrics and appends one
row to the results. Out-of-memory and other exceptions become rows with status `oom` or `error`
and the run goes on; Ctrl-C stops it with every finished row kept, so running again resumes.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import gc
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from bench.env import fingerprint, unavailable
from bench.models import BenchModel, Prediction, create_model
from bench.preprocess import preprocess
from bench.store import SCHEMA_VERSION, ResultStore
from bench.suite import Cell, DatasetSpec, Expansion, ModelSpec
from bench.timing import time_forward
from datasets_adapters import DatasetAdapter, Sequence
from metrics import METRICS, split_raw

PREDICTION_FIELDS = ("extrinsics", "intrinsics", "depth", "depth_conf", "world_points", "world_points_conf")
TRACEBACK_LINES = 12


class RunError(RuntimeError):
    """A run that cannot start (e.g. CUDA asked for but not available)."""


class CellFailure(Exception):
    """Why a cell has no measurement: status `oom` or `error`, a one-line message, a traceback tail."""

    def __init__(self, status: str, message: str, trace: str) -> None:
        super().__init__(message)
        self.status, self.message, self.trace = status, message, trace

    @classmethod
    def from_exception(cls, exc: BaseException, stage: str) -> "CellFailure":
        status = "oom" if isinstance(exc, (torch.OutOfMemoryError, MemoryError)) else "error"
        lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
        return cls(status, f"{stage}: {type(exc).__name__}: {exc}", "\n".join(lines[-TRACEBACK_LINES:]))

    def as_row(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "traceback": self.trace}


def free_memory(device: str) -> None:
    """Give what the last cell or model held back to the CUDA allocator (after an OOM, before the
    next model); tracebacks hold tensors in reference cycles, hence the collection first."""
    if device.startswith("cuda"):
        gc.collect()
        torch.cuda.empty_cache()


class _Latest:
    """The most recent model or sequence, shared by the consecutive cells that need the same one.

    Building the next drops the previous first (then calls `release`), so one model and one
    sequence are in memory at a time. A failure is kept too: every cell that needs the same thing
    records it without retrying.
    """

    def __init__(self, build: Callable[[Any], Any], stage: str, release: Callable[[], None] = lambda: None) -> None:
        self._build, self._stage, self._release = build, stage, release
        self._key: Any = object()
        self._value: Any = None
        self._failure: CellFailure | None = None

    def get(self, key: Any) -> Any:
        if key != self._key:
            self.clear()
            self._key = key
            try:
                self._value = self._build(key)
            except Exception as exc:
                self._failure = CellFailure.from_exception(exc, self._stage)
        if self._failure is not None:
            raise self._failure
        return self._value

    def clear(self) -> None:
        self._key, self._value, self._failure = object(), None, None
        self._release()


@dataclass
class RunSummary:
    selected: int
    already_done: int
    statuses: Counter = field(default_factory=Counter)  # status → rows recorded by this run
    interrupted: bool = False
    out_of_time: bool = False  # stopped by the time limit with cells left

    @property
    def recorded(self) -> int:
        return sum(self.statuses.values())


def select(cells: list[Cell], only: Iterable[str] = ()) -> list[Cell]:
    """Cells whose id matches any of the `only` globs (all cells when there are none)."""
    patterns = list(only)
    if not patterns:
        return list(cells)
    return [c for c in cells if any(fnmatch.fnmatchcase(c.cell_id, p) for p in patterns)]


def expected_seconds(rows: Iterable[dict[str, Any]]) -> Callable[[Cell], float | None]:
    """How long each cell should take, from the rows of an earlier run of the same cells (matched
    by identity, else by cell id: a run of the suite before an edit of its settings still says
    roughly how long a cell takes): its median forward time × the forwards this suite runs for it
    (warm-up and repeats). None for a cell that has no ok row there."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("time_median_s")]
    by_identity = {r["id"]: (r["time_median_s"], r["frames_used"]) for r in ok}
    by_cell_id = {r["cell"]: (r["time_median_s"], r["frames_used"]) for r in ok if "cell" in r}

    def expect(cell: Cell) -> float | None:
        found = by_identity.get(cell.identity) or by_cell_id.get(cell.cell_id)
        if found is None:
            return None
        seconds, frames = found
        timing = cell.suite.timing
        return seconds * (timing.warmup_for(frames) + timing.repeats_for(frames))

    return expect


def run(
    expansion: Expansion,
    store: ResultStore,
    only: Iterable[str] = (),
    progress: bool = True,
    time_limit: float | None = None,
    expect: Callable[[Cell], float | None] | None = None,
    remeasure: bool = False,
    measure_cell: Callable[..., tuple[dict[str, Any], dict[str, np.ndarray]]] | None = None,
) -> RunSummary:
    """Measure every selected cell not already in `store` (with `remeasure`, every selected cell:
    the new rows supersede the old, which stay in the file), appending one row per cell.
    `measure_cell` (default `measure`) makes each cell's row and raw arrays from the cell, the
    model and sequence caches and the environment id.

    With `time_limit` (seconds), no cell starts once that much time has passed, nor a cell that
    `expect` says would end after it (`expected_seconds`); the cells left are measured by the
    next run.
    """
    started = time.monotonic()
    device = require_device(expansion)
    store.open()
    todo, summary = todo_cells(expansion, store, only, remeasure)
    env_id = store.record_env(fingerprint(device)) if todo else None  # a run with nothing left to do leaves the folder as it was
    models, sequences = cell_caches(expansion, device)
    bar = tqdm(todo, unit="cell", desc=expansion.cells[0].suite.name if todo else "", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for cell in bar:
            if starts_too_late(started, time_limit, expect(cell) if expect else None):
                summary.out_of_time = True  # left for the next run; a shorter cell after it may still fit
                continue
            bar.set_postfix_str(cell.cell_id, refresh=True)
            row, arrays = (measure_cell or measure)(cell, models, sequences, env_id)
            record(store, row, arrays, summary, bar.write)
            if row["status"] != "ok":
                free_memory(device)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        models.clear()
        sequences.clear()
    return summary


def require_device(expansion: Expansion) -> str:
    """The one device of an expansion's cells, after checking this torch can run on it."""
    device = expansion.cells[0].device if expansion.cells else "cpu"
    if (reason := unavailable(device)) is not None:
        raise RunError(reason)
    return device


def todo_cells(expansion: Expansion, store: ResultStore, only: Iterable[str], remeasure: bool) -> tuple[list[Cell], RunSummary]:
    """The selected cells still to measure (all of them with `remeasure`), and a summary that counts
    the ones already done."""
    cells = select(expansion.cells, only)
    done = set() if remeasure else store.done()
    todo = [cell for cell in cells if cell.identity not in done]
    return todo, RunSummary(selected=len(cells), already_done=len(cells) - len(todo))


def starts_too_late(started: float, time_limit: float | None, needed: float | None) -> bool:
    """Whether work that takes `needed` seconds (None: unknown) may no longer start under the limit."""
    if time_limit is None:
        return False
    elapsed = time.monotonic() - started
    return elapsed > time_limit or (needed is not None and elapsed + needed > time_limit)


def cell_caches(expansion: Expansion, device: str) -> tuple["_Latest", "_Latest"]:
    """The model and sequence caches `measure` takes: consecutive cells share what they can."""
    return _Latest(_build_model, "building the model", release=lambda: free_memory(device)), _Latest(_sequence_loader(expansion.adapters), "loading data")


def record(store: ResultStore, row: dict[str, Any], arrays: dict[str, np.ndarray], summary: RunSummary, echo: Callable[..., None]) -> None:
    """Write a measured cell: its raw arrays first, then its row; count it, and say why it failed."""
    if arrays:
        row["raw"] = store.write_raw(row["id"], arrays)
    store.append(row)
    summary.statuses[row["status"]] += 1
    if row["status"] != "ok":
        echo(f"{row['cell']}: {row['status']}: {row['message']}", file=sys.stderr)


def _build_model(key: tuple[ModelSpec, str]) -> BenchModel:
    """The cell's model on its device; random weights are drawn there (a 1B model's initialisation
    takes a GPU a fraction of a second and the host over ten)."""
    spec, device = key
    with torch.device(device):
        model = create_model(spec.name, spec.weights_path, **spec.options)
    return model.to(device).eval()


def _sequence_loader(adapters: dict[str, DatasetAdapter]) -> Callable[[tuple], Sequence]:
    def load(key: tuple[DatasetSpec, str, int | None, str | None]) -> Sequence:
        spec, scene, frames, mode = key
        return preprocess(adapters[spec.label].load(scene, frames, spec.sampling), mode)

    return load


def base_row(cell: Cell, env_id: str) -> dict[str, Any]:
    """The identity and resolved configuration of a cell: what every row carries, measured or not."""
    return {
        "schema_version": SCHEMA_VERSION,
        "id": cell.identity,
        "inputs_id": cell.inputs_id,
        "cell": cell.cell_id,
        "suite": cell.suite.name,
        "status": None,
        "message": None,
        "model": cell.model.label,
        "model_name": cell.model.name,
        "model_options": cell.model.resolved_options,
        "weights": cell.model.weights,
        "weights_sha256": None,
        "weights_random": cell.model.weights == "random",
        "method": cell.method.label,
        "method_name": cell.method.name,
        "method_params": cell.method.params,
        "method_dense": bool(cell.plan.is_dense),
        "plan": cell.plan.describe(cell.frames),
        "dataset": cell.dataset.label,
        "dataset_name": cell.dataset.name,
        "dataset_root": cell.dataset.root_path,
        "dataset_options": cell.dataset.options,
        "scene": cell.scene,
        "frames": "all" if cell.frames is None else cell.frames,
        "frames_used": None,
        **cell.dataset.sampling.as_row(),
        "preprocess": cell.preprocess,
        "image_size": None,
        "metrics": list(cell.metrics),
        "metric_options": cell.metric_options,
        "metric_versions": {name: METRICS.get(name).version for name in cell.metrics},
        **(cell.dataset.protocol.as_row() if cell.dataset.protocol else {}),
        "raw": None,
        "device": cell.device,
        "env_id": env_id,
    }


def load_inputs(cell: Cell, models: _Latest, sequences: _Latest, row: dict[str, Any]) -> tuple[BenchModel, Sequence]:
    """The model and preprocessed sequence of a cell (from the caches), with what they are noted in
    `row`: the weights, the frames drawn, the image size. A failure is a CellFailure naming its stage."""
    model = models.get((cell.model, cell.device))
    row.update(model.weights_info.as_row())
    seq = sequences.get((cell.dataset, cell.scene, cell.frames, cell.preprocess))
    row.update(seq.sampling)
    row.update(frames_used=seq.num_frames, image_size=list(seq.image_size))
    return model, seq


def measure(cell: Cell, models: _Latest, sequences: _Latest, env_id: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The row of one cell (timing and metrics, or the failure that stopped it) and the raw arrays
    to keep beside it: the frame ids and each metric's per-pair / per-frame values."""
    row = base_row(cell, env_id)
    arrays: dict[str, np.ndarray] = {}
    stage = "loading the model and data"
    try:
        model, seq = load_inputs(cell, models, sequences, row)
        arrays["frame_ids"] = np.asarray(seq.frame_ids, dtype=str)
        stage = "forward pass"
        images = torch.from_numpy(seq.images).to(cell.device)
        timing = cell.suite.timing
        model.prime(images, cell.plan)  # also starts the plan's observations afresh: the row's cover its own forwards
        raw, measured = time_forward(
            lambda: model.run(images, cell.plan, seq), cell.device, timing.warmup_for(seq.num_frames), timing.repeats_for(seq.num_frames)
        )
        graph_peak = model.graph_peak_gib(images, cell.plan)
        if graph_peak is not None:
            measured = replace(measured, peak_mem_gib=max(measured.peak_mem_gib or 0.0, graph_peak))
        row.update(measured.as_row(), plan=cell.plan.describe(seq.num_frames))  # after the run: plans may record kernels used
        stage = "converting the output"
        pred, gt = metric_inputs(model.to_prediction(raw), seq)
        del raw
        for name in cell.metrics:
            stage = f"metric {name}"
            values, per_item = split_raw(METRICS.get(name)(pred, gt, **cell.metric_options.get(name, {})))
            row.update({f"{name}.{key}": v.item() if isinstance(v, np.generic) else v for key, v in values.items()})
            arrays.update({f"{name}.{key}": v for key, v in per_item.items()})
        row.update(status="ok", recorded_at=now())
    except Exception as exc:
        failure = exc if isinstance(exc, CellFailure) else CellFailure.from_exception(exc, stage)
        row.update(failure.as_row(), recorded_at=now())
        arrays = {}
    return row, arrays


def metric_inputs(prediction: Prediction, seq: Sequence) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The (pred, gt) dicts of arrays the METRICS contract takes (metrics/__init__.py)."""
    pred = {k: getattr(prediction, k) for k in PREDICTION_FIELDS if getattr(prediction, k) is not None}
    gt = {"extrinsics": seq.extrinsics, "intrinsics": seq.intrinsics}
    if seq.depth is not None:
        gt.update(depth=seq.depth, valid=seq.valid)
    return pred, gt


def now() -> str:
    """When a row is recorded: UTC, to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
