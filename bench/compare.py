"""Regression check between two result sets, for CI: match cells by identity, flag what got worse.

A cell regresses when it was measured in the baseline and is not now (status), when an accuracy
metric moves the wrong way by more than its tolerance or stops being computable, or when its
speedup over dense drops by more than the speedup tolerance (on a GPU: a CPU's timings move with
whatever else the machine runs, so CPU speedups are not compared). Accuracy of random-weight rows is not
checked. A comparison also fails when it compared nothing (no cell in common) or when cells of the
baseline are missing from the new results, unless the caller accepts a partial run.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench.report import add_speedup, metric_columns, text_table
from metrics import METRICS

DEFAULT_TOLERANCES = Path(__file__).with_name("tolerances.yaml")
REGRESSION, IMPROVED, WITHIN, UNCHECKED, CHANGED = "REGRESSION", "improved", "within tolerance", "no tolerance", "changed"


class ToleranceError(ValueError):
    """A tolerances file that cannot be used; the message names the file and entry."""


@dataclass(frozen=True)
class Tolerance:
    better: str | None  # "higher" or "lower"; None until resolved from the metric's declaration
    abs: float = 0.0
    rel: float = 0.0

    def worsening(self, baseline: float, new: float) -> float:
        """How far `new` moved the wrong way from `baseline` (negative: it improved)."""
        return baseline - new if self.better == "higher" else new - baseline

    def allowance(self, baseline: float) -> float:
        return max(self.abs, self.rel * abs(baseline))


@dataclass(frozen=True)
class Tolerances:
    metrics: dict[str, dict[str, Tolerance]]  # metric → key (a declared family such as `rra`) → tolerance
    speedup: Tolerance

    def for_metric(self, column: str) -> Tolerance | None:
        """The tolerance of a value column "<metric>.<key>" with its direction, or None if it has
        none (diagnostics, options and undeclared keys never have one)."""
        metric, _, key = column.partition(".")
        entries = self.metrics.get(metric, {})
        if metric not in METRICS:
            return entries.get(key)
        declared = METRICS.get(metric).key(key)
        if declared is None or declared.kind != "value" or declared.family not in entries:
            return None
        return replace(entries[declared.family], better=declared.better)


def _tolerance(entry: Any, where: str, better_allowed: bool) -> Tolerance:
    allowed_keys = {"abs", "rel"} | ({"better"} if better_allowed else set())
    if not isinstance(entry, dict) or set(entry) - allowed_keys:
        raise ToleranceError(f"{where}: expected a mapping with keys {', '.join(sorted(allowed_keys))}, got {entry!r}")
    better = entry.get("better")
    if better_allowed and better not in ("higher", "lower"):
        raise ToleranceError(f"{where}.better: {better!r}; allowed: higher, lower (this metric is not registered, so its entry says which way is better)")
    bounds = {k: entry.get(k, 0.0) for k in ("abs", "rel")}
    for key, value in bounds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ToleranceError(f"{where}.{key}: {value!r}; allowed: a number >= 0")
    return Tolerance(better, float(bounds["abs"]), float(bounds["rel"]))


def _metric_entries(metric: str, entries: Any, where: str) -> dict[str, Tolerance]:
    """The entries of one metric, each key checked against the metric's declaration."""
    if not isinstance(entries, dict):
        raise ToleranceError(f"{where}: expected a mapping of the metric's keys to {{abs, rel}}")
    if metric not in METRICS:  # a metric this harness does not know (a plug-in): entries say `better`
        return {key: _tolerance(entry, f"{where}.{key}", better_allowed=True) for key, entry in entries.items()}
    declared = METRICS.get(metric)
    values = [k.family for k in declared.keys if k.kind == "value"]
    out = {}
    for key, entry in entries.items():
        found = declared.family(str(key))
        if found is None or found.kind != "value":
            what = "is not one of its values" if found is None else f"is a {found.kind}, never compared"
            raise ToleranceError(f"{where}.{key}: {metric} key {key!r} {what}; allowed: {', '.join(values)}")
        out[str(key)] = _tolerance(entry, f"{where}.{key}", better_allowed=False)
    return out


def load_tolerances(path: str | Path | None = None) -> Tolerances:
    """Tolerances from a YAML file (bench/tolerances.yaml by default; its comments explain the format)."""
    source = Path(path) if path else DEFAULT_TOLERANCES
    try:
        data = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ToleranceError(f"{source}: cannot read tolerances: {err}") from None
    if not isinstance(data, dict) or set(data) - {"metrics", "speedup"}:
        raise ToleranceError(f"{source}: expected a mapping with keys metrics, speedup")
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise ToleranceError(f"{source}: metrics: expected a mapping of metric names to {{key: {{abs, rel}}}}")
    parsed = {str(name): _metric_entries(str(name), entries, f"{source}: metrics.{name}") for name, entries in metrics.items()}
    speedup = _tolerance(data.get("speedup", {}), f"{source}: speedup", better_allowed=False)
    return Tolerances(parsed, replace(speedup, better="higher"))


