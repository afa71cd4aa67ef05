"""`avggt-bench analyze`: the roles of a model's global attention layers, measured, and AVGGT's two
knobs (t_early, σ) chosen from the measurements.

AVGGT rests on a finding: early global layers form no real cross-view correspondence, middle
layers align the views, the last ones refine. A suite with `analysis:` settings (one model) checks
that for its model on scenes with ground-truth geometry, in one results folder, resumable like
any run:

1. **attention statistics**: one row per (dataset, scene, frames), `analysis: attention`, with
   each global layer's correspondence, mass and entropy (`bench.attention_stats`; per-head arrays
   in raw/);
2. **ablations**, ordinary cells scored with the suite's metrics and timed: dense; each global
   layer alone as frame attention; the first t layers as frame attention (t = 1 … all); then σ
   swept with the first t_early layers as frame attention (the t sweep's choice, or the suite's);
3. **the recommendation**: among the t sweep (σ = 1) and the σ sweep, the plan whose accuracy
   value stays within the tolerance of dense in every (dataset, frames) group at the lowest cost
   (median time, or global-attention FLOPs), written as a ready `avggt` plan.

Its report (analysis.md, recommendation.json, plots/) comes from the rows alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench import plots, runner
from bench.attention_stats import STATISTICS, AttentionRecorder
from bench.methods import resolve_plan
from bench.methods.layout import Layout
from bench.methods.params import layer_set
from bench.models import ModelTraits
from bench.report import load_results, provenance, summary_rows, text_table
from bench.store import ResultStore, read_raw, read_rows
from bench.suite import AnalysisSpec, Cell, Expansion, MethodSpec, Suite, expand, fail_at, traits_of
from bench.timing import time_forward
from metrics import direction

ATTENTION = "attention"  # the method label of attention-statistics rows, and their `analysis` kind
GROUP = ("dataset", "frames")


class AnalysisError(ValueError):
    """An analysis that cannot conclude (e.g. dense failed): the message says what is missing."""


def frame_layers(t: int) -> str:
    """The `frame_layers` parameter that turns the first t global layers into frame attention."""
    return f"0-{t - 1}" if t else "none"


def sweep_methods(num_layers: int) -> list[MethodSpec]:
    """Dense, each global layer alone as frame attention, and the first t layers (t = 2 … all; t = 1
    is layer 0 alone)."""
    methods = [MethodSpec("dense", "dense")]
    methods += [MethodSpec("g2f", f"frame-L{i:02d}", {"frame_layers": str(i)}) for i in range(num_layers)]
    methods += [MethodSpec("g2f", f"first-{t:02d}", {"frame_layers": frame_layers(t)}) for t in range(2, num_layers + 1)]
    return methods


def sigma_methods(t_early: int, sigmas: tuple[int, ...], num_layers: int) -> list[MethodSpec]:
    """AVGGT with the first `t_early` global layers as frame attention, one cell per σ (none when
    every layer is frame attention: no layer is left to subsample)."""
    if t_early == num_layers:
        return []
    return [MethodSpec("avggt", f"avggt-t{t_early:02d}-s{sigma}", {"frame_layers": frame_layers(t_early), "sigma": sigma}) for sigma in sigmas]


def expansion_of(suite: Suite, methods: list[MethodSpec], device: str | None = None) -> Expansion:
    """The cells of an analysis suite with `methods` (its model's ablations)."""
    return expand(replace(suite, methods=tuple(methods)), device)


def model_traits(suite: Suite) -> ModelTraits:
    """The traits of an analysis suite's one model, which must have global attention layers."""
    traits = traits_of(suite.models[0])
    if not traits.num_global_layers:
        fail_at(suite.source, "models[0]", f"model {suite.models[0].name!r} has no global attention layers to analyse", "vggt-1b, vggt-tiny, pi3, pi3-tiny or another model with global attention")
    spec = suite.analysis
    if spec.t_early is not None and spec.t_early > traits.num_global_layers:
        fail_at(suite.source, "analysis.t_early", f"{spec.t_early} is more than the model's {traits.num_global_layers} global layers", f"0 … {traits.num_global_layers}, or recommended")
    return traits


def first_phase(suite: Suite, device: str | None = None) -> tuple[ModelTraits, Expansion]:
    """The model's traits and the ablation cells every analysis runs before choosing t_early."""
    traits = model_traits(suite)
    return traits, expansion_of(suite, sweep_methods(traits.num_global_layers), device)


# -- attention statistics ------------------------------------------------------------------------


def attention_cells(expansion: Expansion, spec: AnalysisSpec) -> Expansion:
    """One attention-statistics cell per distinct inputs (dataset, scene, frames) of `expansion`."""
    cells: dict[str, Cell] = {}
    for cell in expansion.cells:
        if cell.inputs_id not in cells:
            recorder = AttentionRecorder(spec.queries, spec.radius, spec.seed)
            cells[cell.inputs_id] = replace(cell, method=MethodSpec(ATTENTION, ATTENTION, spec.as_row()), plan=recorder)
    return Expansion(list(cells.values()), [], expansion.adapters)


def measure_attention(cell: Cell, models: Any, sequences: Any, env_id: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The row of one attention-statistics cell: one forward under its `AttentionRecorder`, timed
    (wall time, peak memory), with the statistics; a failure becomes the row's status as in `runner.measure`."""
    row = runner.base_row(cell, env_id) | {"metrics": [], "metric_options": {}, "metric_versions": {}}
    stage = "loading the model and data"
    try:
        model, seq = runner.load_inputs(cell, models, sequences, row)
        stage = "attention statistics"
        images = torch.from_numpy(seq.images).to(cell.device)
        cell.plan.prepare(seq)
        _, timing = time_forward(lambda: model.run(images, cell.plan, seq), cell.device, warmup=0, repeats=1)
        fields, arrays = cell.plan.result()
        row.update(timing.as_row(), **fields, status="ok", recorded_at=runner.now())
        arrays["frame_ids"] = np.asarray(seq.frame_ids, dtype=str)
    except Exception as exc:
        failure = exc if isinstance(exc, runner.CellFailure) else runner.CellFailure.from_exception(exc, stage)
        row.update(failure.as_row(), recorded_at=runner.now())
        arrays = {}
    return row, arrays


def attention_rows(location: str | Path) -> list[dict[str, Any]]:
    """The measured attention-statistics rows of a results folder, with their per-head arrays."""
    rows = [r for r in read_rows(location) if r.get("analysis") == ATTENTION and r.get("status") == "ok"]
    return [r | {"arrays": read_raw(location, r)} for r in rows]


def layer_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per global layer: each statistic's mean over heads and scenes, beside the chance
    level of correspondence (`chance`) and the number of scenes."""
    table = pd.DataFrame({"layer": rows[0]["attention.layers"]})
    for name in STATISTICS:
        per_scene = np.stack([r["arrays"][f"attention.{name}"].mean(axis=1) for r in rows])  # (scenes, layers); NaN where not defined
        table[name] = per_scene.mean(axis=0)
        if name == "mass":
            table["chance"] = np.mean([r["attention.chance_hit"] for r in rows])
    return table


def uniform_row(rows: list[dict[str, Any]]) -> dict[str, float]:
    """What uniform attention scores on the rows' scenes: the line every layer is read against."""
    chance = {name: float(np.mean([r[f"attention.chance_{name}"] for r in rows])) for name in ("hit", "mass")}
    return chance | {name: rows[0][f"attention.uniform_{name}"] for name in ("other", "own", "special", "reference", "entropy")}  # one layout per group


def attention_groups(rows: list[dict[str, Any]]) -> dict[tuple[str, Any], list[dict[str, Any]]]:
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["frames"]), []).append(row)
    return groups


