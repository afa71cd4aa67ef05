"""A suite run on a Dask cluster: one worker process per GPU (or N on a CPU), or a running cluster.

The unit of work is a *group*: every method of one (model, dataset, scene, frame count), run back
to back by one worker, so a speedup always divides two times from the same GPU. Workers keep
their model (and its compiled code) from one group to the next: the client pins each group to
one free worker, the longest group of the model that worker holds, else the longest of a model no
worker holds, else a group of a model others hold that this worker would finish sooner, load and
compile included, than they could; so every model is loaded by as few workers as the work needs
and the last GPU does not finish long after the others.

The client (the `avggt-bench run` process) is the only writer of the results folder: a worker
returns its group's rows, raw arrays and environment, and the client appends and fsyncs each row
as it arrives. Resume, `--only`, `--fresh`, `--time-limit`, `--expect-from` and Ctrl-C behave as
in a serial run (`bench.runner`). A worker that dies (killed, out of host memory, a lost node) has
its group run again on another worker, up to ALLOWED_FAILURES times; then the group's cells are
recorded as `error` rows naming the reason. Nothing the client wrote is lost or written twice:
a group's rows are written only when the whole group has come back.
"""

from __future__ import annotations

import datetime as dt
import heapq
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import yaml
from tqdm import tqdm

from bench.env import env_id, fingerprint, unavailable
from bench.flops import count_flops
from bench.runner import RunError, RunSummary, base_row, cell_caches, free_memory, measure, record, starts_too_late, todo_cells
from bench.store import ResultStore
from bench.suite import Cell, Expansion, expand, parse_suite

ALLOWED_FAILURES = 2  # reruns of a group whose worker died under it before its cells are recorded as errors
WATCH_S = 0.2  # how often the client looks for finished groups and dead workers


@dataclass
class Group:
    """Every selected method of one (model, dataset, scene, frames): one worker runs them back to back."""

    cells: list[Cell]
    seconds: float  # what it should take (for ordering only)

    @property
    def model(self) -> str:
        return self.cells[0].model.label

    @property
    def name(self) -> str:
        cell = self.cells[0]
        return f"{cell.model.label}/{cell.dataset.label}/{cell.scene}/{'all' if cell.frames is None else cell.frames}"


def groups(cells: Iterable[Cell], expect: Callable[[Cell], float | None] | None = None) -> list[Group]:
    """The cells grouped by (model, dataset, scene, frames), longest group first."""
    by_inputs: dict[tuple, list[Cell]] = defaultdict(list)
    for cell in cells:
        by_inputs[(cell.model.label, cell.dataset.label, cell.scene, cell.frames)].append(cell)
    made = [Group(members, sum(_seconds(cell, expect) for cell in members)) for members in by_inputs.values()]
    return sorted(made, key=lambda g: -g.seconds)


def _seconds(cell: Cell, expect: Callable[[Cell], float | None] | None) -> float:
    """A cell's expected time: from an earlier run of it, else from the FLOP model (its relative
    cost, enough to order groups), else its frame count squared (global attention dominates)."""
    measured = expect(cell) if expect else None
    if measured is not None:
        return measured
    frames = cell.frames or 100
    runs = cell.suite.timing.warmup_for(frames) + cell.suite.timing.repeats_for(frames)
    key = (cell.model.name, cell.method.label, frames)
    if key not in _FLOPS:
        try:
            _FLOPS[key] = count_flops(cell.model.name, cell.plan, frames, (392, 518)).total  # the crop size: the order is what matters
        except Exception:  # a model the FLOP model cannot trace (the oracle): its cost grows like attention's
            _FLOPS[key] = float(frames) ** 2 * 1e9
    return runs * _FLOPS[key] / 1e14  # about seconds at 100 TFLOP/s


_FLOPS: dict[tuple[str, str, int], float] = {}


# -- the worker side -----------------------------------------------------------------------------------


@dataclass
class _WorkerState:
    """What a worker process keeps between groups of one suite: the expansion and its caches."""

    cells: dict[str, Cell]
    models: Any
    sequences: Any
    device: str


_STATE: dict[tuple[str, str], _WorkerState] = {}


