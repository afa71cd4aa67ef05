"""Reports of a results folder: tables and a Parquet export (plots: bench.plots; across folders: bench.leaderboard).

Rows measured under a published protocol come first, one table per protocol setting (and frame
count) laid out as the paper's table: the protocol's own columns in its order and units, one row
per model and method, aggregated the protocol's way (pairs pooled, per category, weighted by valid
pixels) from the rows and their raw arrays; a row whose suite overrode the protocol is marked not
comparable. Then one table per (model, dataset, frame count), one row per method; where a model and dataset were
measured at several frame counts, the report opens with the sweep: median time, speedup and peak
memory by frame count, one row per method. A cell's speedup is the median
time of the dense method on the same inputs (same model, weights, dataset, scene, frames, device:
the row's `inputs_id`) in the same results over the method's median time. A table row aggregates
the scenes of its group: times are means over measured scenes, metric keys aggregate as their
metric declares (means; counts such as invalid pairs or valid pixels are summed), peak memory the
maximum, the speedup the geometric mean of the per-scene speedups. Rows from random weights keep
their accuracy columns and say they are timing only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.env import commit_name, device_name
from bench.protocols import PROTOCOLS, SceneResult
from bench.store import ResultsError, ResultStore, cells_path, read_raw, read_rows
from metrics import METRICS, column_key

GROUP_KEYS = ("model", "dataset", "frames")
SWEEP_QUANTITIES = {"time_s": "median time (s)", "speedup": "speedup vs dense", "peak_gib": "peak memory (GiB)"}
TIMING_ONLY = "random weights: accuracy not meaningful (timing only)"
FORMATS = {"md": "github", "latex": "latex_booktabs", "csv": None}
SUFFIXES = {"md": "md", "latex": "tex", "csv": "csv"}


def load_results(location: str | Path, environments: dict[str, Any] | None = None) -> pd.DataFrame:
    """The measured rows of a results folder (newest per cell) as a frame, with the `gpu` (or CPU)
    each was measured on (from `environments`, read from env.json when not given) and a `speedup`
    column added. An analysis's attention statistics rows are not measurements of a method:
    `bench.analysis` reads them."""
    df = pd.DataFrame([row for row in read_rows(location) if row.get("analysis") is None])  # attention statistics: bench.analysis
    if environments is None:
        environments = _store(location).environments()
    if environments and "env_id" in df:
        df["gpu"] = df["env_id"].map(lambda ident: device_name(environments[ident]) if isinstance(ident, str) and ident in environments else None)
    return add_speedup(df)


def metric_columns(df: pd.DataFrame, kinds: tuple[str, ...] = ("value", "diagnostic")) -> list[str]:
    """Numeric `<metric>.<key>` columns of the metrics the rows were scored with, in row order,
    whose declared kind is one of `kinds`; keys of metrics not registered here count as values
    (their results can still be read and compared, with tolerances that say which way is better)."""
    names = {m for listed in df.get("metrics", pd.Series(dtype=object)).dropna() for m in listed}

    def kind(column: str) -> str | None:
        declared = column_key(column)
        return declared.kind if declared is not None else "value" if column.split(".", 1)[0] not in METRICS else None

    return [c for c in df.columns if "." in c and c.split(".", 1)[0] in names and pd.api.types.is_numeric_dtype(df[c]) and kind(c) in kinds]


def add_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """`dense_time_s` and `speedup` = dense median time / this row's median time, per inputs_id
    and, where rows say (`gpu`), per GPU: a speedup never divides times of two devices.

    The baseline is the measured dense row with the same inputs; where several methods are dense
    the one named `dense` wins. Rows without a measured baseline get NaN.
    """
    df = df.copy()
    for column in ("time_median_s", "method_dense", "status", "method_name", "inputs_id"):
        if column not in df:
            df[column] = np.nan
    pairing = df["inputs_id"].astype(str) + ("|" + df["gpu"].astype(str) if "gpu" in df else "")
    dense = df.assign(_pair=pairing)[(df["method_dense"] == True) & (df["status"] == "ok")]  # noqa: E712  (NaN-safe)
    dense = dense.assign(_named=dense["method_name"] != "dense").sort_values("_named", kind="stable")
    baseline = dense.drop_duplicates("_pair").set_index("_pair")["time_median_s"]
    df["dense_time_s"] = pairing.map(baseline).astype(float)
    measured = df["status"] == "ok"
    df["speedup"] = np.where(measured, df["dense_time_s"] / df["time_median_s"].astype(float), np.nan)
    return df


def _aggregation(column: str) -> str:
    """How a metric column combines the scenes of a table row, as the metric declares it (mean by default)."""
    key = column_key(column)
    return key.aggregate if key is not None else "mean"


def random_weights(df: pd.DataFrame) -> pd.Series:
    """Whether each row was measured with random weights (rows that do not say: not)."""
    return df["weights_random"].fillna(False).astype(bool) if "weights_random" in df else pd.Series(False, index=df.index)


def _geometric_mean(values: pd.Series) -> float:
    values = values.dropna()
    return float(np.exp(np.log(values).mean())) if len(values) else float("nan")


def _ok_scenes(cells: pd.DataFrame) -> int:
    return cells.loc[cells["status"] == "ok", "scene"].nunique()


def _note(cells: pd.DataFrame, expected: int, dense_scenes: int | None) -> str:
    """What a reader must know of a row: random weights, scenes that failed or are missing, and
    whether it averages fewer scenes than its dense row (then its means are not comparable)."""
    notes = []
    if random_weights(cells).any():
        notes.append(TIMING_ONLY)
    failed = cells.loc[cells["status"] != "ok", "status"].value_counts()
    notes.extend(f"{status} in {count} of {expected} scenes" for status, count in failed.items())
    missing = expected - cells["scene"].nunique()
    if missing:
        notes.append(f"no row for {missing} of {expected} scenes")
    if dense_scenes is not None and _ok_scenes(cells) < dense_scenes:
        notes.append(f"not comparable with dense: averages {_ok_scenes(cells)} of its {dense_scenes} scenes")
    return "; ".join(notes)


def summary_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, dataset, frames, method), scenes aggregated; models, datasets and methods
    in first-run order, frame counts ascending (a sweep resumed in pieces reads in order). `scenes`
    reads k/n: k scenes measured out of the n that any method of the group has a row for."""
    if df.empty:
        return pd.DataFrame(columns=[*GROUP_KEYS, "method"])
    columns = metric_columns(df)
    records = []
    for keys, group in df.groupby(list(GROUP_KEYS), sort=False, dropna=False):
        expected = group["scene"].nunique()
        dense = group[group["method_dense"] == True]  # noqa: E712  (NaN-safe)
        dense_scenes = _ok_scenes(dense) if len(dense) else None
        for method, cells in group.groupby("method", sort=False):
            ok = cells[cells["status"] == "ok"]
            record: dict[str, Any] = dict(zip([*GROUP_KEYS, "method"], (*keys, method)))
            record["weights"] = cells["weights"].iloc[0]
            record["weights_random"] = bool(random_weights(cells).any())
            record["scenes"] = f"{ok['scene'].nunique()}/{expected}"
            record.update({c: ok[c].agg(_aggregation(c)) for c in columns})
            record["time_s"] = ok["time_median_s"].mean()
            record["peak_gib"] = ok["peak_mem_gib"].max() if "peak_mem_gib" in ok else np.nan
            record["speedup"] = _geometric_mean(ok["speedup"])
            record["note"] = _note(cells, expected, None if cells["method_dense"].eq(True).all() else dense_scenes)
            records.append(record)
    summary = pd.DataFrame.from_records(records)
    first_seen = {column: {value: i for i, value in enumerate(summary[column].unique())} for column in ("model", "dataset")}
    order = summary.assign(
        _model=summary["model"].map(first_seen["model"]),
        _dataset=summary["dataset"].map(first_seen["dataset"]),
        _frames=pd.to_numeric(summary["frames"], errors="coerce").fillna(np.inf),  # "all" after every count
    ).sort_values(["_model", "_dataset", "_frames"], kind="stable")
    return summary.loc[order.index].reset_index(drop=True)