# -- ablations and the recommendation -------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One plan of the t or σ sweep, scored against dense over every (dataset, frames) group."""

    method: str  # the cell label
    t_early: int
    sigma: int  # 1: no subsampling (the t sweep)
    accuracy: float  # mean over groups
    dense_accuracy: float
    worst_change: float  # the largest loss against dense over groups, signed so that negative is worse
    time_s: float  # mean over groups
    speedup: float  # geometric mean over groups
    cost: float  # relative to dense, mean over groups
    within: bool  # every group measured and within the tolerance

    @property
    def params(self) -> dict[str, Any]:
        return {"frame_layers": frame_layers(self.t_early), "sigma": self.sigma}

    @property
    def options(self) -> str:
        """The plan as `predict` options."""
        return "--method avggt " + " ".join(f"-p {key}={value}" for key, value in self.params.items())


@dataclass(frozen=True)
class Recommendation:
    chosen: Candidate
    accuracy: str
    tolerance: float
    cost: str
    t_sweep: list[Candidate]  # dense (t = 0) and t = 1 … all, σ = 1
    sigma_sweep: list[Candidate]
    weights_random: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": "avggt",
            "params": self.chosen.params,
            "predict_options": self.chosen.options,
            "suite_entry": {"name": "avggt", "params": self.chosen.params},
            "accuracy": self.accuracy,
            "tolerance": self.tolerance,
            "cost": self.cost,
            "weights_random": self.weights_random,
            "chosen": asdict(self.chosen),
            "t_sweep": [asdict(c) for c in self.t_sweep],
            "sigma_sweep": [asdict(c) for c in self.sigma_sweep],
        }

    def lines(self) -> list[str]:
        """The recommendation with its evidence, as printed and written."""
        c = self.chosen
        within_t = [x.t_early for x in self.t_sweep if x.within]
        breaking = [x.t_early for x in self.t_sweep if not x.within and x.t_early > max(within_t, default=0)]
        lines = [
            f"recommended plan: {c.options}  (t_early = {c.t_early}, σ = {c.sigma})",
            f"  {self.accuracy}: {c.accuracy:.4g} vs dense {c.dense_accuracy:.4g} (worst group {c.worst_change:+.4g}; tolerance {self.tolerance:g})",
            f"  median time {c.time_s:.4g} s, speedup {c.speedup:.3g}× over dense; relative {self.cost} {c.cost:.3g}",
            f"  t sweep (σ = 1): within tolerance for t = {_ranges(within_t)}" + (f"; first t outside: {breaking[0]}" if breaking else ""),
        ]
        if self.sigma_sweep:
            t = self.sigma_sweep[0].t_early
            lines.append(f"  σ sweep at t_early = {t}: " + ", ".join(f"σ={x.sigma} {'within' if x.within else 'outside'} ({x.worst_change:+.3g})" for x in self.sigma_sweep))
        if self.weights_random:
            lines.append("  random weights: the accuracy means nothing; the choice shows the procedure only")
        return lines


