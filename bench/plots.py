"""Figures of summary rows (`bench.report.summary_rows`): time and speedup against frame count, and
accuracy against time. One figure per quantity, panels in a grid of at most four a row, log axes
labelled in plain numbers. Accuracy is plotted only for metric values (no counts or fitted
scales) and only for rows with real weights: random weights have no accuracy to show.

The analysis of global attention (`bench.analysis`) has its own figures, at the end: statistics by
layer, ablations by layer, and accuracy against time for its sweeps (titled as random weights
where they are: those show the procedure, not a result).
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report import SWEEP_QUANTITIES, load_results, metric_columns, summary_rows
from bench.store import ResultStore, cells_path

PANELS_PER_ROW = 4
PLOTTED = ("time_s", "speedup")  # of the report's sweep quantities


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display
    import matplotlib.pyplot as plt

    return plt


def _plain_log(axis: Any, values: list[float] | None = None) -> None:
    """Log scale labelled 2, 8, 100, 0.5 (not 10²); ticks at `values` where given."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
    axis.set_major_locator(FixedLocator(_spread(values)) if values else LogLocator(subs=(1.0, 2.0, 5.0)))


def _spread(values: list[float], ratio: float = 1.8) -> list[float]:
    """The values, thinned so neighbouring labels on a log axis stay `ratio` apart (the last kept)."""
    kept: list[float] = []
    for value in sorted(values):
        if kept and value / kept[-1] < ratio:
            if value != max(values):
                continue
            kept.pop()
        kept.append(value)
    return kept


def _grid(count: int, title: str):
    plt = _pyplot()
    columns = min(PANELS_PER_ROW, count)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, list(axes.flat[:count])