def run_group(suite_text: str, source: str, device: str, identities: list[str]) -> dict[str, Any]:
    """On a worker: measure the cells `identities` of the suite, back to back; return their rows and
    raw arrays, the worker's environment, its name, and the seconds the group spent beside its
    timed forwards (`overhead_s`: a model load and compile, when the group needed one)."""
    started = time.monotonic()
    key = (suite_text, device)
    if key not in _STATE:
        for other in list(_STATE):  # one suite at a time: drop another's model before loading this one
            _STATE.pop(other).models.clear()
        expansion = expand(parse_suite(yaml.safe_load(suite_text), source), device)
        models, sequences = cell_caches(expansion, device)
        _STATE[key] = _WorkerState({cell.identity: cell for cell in expansion.cells}, models, sequences, device)
    state = _STATE[key]
    environment = fingerprint(device)
    ident = env_id(environment)
    measured = []
    for identity in identities:
        row, arrays = measure(state.cells[identity], state.models, state.sequences, ident)
        measured.append((row, arrays))
        if row["status"] != "ok":
            free_memory(device)
    name = os.environ.get("AVGGT_BENCH_WORKER", f"{environment['hostname']}:{os.getpid()}")
    forwards = sum(row["time_median_s"] * (row["time_repeats"] + row["time_warmup"]) for row, _ in measured if row["status"] == "ok")
    return {"rows": measured, "env": environment, "worker": name, "overhead_s": time.monotonic() - started - forwards}


# -- the client side -----------------------------------------------------------------------------------