def _ranges(values: list[int]) -> str:
    return str(layer_set(values)) if values else "none"


def ablation_kind(row: dict[str, Any], num_layers: int) -> tuple[str, int, int] | None:
    """("t", t, σ=1) for dense and the first-t cells, ("σ", t, σ) for AVGGT cells, None otherwise;
    read from the row's method and parameters."""
    name, params = row.get("method_name"), row.get("method_params") or {}
    if name == "dense":
        return ("t", 0, 1)
    layers = layer_set(params.get("frame_layers", "none")).indices(num_layers, "frame_layers")
    prefix = layers == tuple(range(len(layers)))
    if name == "g2f" and prefix:
        return ("t", len(layers), 1)
    if name == "avggt" and prefix:
        return ("σ", len(layers), int(params["sigma"]))
    return None


def single_layer(row: dict[str, Any], num_layers: int) -> int | None:
    """The layer a g2f cell turns into frame attention when it turns exactly one."""
    if row.get("method_name") != "g2f":
        return None
    layers = layer_set((row.get("method_params") or {}).get("frame_layers", "none")).indices(num_layers, "frame_layers")
    return layers[0] if len(layers) == 1 else None


def relative_flops(method_name: str, params: dict[str, Any], traits: ModelTraits, layout: Layout) -> float:
    """Global-attention FLOPs of a plan over those of dense, for one layout (the rest of the model
    is the same under every plan)."""
    plan, dense = resolve_plan(method_name, params, traits), resolve_plan("dense", {}, traits)
    layers = range(traits.num_global_layers)
    return sum(plan.layer_flops(i, layout, 1) for i in layers) / sum(dense.layer_flops(i, layout, 1) for i in layers)