def tables(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) per (model, dataset, frames) group; tables index by method."""
    summary = summary_rows(df)
    out = []
    for (model, dataset, frames), group in summary.groupby(list(GROUP_KEYS), sort=False, dropna=False):
        title = f"{model} ({group['weights'].iloc[0]}) · {dataset} · {frames} frames"
        table = group.drop(columns=[*GROUP_KEYS, "weights", "weights_random"]).dropna(axis=1, how="all")
        out.append((title, table.reset_index(drop=True)))
    return out


def frame_sweeps(summary: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """((model, dataset), rows) of every model and dataset measured at numeric frame counts, as ints."""
    numeric = summary[pd.to_numeric(summary["frames"], errors="coerce").notna()].astype({"frames": int})
    return list(numeric.groupby(["model", "dataset"], sort=False))


def sweep_tables(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) per `SWEEP_QUANTITIES` entry for each model and dataset measured at two or more
    frame counts: methods (in run order) by frame counts (ascending); unmeasured cells stay empty."""
    out = []
    for (model, dataset), group in frame_sweeps(summary_rows(df)):
        if group["frames"].nunique() < 2:
            continue
        methods = list(group["method"].unique())
        for quantity, label in SWEEP_QUANTITIES.items():
            table = group.pivot(index="method", columns="frames", values=quantity).reindex(methods)
            table = table[sorted(table.columns)].rename(columns=lambda frames: f"{frames} frames")
            out.append((f"{model} ({group['weights'].iloc[0]}) · {dataset} · {label} by frame count", table.reset_index()))
    return out