def local_cluster(workers: int, device: str) -> Any:
    """A cluster on this machine: one worker process per GPU, each seeing only its own (cuda), or
    `workers` processes sharing the CPU cores (cpu)."""
    from distributed import Nanny, Scheduler, SpecCluster

    if device.startswith("cuda:"):
        raise RunError(f"--workers gives each worker its own GPU; use --device cuda, not {device}")
    if (reason := unavailable(device)) is not None:
        raise RunError(reason)
    if device == "cuda" and workers > torch.cuda.device_count():
        raise RunError(f"--workers {workers}: this machine has {torch.cuda.device_count()} CUDA devices, one per worker")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(torch.cuda.device_count() if device == "cuda" else 0)))).split(",")
    specs = {
        f"worker-{i}": {"cls": Nanny, "options": {"nthreads": 1, "env": env, "silence_logs": 40, "memory_limit": 0}}  # no host-memory cap: a machine that reports little memory at first (VMs) would have its workers killed
        for i, env in enumerate(worker_environments(workers, device, visible, os.cpu_count() or 1))
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard": False, "dashboard_address": ":0"}}
    return SpecCluster(workers=specs, scheduler=scheduler, silence_logs=40)


def worker_environments(workers: int, device: str, visible: list[str], cores: int) -> list[dict[str, str]]:
    """The environment of each local worker process: its name, its GPU, and an equal share of the
    host's cores for its CPU threads and for the compiler's process pool (each worker's compiler
    would otherwise start a pool as large as the whole host). A share the user set stays."""
    share = str(max(1, cores // workers))
    environments = []
    for i in range(workers):
        env = {"AVGGT_BENCH_WORKER": f"worker {i}" + (f" (GPU {visible[i]})" if device == "cuda" else "")}
        env.update({name: os.environ.get(name, share) for name in ("OMP_NUM_THREADS", "TORCHINDUCTOR_COMPILE_THREADS")})
        if device == "cuda":
            env["CUDA_VISIBLE_DEVICES"] = visible[i]
        environments.append(env)
    return environments


@dataclass
class _Flight:
    group: Group
    worker: str
    loads: bool  # the worker did not hold the group's model: it loads (and compiles) it first


@dataclass
class Workers:
    """The client's picture of its workers, for choosing what a free one runs next: the model each
    holds, when each busy one should be free, and how long a model takes to load and compile (seen
    from the first group that loaded it)."""

    holds: dict[str, str] = field(default_factory=dict)  # worker address → the model it last loaded
    free_at: dict[str, float] = field(default_factory=dict)  # busy worker → when its group should end (time.monotonic)
    load_s: dict[str, float] = field(default_factory=dict)  # model → seconds of load and compile, once seen

    def start(self, worker: str, group: Group, now: float) -> bool:
        """Note that `worker` runs `group` from `now`; whether it must load the group's model first."""
        loads = self.holds.get(worker) != group.model
        self.holds[worker] = group.model
        self.free_at[worker] = now + group.seconds + (self.load_s.get(group.model, 0.0) if loads else 0.0)
        return loads

    def finish(self, worker: str, group: Group, loaded: bool, overhead_s: float | None) -> None:
        self.free_at.pop(worker, None)
        if loaded and overhead_s is not None:
            self.load_s[group.model] = max(0.0, overhead_s)

    def lose(self, worker: str) -> None:
        self.holds.pop(worker, None)
        self.free_at.pop(worker, None)


@dataclass
class _Board:
    """The progress display: one bar over cells, one status line per worker."""

    bar: Any
    lines: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def show(self, worker: str, text: str) -> None:
        if not self.progress:
            return
        if worker not in self.lines:
            self.lines[worker] = tqdm(total=0, position=len(self.lines) + 1, bar_format="{desc}", file=sys.stderr, leave=False)
        self.lines[worker].set_description_str(f"  {worker}: {text}")

    def close(self) -> None:
        for line in self.lines.values():
            line.close()
        self.bar.close()


def run(
    expansion: Expansion,
    store: ResultStore,
    client: Any,
    suite_text: str,
    only: Iterable[str] = (),
    progress: bool = True,
    time_limit: float | None = None,
    expect: Callable[[Cell], float | None] | None = None,
    remeasure: bool = False,
) -> RunSummary:
    """Measure every selected cell not in `store` on the workers of `client`, as `bench.runner.run` does one by one."""
    from distributed import as_completed

    started = time.monotonic()
    device = expansion.cells[0].device if expansion.cells else "cpu"
    store.open()
    todo, summary = todo_cells(expansion, store, only, remeasure)
    waiting = groups(todo, expect)
    suite = expansion.cells[0].suite if expansion.cells else None
    board = _Board(tqdm(total=len(todo), unit="cell", desc=suite.name if suite else "", disable=not progress, file=sys.stderr, dynamic_ncols=True), progress=progress)
    workers = Workers()
    names: dict[str, str] = {}  # worker address → its name, for the status lines
    deaths: Counter = Counter()  # group name → workers that died running it
    flying = as_completed()
    in_flight: dict[Any, _Flight] = {}

    def write(rows: list[tuple[dict[str, Any], dict]]) -> None:
        for row, arrays in rows:
            record(store, row, arrays, summary, board.bar.write)
            board.bar.update(1)

    def submit(worker: str, alive: dict[str, Any]) -> None:
        while waiting:
            group = _next_for(waiting, worker, workers, alive, time.monotonic())
            if group is None and not in_flight:
                group = waiting[0]  # no holder is busy: someone must load it
            if group is None:
                break  # what is left is better run by the workers that hold its model, once they are free
            if starts_too_late(started, time_limit, group.seconds if expect else None):
                waiting.remove(group)
                summary.out_of_time = True
                continue
            waiting.remove(group)
            future = client.submit(
                run_group, suite_text, suite.source, device, [cell.identity for cell in group.cells], pure=False, key=f"group-{group.name}-{time.monotonic_ns()}",
                workers=[worker], allow_other_workers=False,
            )  # pinned: with another worker idle, the scheduler would otherwise pick either, and a second worker would load the model
            in_flight[future] = _Flight(group, worker, workers.start(worker, group, time.monotonic()))
            flying.add(future)
            board.show(names.get(worker, worker), f"{group.name} ({len(group.cells)} cells)")
            return
        board.show(names.get(worker, worker), "idle")

    def rerun_lost_groups(alive: dict[str, Any]) -> None:
        """Run again, on a worker still alive, each group whose worker died under it (a group pinned
        to a dead worker would wait forever); after ALLOWED_FAILURES reruns, record its cells as errors."""
        for future, flight in list(in_flight.items()):
            if not (_killed(future) or (not future.done() and flight.worker not in alive)):
                continue
            del in_flight[future]
            workers.lose(flight.worker)
            client.cancel(future)
            deaths[flight.group.name] += 1
            if deaths[flight.group.name] > ALLOWED_FAILURES:
                reason = f"the worker running this group died {deaths[flight.group.name]} times (killed, out of host memory, or a lost node)"
                write([_error_row(cell, reason) for cell in flight.group.cells])
            else:
                waiting.insert(0, flight.group)

    def feed_idle_workers(alive: dict[str, Any]) -> None:
        """Give a group to every worker with none: at the start, and to workers that joined (or
        came back after a crash) since."""
        names.update({address: str(info.get("name", address)) for address, info in alive.items()})
        for worker in sorted(alive):
            if waiting and worker not in {flight.worker for flight in in_flight.values()}:
                submit(worker, alive)

    try:
        client.wait_for_workers(1)
        feed_idle_workers(client.scheduler_info()["workers"])
        while in_flight or waiting:  # with nothing in flight, what waits goes to the next worker to join (a dead one's replacement)
            alive = client.scheduler_info()["workers"]
            for future in flying.next_batch(block=False) if flying.has_ready() else ():
                flight = in_flight.get(future)
                if flight is None or _killed(future):
                    continue  # cancelled, or left to rerun_lost_groups
                del in_flight[future]
                rows, overhead_s = _outcome(future, flight.group, store)
                workers.finish(flight.worker, flight.group, flight.loads, overhead_s)
                write(rows)
                if flight.loads and overhead_s is not None and progress:
                    board.bar.write(f"{names.get(flight.worker, flight.worker)}: {flight.group.name} took {overhead_s:.0f} s beside its timed forwards (loading {flight.group.model}, compiling, data)", file=sys.stderr)
                submit(flight.worker, alive)
            rerun_lost_groups(alive)
            feed_idle_workers(alive)
            time.sleep(WATCH_S)
    except KeyboardInterrupt:
        summary.interrupted = True
        client.cancel(list(in_flight))
    finally:
        board.close()
    return summary


def _next_for(waiting: list[Group], worker: str, workers: Workers, alive: Iterable[str], now: float) -> Group | None:
    """What free `worker` should run next, or None to stay idle.

    A model change costs a load and a compile (minutes for a 1B model), so: the longest group of
    the worker's own model; else the longest of a model no other worker holds; else a group of a
    model others hold that this worker, loading the model first, would finish before its holders
    could (`_sooner_here`). Otherwise the groups left are better run by their holders."""
    model = workers.holds.get(worker)
    elsewhere = {w: m for w, m in workers.holds.items() if w != worker and w in alive}
    own = next((group for group in waiting if group.model == model), None)
    unheld = next((group for group in waiting if group.model not in elsewhere.values()), None)
    return own or unheld or _sooner_here(waiting, elsewhere, workers, now)


def _sooner_here(waiting: list[Group], elsewhere: dict[str, str], workers: Workers, now: float) -> Group | None:
    """The group a free worker holding none of their models should take from the holders: one it
    would finish (load and compile included) before the holders would reach and finish it, running
    what is left of their model longest first; of those, the one the holders would finish last.
    Before a model's load time has been seen, a group whenever more are left than holders."""
    best, best_end = None, -1.0
    for model in dict.fromkeys(group.model for group in waiting):
        mine = [group for group in waiting if group.model == model]
        holders = [w for w, m in elsewhere.items() if m == model]
        if model not in workers.load_s:
            if len(mine) > len(holders) and best is None:
                best = mine[0]
            continue
        free = sorted(max(now, workers.free_at.get(w, now)) for w in holders)
        for group in mine:  # the holders' own schedule: each group to the first of them free
            end = heapq.heappop(free) + group.seconds
            heapq.heappush(free, end)
            if now + workers.load_s[model] + group.seconds < end and end > best_end:
                best, best_end = group, end
    return best


def _killed(future: Any) -> bool:
    """Whether the scheduler gave up on a group because workers died running it."""
    from distributed import KilledWorker

    return future.status == "error" and isinstance(future.exception(), KilledWorker)


def _outcome(future: Any, group: Group, store: ResultStore) -> tuple[list[tuple[dict[str, Any], dict]], float | None]:
    """The group's rows (with the worker's environment recorded), or error rows saying why it has
    none; and the seconds the worker spent beside the timed forwards (None without rows)."""
    try:
        result = future.result()
    except Exception as err:  # the group could not start on the worker (its data or suite did not load there)
        return [_error_row(cell, f"on the worker: {type(err).__name__}: {err}") for cell in group.cells], None
    ident = store.record_env(result["env"])
    for row, _ in result["rows"]:
        row["env_id"] = ident
        row["worker"] = result["worker"]
    return result["rows"], result["overhead_s"]


def _error_row(cell: Cell, message: str) -> tuple[dict[str, Any], dict]:
    row = base_row(cell, env_id=None)  # no worker environment came back
    row.update(status="error", message=f"distributed run: {message}", traceback=None, recorded_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return row, {}


def suite_text(path: str | Path) -> str:
    return Path(path).read_text()