def candidates(df: pd.DataFrame, spec: AnalysisSpec, traits: ModelTraits, layouts: dict[tuple[str, Any], Layout], kind: str) -> list[Candidate]:
    """The t sweep (`kind` "t") or σ sweep ("σ") of the rows, each scored against dense per group."""
    num_layers = traits.num_global_layers
    ok = df[df["status"] == "ok"]
    records = {r["method"]: r for r in ok.to_dict(orient="records")}
    kinds = {method: ablation_kind(r, num_layers) for method, r in records.items()}
    summary = summary_rows(ok[ok["method"].map(lambda m: kinds.get(m) is not None)])
    if summary.empty or spec.accuracy not in summary:
        return []
    sign = 1.0 if direction(spec.accuracy) == "higher" else -1.0
    groups = list(summary.groupby(list(GROUP), sort=False))
    dense = {key: g[g["method"] == "dense"] for key, g in groups}
    found: dict[tuple[int, int], Candidate] = {}
    for method, (k, t, sigma) in ((m, found_kind) for m, found_kind in kinds.items() if found_kind is not None):
        if k != kind or (t, sigma) in found:
            continue
        changes, accuracies, dense_accuracies, times, speedups, costs = [], [], [], [], [], []
        for key, group in groups:
            mine = group[group["method"] == method]
            if mine.empty or dense[key].empty:
                changes.append(math.nan)
                continue
            accuracy, base = float(mine[spec.accuracy].iloc[0]), float(dense[key][spec.accuracy].iloc[0])
            changes.append(sign * (accuracy - base))
            accuracies.append(accuracy)
            dense_accuracies.append(base)
            times.append(float(mine["time_s"].iloc[0]))
            speedups.append(float(mine["speedup"].iloc[0]))
            if spec.cost == "flops":
                if key not in layouts:
                    raise AnalysisError(f"cost flops counts each group's token layout, recorded by its attention statistics; {key[0]} at {key[1]} frames has none (its statistics row failed): fix that, or set analysis.cost: time")
                costs.append(relative_flops(records[method]["method_name"], records[method]["method_params"] or {}, traits, layouts[key]))
            else:
                costs.append(1.0 / speedups[-1])
        worst = min(changes) if changes and not any(math.isnan(c) for c in changes) else math.nan
        found[(t, sigma)] = Candidate(
            method, t, sigma, _mean(accuracies), _mean(dense_accuracies), worst, _mean(times),
            float(np.exp(np.mean(np.log(speedups)))) if speedups else math.nan, _mean(costs),
            within=not math.isnan(worst) and worst >= -spec.tolerance and not math.isnan(_mean(costs)),
        )  # fmt: skip
    return [found[key] for key in sorted(found)]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def best(options: list[Candidate]) -> Candidate | None:
    """The cheapest plan within the tolerance; equal costs go to the larger t_early, then σ."""
    within = [c for c in options if c.within]
    return min(within, key=lambda c: (c.cost, -c.t_early, -c.sigma)) if within else None


def recommend_t_early(df: pd.DataFrame, spec: AnalysisSpec, traits: ModelTraits, layouts: dict[tuple[str, Any], Layout]) -> int:
    """The t_early the σ sweep runs at: the suite's, or the t sweep's choice."""
    if spec.t_early is not None:
        return spec.t_early
    chosen = best(candidates(df, spec, traits, layouts, "t"))
    if chosen is None:
        raise AnalysisError(f"no plan of the t sweep, not even dense, has a measured {spec.accuracy} in every group; see the error rows")
    return chosen.t_early