PROTOCOL_GROUP = ("protocol", "dataset", "protocol_variant", "frames")


def protocol_tables(df: pd.DataFrame, location: str | Path) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) per protocol setting and frame count: one row per model and method with the
    protocol's columns (aggregated from the scenes' rows and the raw arrays in `location`), the
    scenes scored, mean time, speedup, peak memory, and whether the row is comparable with the paper."""
    if "protocol" not in df or df["protocol"].isna().all():
        return []
    out = []
    measured = df[df["protocol"].notna()]
    for (name, dataset, variant, frames), group in measured.groupby(list(PROTOCOL_GROUP), sort=False, dropna=False):
        protocol = PROTOCOLS.get(name)
        setting = protocol.setting(group["dataset_name"].iloc[0], variant)
        expected = group["scene"].nunique()
        records = []
        for (model, method), cells in group.groupby(["model", "method"], sort=False):
            ok = cells[cells["status"] == "ok"]
            scenes = [SceneResult(r["scene"], r, read_raw(location, r)) for r in ok.to_dict(orient="records")]
            record: dict[str, Any] = {"model": model, "method": method}
            record |= protocol.table_row(scenes, setting) if scenes else dict.fromkeys((c.label for c in protocol.columns), np.nan)
            record |= {
                "scenes": f"{ok['scene'].nunique()}/{expected}",
                "time_s": ok["time_median_s"].mean(),
                "speedup": _geometric_mean(ok["speedup"]),
                "peak_gib": ok["peak_mem_gib"].max() if "peak_mem_gib" in ok else np.nan,
                "comparable": _comparability(cells, protocol.version, expected),
            }
            records.append(record)
        title = f"{name} v{protocol.version} · {dataset} ({variant}) · {frames} frames · {protocol.reproduces}"
        out.append((title, pd.DataFrame.from_records(records)))
    return out


def _comparability(cells: pd.DataFrame, version: int, expected: int) -> str:
    """"yes", or why these rows cannot be laid beside the paper's table."""
    reasons = []
    overrides = [o for o in cells.get("protocol_overrides", pd.Series(dtype=object)).dropna() if o]
    if overrides:
        reasons.append("overrides " + ", ".join(sorted({key for o in overrides for key in o})))
    if set(cells["protocol_version"].dropna().astype(int)) != {version}:
        reasons.append(f"measured under another version than v{version}")
    if random_weights(cells).any():
        reasons.append("random weights")
    unmeasured = expected - _ok_scenes(cells)
    if unmeasured:
        reasons.append(f"{unmeasured} of {expected} scenes not measured")
    return "no: " + "; ".join(reasons) if reasons else "yes"


def text_table(table: pd.DataFrame, tablefmt: str = "github", missingval: str = "–") -> str:
    """A table as text the way every report prints one: numbers to 4 significant digits, no index."""
    return tabulate(table, headers="keys", tablefmt=tablefmt, showindex=False, floatfmt=".4g", missingval=missingval)