def slug(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", "_".join(str(p) for p in parts))


def sweep_figures(summary: pd.DataFrame, label: str = "") -> list[tuple[str, Any]]:
    """(name, figure) per quantity and dataset: one panel per model measured at two or more frame
    counts, one line per method."""
    numeric = summary[pd.to_numeric(summary["frames"], errors="coerce").notna()].astype({"frames": int})
    out = []
    for dataset, rows in numeric.groupby("dataset", sort=False):
        models = [m for m, g in rows.groupby("model", sort=False) if g["frames"].nunique() > 1]
        if not models:
            continue
        for quantity in PLOTTED:
            axis_label = SWEEP_QUANTITIES[quantity]
            fig, axes = _grid(len(models), f"{axis_label} by frame count · {dataset}{label}")
            for ax, model in zip(axes, models):
                group = rows[rows["model"] == model]
                for method, line in group.groupby("method", sort=False):
                    line = line.sort_values("frames").dropna(subset=[quantity])
                    ax.plot(line["frames"], line[quantity], marker="o", label=method)
                ax.set(xscale="log", yscale="log", xlabel="frames", ylabel=axis_label, title=model)
                _plain_log(ax.xaxis, sorted(group["frames"].unique()))
                _plain_log(ax.yaxis)
                ax.grid(True, which="major", alpha=0.3)
            axes[0].legend(fontsize="small")
            fig.tight_layout()
            out.append((slug(quantity, dataset), fig))
    return out


def accuracy_figures(summary: pd.DataFrame, value_columns: list[str], label: str = "") -> list[tuple[str, Any]]:
    """(name, figure) per (model, dataset) with real weights: one panel per metric value column
    (`metric_columns(rows, ("value",))`), each method's rows as points of time against it."""
    real = summary[~summary["weights_random"].astype(bool)]
    out = []
    for (model, dataset), group in real.groupby(["model", "dataset"], sort=False):
        columns = [c for c in value_columns if c in group and group[c].notna().any()]
        if not columns:
            continue
        fig, axes = _grid(len(columns), f"accuracy vs time · {model} · {dataset}{label}")
        for ax, column in zip(axes, columns):
            for method, points in group.groupby("method", sort=False):
                ax.scatter(points["time_s"], points[column], label=method)
            ax.set(xscale="log", xlabel="median time (s)", ylabel=column)
            _plain_log(ax.xaxis)
            ax.grid(True, alpha=0.3)
        axes[0].legend(fontsize="small")
        fig.tight_layout()
        out.append((slug("accuracy_vs_time", model, dataset), fig))
    return out


def png(fig: Any) -> bytes:
    """The figure as PNG bytes, and closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def write_plots(results_dir: str | Path) -> list[Path]:
    """PNGs in <results>/plots: time and speedup by frame count per dataset, accuracy vs time per
    model and dataset (real weights only)."""
    df = load_results(results_dir)
    summary = summary_rows(df)
    store = ResultStore(cells_path(results_dir).parent)
    written = []
    for name, fig in sweep_figures(summary) + accuracy_figures(summary, metric_columns(df, ("value",))):
        written.append(store.write_bytes(f"plots/{name}.png", png(fig)))
    return written


# -- the analysis of global attention (bench.analysis) ---------------------------------------------


def _integer_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def attention_role_figures(table: pd.DataFrame, uniform: dict[str, float], title: str, name: str) -> list[tuple[str, Any]]:
    """One figure of a layer table (`bench.analysis.layer_table`): correspondence (top-1 hit, mass
    near the true patch) and where the attention goes, a line per statistic over the layer index;
    dashed, in the same colour, what uniform attention scores."""
    fig, (left, right) = _grid(2, f"global attention by layer · {title}")
    panels = ((left, ("hit", "mass"), "correspondence"), (right, ("other", "own", "special", "reference", "entropy"), "share of attention (entropy: of log N)"))
    for ax, names, label in panels:
        for statistic in names:
            if table[statistic].notna().any():
                (line,) = ax.plot(table["layer"], table[statistic], marker="o", label=statistic)
                ax.axhline(uniform[statistic], color=line.get_color(), linestyle="--", linewidth=0.8)
        ax.set(xlabel="global layer", ylabel=label, ylim=(-0.02, 1.02))
        _integer_ticks(ax.xaxis)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    left.set_title("dashed: chance (uniform attention)", fontsize="small")
    fig.tight_layout()
    return [(slug("attention_by_layer", name), fig)]


def ablation_figures(tables: dict[str, pd.DataFrame], column: str, tolerance: float, chosen: Any, title: str, name: str) -> list[tuple[str, Any]]:
    """Ablations of one (dataset, frames) group (`bench.analysis.ablation_tables`): the accuracy
    change against dense by layer (each layer alone, and the first t layers), and accuracy against
    median time for the t and σ sweeps, the chosen plan starred."""
    figures = []
    fig, (ax,) = _grid(1, f"ablations by layer · {title}")
    if "single" in tables:
        ax.plot(tables["single"]["layer"], tables["single"]["change"], marker="o", label="this layer alone as frame attention")
    if "t" in tables:
        prefix = tables["t"][tables["t"]["t_early"] > 0]  # t = 0 is dense: the zero line
        ax.plot(prefix["t_early"] - 1, prefix["change"], marker="s", label="layers 0 … this one as frame attention")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.axhspan(-tolerance, 0.0, color="tab:green", alpha=0.15, label=f"tolerance {tolerance:g}")
    ax.set(xlabel="global layer", ylabel=f"{column} change vs dense")
    _integer_ticks(ax.xaxis)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    figures.append((slug("ablation_by_layer", name), fig))

    fig, (ax,) = _grid(1, f"accuracy vs time · {title}")
    for kind, key, marker in (("t", "t_early", "s"), ("σ", "sigma", "^")):
        if kind in tables:
            points = tables[kind]
            ax.plot(points["time_s"], points[column], marker=marker, label=f"{kind} sweep" if kind == "t" else f"σ sweep at t_early {int(points['t_early'].iloc[0])}")
            for _, point in points.iterrows():
                ax.annotate(f"{kind}={int(point[key])}", (point["time_s"], point[column]), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    picked = [t for t in tables.values() if "method" in t and (t["method"] == chosen.method).any()]
    if picked:
        point = picked[0][picked[0]["method"] == chosen.method].iloc[0]
        ax.scatter([point["time_s"]], [point[column]], marker="*", s=250, color="gold", edgecolor="black", zorder=3, label="recommended")
    ax.set(xlabel="median time (s)", ylabel=column)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    figures.append((slug("accuracy_vs_time_sweeps", name), fig))
    return figures