def recommend(df: pd.DataFrame, spec: AnalysisSpec, traits: ModelTraits, layouts: dict[tuple[str, Any], Layout]) -> Recommendation:
    t_sweep = candidates(df, spec, traits, layouts, "t")
    sigma_sweep = candidates(df, spec, traits, layouts, "σ")
    chosen = best(t_sweep + sigma_sweep)
    if chosen is None:
        raise AnalysisError(f"no plan, not even dense, has a measured {spec.accuracy} in every group; see the error rows")
    random = bool(df["weights_random"].fillna(False).astype(bool).any()) if "weights_random" in df else False
    return Recommendation(chosen, spec.accuracy, spec.tolerance, spec.cost, t_sweep, sigma_sweep, random)


def layouts_of(rows: list[dict[str, Any]]) -> dict[tuple[str, Any], Layout]:
    """The token layout of each (dataset, frames) group, as the attention rows recorded it."""
    out = {}
    for row in rows:
        layout = dict(row["attention.layout"])
        out[(row["dataset"], row["frames"])] = Layout(**{**layout, "grid": tuple(layout["grid"])})
    return out


# -- tables, plots and the whole command ------------------------------------------------------------


def ablation_tables(df: pd.DataFrame, spec: AnalysisSpec, traits: ModelTraits) -> dict[tuple[str, Any], dict[str, pd.DataFrame]]:
    """Per (dataset, frames): single-layer, t-sweep and σ-sweep tables of accuracy, change against
    dense, median time and speedup (scenes aggregated as in the report)."""
    num_layers = traits.num_global_layers
    ok = df[df["status"] == "ok"]
    summary = summary_rows(ok)
    by_label = {r["method"]: r for r in ok.to_dict(orient="records")}
    sign = 1.0 if direction(spec.accuracy) == "higher" else -1.0
    out = {}
    for key, group in summary.groupby(list(GROUP), sort=False):
        dense = group[group["method"] == "dense"]
        base = float(dense[spec.accuracy].iloc[0]) if len(dense) and spec.accuracy in dense else math.nan
        records: dict[str, list[dict[str, Any]]] = {"single": [], "t": [], "σ": []}
        for row in group.to_dict(orient="records"):
            source = by_label[row["method"]]
            accuracy = row.get(spec.accuracy, math.nan)
            numbers = {spec.accuracy: accuracy, "change": sign * (accuracy - base), "time_s": row["time_s"], "speedup": row["speedup"]}
            if (layer := single_layer(source, num_layers)) is not None:
                records["single"].append({"layer": layer} | numbers)
            if (kind := ablation_kind(source, num_layers)) is not None:
                k, t, sigma = kind
                records[k].append({"t_early": t, "sigma": sigma, "method": row["method"]} | numbers | {"within": numbers["change"] >= -spec.tolerance})
        order = {"single": ["layer"], "t": ["t_early"], "σ": ["sigma"]}
        out[key] = {name: pd.DataFrame(r).sort_values(order[name]).reset_index(drop=True) for name, r in records.items() if r}
    return out