def render(df: pd.DataFrame, fmt: str = "md", location: str | Path | None = None) -> str:
    """The report of `df` as Markdown, LaTeX (one table per group) or CSV (one table, group columns
    first); protocol tables need the results folder (`location`) for the rows' raw arrays."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if fmt == "csv":
        return summary_rows(df).to_csv(index=False)
    parts = []
    protocol_part = protocol_tables(df, location) if location is not None else []
    if location is None and "protocol" in df and df["protocol"].notna().any():
        raise ResultsError("rows measured under a protocol need their results folder to be reported (their raw arrays live there)")
    unprotocolled = df[df["protocol"].isna()] if "protocol" in df else df  # protocol rows are reported the protocol's way
    for title, table in protocol_part + sweep_tables(df) + tables(unprotocolled):
        body = text_table(table.astype(object).where(table.notna(), None), FORMATS[fmt])  # unmeasured cells print as missingval
        parts.append(f"## {title}\n\n{body}\n" if fmt == "md" else f"% {title}\n{body}\n")
    return "\n".join(parts)


def write_report(results_dir: str | Path, fmt: str = "md") -> tuple[str, Path]:
    """Render the report of a results folder, opened by where and when its rows were measured, and
    write it beside the rows as report.<md|tex|csv>."""
    store = _store(results_dir)
    environments = store.environments()
    df = load_results(results_dir, environments)
    text = render(df, fmt, results_dir)
    if fmt != "csv":
        text = ("" if fmt == "md" else "% ") + provenance(df, environments) + "\n\n" + text
    return text, store.write_text(f"report.{SUFFIXES[fmt]}", text)


def provenance(df: pd.DataFrame, environments: dict[str, Any]) -> str:
    """One line a reader cannot mistake: hardware, commit, dates, and whether the weights were random."""
    envs = [environments.get(ident, {}) for ident in dict.fromkeys(df["env_id"].dropna())] if "env_id" in df else []
    dates = f"{str(df['recorded_at'].min())[:10]} – {str(df['recorded_at'].max())[:10]}" if "recorded_at" in df else "unknown dates"
    devices = list(dict.fromkeys(map(device_name, envs)))
    mixed = " (speedups pair rows of the same GPU only)" if len(devices) > 1 else ""
    return (
        f"Measured on {', '.join(devices) or 'an unrecorded device'}{mixed} at commit "
        f"{', '.join(dict.fromkeys(map(commit_name, envs))) or 'unknown'}, {dates}; {weights_summary(df)}."
    )


def weights_summary(df: pd.DataFrame) -> str:
    """Whether rows have real weights, random ones (timing only), or which models have random ones."""
    random = random_weights(df)
    if random.all():
        return "random weights (timing only)"
    return "real weights" if not random.any() else f"random weights for {', '.join(dict.fromkeys(df.loc[random, 'model']))} (timing only)"


def _store(results_dir: str | Path) -> ResultStore:
    """The store of a results folder (given as the folder or its cells.jsonl), which writes its files."""
    return ResultStore(cells_path(results_dir).parent)


# -- export ------------------------------------------------------------------------------------------


def export_parquet(results_dir: str | Path, path: str | Path | None = None) -> Path:
    """The rows as a Hugging Face `datasets.Dataset` saved as Parquet (rows.parquet by default).

    Nested values (options, plans) and columns that mix types become JSON strings, so every
    column has one Arrow type.
    """
    import datasets  # imported here: it is slow to import and only this needs it

    df = load_results(results_dir)
    records = df.astype(object).where(df.notna(), None).to_dict(orient="records")
    for column in df.columns:
        values = [r[column] for r in records if r[column] is not None]
        kinds = {type(v) for v in values}
        if any(isinstance(v, (dict, list)) for v in values) or (len(kinds) > 1 and not kinds <= {int, float}):
            for r in records:
                r[column] = None if r[column] is None else json.dumps(r[column], sort_keys=True, default=str)
    target = Path(path) if path else _store(results_dir).path("rows.parquet")
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # one small table: a progress bar would only clutter the report
    try:
        datasets.Dataset.from_list(records).to_parquet(str(target))
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    return target
