"""Figures of summary rows (`bench.report.summary_rows`): time and speedup against frame count, and
accuracy against time. One figure per quantity, panels in a grid of at most four a row, log axes
labelled in plain numbers. Accuracy is plotted only for metric values (no counts or fitted
scales) and only for rows with real weights: random weights have no accuracy to show.
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