def render(store: ResultStore, df: pd.DataFrame, groups: dict[tuple[str, Any], list[dict[str, Any]]], ablations: dict[tuple[str, Any], dict[str, pd.DataFrame]], spec: AnalysisSpec, model: str, rec: Recommendation) -> str:
    """analysis.md: provenance, the recommendation, then per group the layer table and the ablations."""
    parts = [
        f"# Roles of global attention: {model}",
        provenance(df, store.environments()),
        "## Recommendation\n\n```\n" + "\n".join(rec.lines()) + "\n```",
    ]
    for (dataset, frames), group in groups.items():
        table = layer_table(group)
        uniform = {"layer": "uniform"} | uniform_row(group) | {"chance": np.nan}
        table = pd.concat([table, pd.DataFrame([uniform])[table.columns]], ignore_index=True)
        parts.append(
            f"## Attention by global layer · {dataset} · {frames} frames · {len(group)} scenes\n\n"
            f"hit / mass: top-1 hit rate and attention share within r = {spec.radius} patches (Chebyshev) of the true correspondence "
            f"(chance: uniform attention's); other / own / special / reference: where the attention goes; "
            f"entropy: share of log N. Means over {group[0]['attention.heads']} heads and the scenes.\n\n" + _markdown(table)
        )
    titles = {"single": "each global layer alone as frame attention", "t": "the first t global layers as frame attention (σ = 1)", "σ": "σ swept"}
    for (dataset, frames), tables in ablations.items():
        for name, table in tables.items():
            parts.append(f"## Ablation: {titles[name]} · {dataset} · {frames} frames\n\nchange: {spec.accuracy} against dense, negative is worse.\n\n" + _markdown(table))
    return "\n\n".join(parts) + "\n"


def _markdown(table: pd.DataFrame) -> str:
    table = table.astype(object).where(table.notna(), None)
    return text_table(table)


def write_outputs(results_dir: str | Path, suite: Suite, traits: ModelTraits) -> tuple[Recommendation, list[Path]]:
    """The recommendation from the rows of `results_dir`, and analysis.md, recommendation.json and
    the plots written beside them."""
    spec = suite.analysis
    store = ResultStore(results_dir)
    rows = attention_rows(results_dir)
    df = load_results(results_dir)
    rec = recommend(df, spec, traits, layouts_of(rows))
    groups, ablations = attention_groups(rows), ablation_tables(df, spec, traits)
    written = [
        store.write_text("analysis.md", render(store, df, groups, ablations, spec, suite.models[0].label, rec)),
        store.write_text("recommendation.json", json.dumps(rec.as_dict(), indent=2, default=float) + "\n"),
    ]
    figures = []
    weights = " (random weights)" if rec.weights_random else ""
    for (dataset, frames), group in groups.items():
        figures += plots.attention_role_figures(layer_table(group), uniform_row(group), f"{suite.models[0].label}{weights} · {dataset} · {frames} frames", plots.slug(dataset, frames))
    for (dataset, frames), tables in ablations.items():
        title = f"{suite.models[0].label}{weights} · {dataset} · {frames} frames"
        figures += plots.ablation_figures(tables, spec.accuracy, spec.tolerance, rec.chosen, title, plots.slug(dataset, frames))
    written += [store.write_bytes(f"plots/{name}.png", plots.png(fig)) for name, fig in figures]
    return rec, written


@dataclass
class AnalysisSummary:
    runs: list[runner.RunSummary]
    recommendation: Recommendation | None
    written: list[Path]

    @property
    def interrupted(self) -> bool:
        return any(s.interrupted for s in self.runs)

    @property
    def errors(self) -> int:
        return sum(s.statuses["error"] for s in self.runs)


def analyze(suite: Suite, store: ResultStore, device: str | None = None, progress: bool = True) -> AnalysisSummary:
    """Attention statistics, the t sweep, the σ sweep, and the recommendation with its report;
    cells already in `store` are not measured again. Stops early (`interrupted`) on Ctrl-C."""
    spec = suite.analysis
    traits, first = first_phase(suite, device)
    runs = [runner.run(attention_cells(first, spec), store, progress=progress, measure_cell=measure_attention)]
    if not runs[-1].interrupted:
        runs.append(runner.run(first, store, progress=progress))
    if runs[-1].interrupted:
        return AnalysisSummary(runs, None, [])
    layouts = layouts_of(attention_rows(store.directory))
    t_early = recommend_t_early(load_results(store.directory), spec, traits, layouts)
    runs.append(runner.run(expansion_of(suite, sigma_methods(t_early, spec.sigmas, traits.num_global_layers), device), store, progress=progress))
    if runs[-1].interrupted:
        return AnalysisSummary(runs, None, [])
    rec, written = write_outputs(store.directory, suite, traits)
    return AnalysisSummary(runs, rec, written)