@dataclass
class Comparison:
    diffs: pd.DataFrame  # cell, quantity, baseline, new, change, allowed, verdict: every quantity that changed
    matched: int
    missing: list[str] = field(default_factory=list)  # cells of the baseline absent from the new results
    added: list[str] = field(default_factory=list)  # cells only in the new results
    unchecked: list[str] = field(default_factory=list)  # metric columns that changed with no tolerance
    cpu_timings: int = 0  # matched cells measured on a CPU, whose speedups are not compared

    @property
    def regressions(self) -> int:
        return int((self.diffs["verdict"] == REGRESSION).sum()) if len(self.diffs) else 0

    def notes(self, allow_missing: bool = False) -> list[str]:
        """What a reader must know besides the differences: missing and new cells, metrics without
        a tolerance, CPU timings left out, and the count."""
        lines = []
        if self.missing:
            lines.append(f"{'warning' if allow_missing else 'error'}: {len(self.missing)} baseline cells are missing from the new results: {', '.join(self.missing)}")
        if self.added:
            lines.append(f"note: {len(self.added)} cells are new (not in the baseline): {', '.join(self.added)}")
        if self.unchecked:
            lines.append(f"warning: no tolerance for {', '.join(self.unchecked)}; add them to the tolerances file")
        if self.cpu_timings:
            lines.append(f"note: speedups of {self.cpu_timings} cells measured on a CPU are not compared (CPU timings are not a regression signal)")
        lines.append(f"{self.matched} cells matched, {self.regressions} regressions")
        return lines

    def markdown(self, baseline: str, new: str, allow_missing: bool = False) -> str:
        """A summary for a pull-request comment: the verdict, the regressions first, every other
        change folded away, and the notes."""
        failures = self.failures(allow_missing)
        lines = [f"### avggt-bench compare: {'❌ FAIL' if failures else '✅ pass'}", "", f"`{new}` against the baseline `{baseline}`.", ""]
        lines += [f"- **{reason}**" for reason in failures] + [f"- {note}" for note in self.notes(allow_missing)] + [""]
        table = self.diffs.astype(object).where(self.diffs.notna(), None)
        regressions = table[table["verdict"] == REGRESSION]
        if len(regressions):
            lines += ["#### Regressions", "", diff_table(regressions), ""]
        others = table[table["verdict"] != REGRESSION]
        if len(others):
            lines += [f"<details><summary>{len(others)} other changes (improved, within tolerance, unchecked)</summary>", "", diff_table(others), "", "</details>", ""]
        return "\n".join(lines)

    def failures(self, allow_missing: bool = False) -> list[str]:
        """Why this comparison fails a CI gate, one line each (none: it passes). A CI job that
        measured nothing, or lost cells, must not pass."""
        reasons = []
        if self.regressions:
            reasons.append(f"{self.regressions} regressions")
        if not self.matched:
            reasons.append("no cell of the new results is in the baseline: nothing was compared")
        if self.missing and not allow_missing:
            reasons.append(f"{len(self.missing)} baseline cells are missing from the new results (--allow-missing accepts a partial run)")
        return reasons


def diff_table(diffs: pd.DataFrame) -> str:
    return text_table(diffs)


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _judge(tol: Tolerance, base: float, new: float) -> tuple[float, str]:
    allowed = tol.allowance(base)
    worse = tol.worsening(base, new)
    return allowed, REGRESSION if worse > allowed else IMPROVED if worse < 0 else WITHIN


def compare(baseline: pd.DataFrame, new: pd.DataFrame, tolerances: Tolerances) -> Comparison:
    """Match rows of two result sets by `id` and judge every quantity that changed."""
    baseline, new = add_speedup(baseline), add_speedup(new)
    base_rows = {r["id"]: r for r in baseline.to_dict(orient="records")}
    new_rows = {r["id"]: r for r in new.to_dict(orient="records")}
    columns = list(dict.fromkeys(metric_columns(baseline, ("value",)) + metric_columns(new, ("value",))))
    diffs: list[dict[str, Any]] = []
    unchecked: set[str] = set()

    def add(cell: str, quantity: str, base: Any, now: Any, allowed: Any, verdict: str) -> None:
        change = now - base if _finite(base) and _finite(now) else None
        diffs.append({"cell": cell, "quantity": quantity, "baseline": base, "new": now, "change": change, "allowed": allowed, "verdict": verdict})

    matched = [i for i in base_rows if i in new_rows]
    cpu_timings = 0
    for ident in matched:
        b, n = base_rows[ident], new_rows[ident]
        cell = n["cell"]
        if b["status"] != n["status"]:
            verdict = REGRESSION if b["status"] == "ok" else IMPROVED if n["status"] == "ok" else CHANGED
            add(cell, "status", b["status"], n["status"], None, verdict)
        if b["status"] != "ok" or n["status"] != "ok":
            continue
        if "cpu" in (b.get("device"), n.get("device")):
            cpu_timings += 1  # a CPU's timings move with whatever else it runs: not a regression signal
        elif not n.get("method_dense") and _finite(b["speedup"]) and _finite(n["speedup"]) and b["speedup"] != n["speedup"]:
            allowed, verdict = _judge(tolerances.speedup, b["speedup"], n["speedup"])
            add(cell, "speedup", b["speedup"], n["speedup"], allowed, verdict)
        if b.get("weights_random") or n.get("weights_random"):
            continue
        for column in columns:
            base_value, new_value = b.get(column), n.get(column)
            if not _finite(base_value) or base_value == new_value:
                continue
            tol = tolerances.for_metric(column)
            if tol is None:
                unchecked.add(column)
                add(cell, column, base_value, new_value, None, UNCHECKED)
            elif not _finite(new_value):
                add(cell, column, base_value, new_value, tol.allowance(base_value), REGRESSION)
            else:
                allowed, verdict = _judge(tol, base_value, new_value)
                add(cell, column, base_value, new_value, allowed, verdict)
    return Comparison(
        diffs=pd.DataFrame(diffs, columns=["cell", "quantity", "baseline", "new", "change", "allowed", "verdict"]),
        matched=len(matched),
        missing=[base_rows[i]["cell"] for i in base_rows if i not in new_rows],
        added=[new_rows[i]["cell"] for i in new_rows if i not in base_rows],
        unchecked=sorted(unchecked),
        cpu_timings=cpu_timings,
    )
