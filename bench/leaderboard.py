"""The leaderboard: the current result of every model and method on every benchmark, across results
sets, as Markdown, LaTeX (booktabs) or one self-contained HTML page.

A benchmark is a protocol setting at a frame count (its table has the paper's columns) or a
dataset at a frame count (the metrics' values). Rows are grouped by GPU and never ranked across
GPUs or devices; CPU rows are left out unless asked for. Each model and method keeps its newest
result for that GPU, with the speedup against the dense row of its own set. Rows with random
weights have no accuracy: they appear only in the timing section. Among the rest, the rows on the
accuracy–time Pareto front (no other row both faster and more accurate on the benchmark's first
column) are marked.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench import plots
from bench.protocols import PROTOCOLS
from bench.report import metric_columns, protocol_tables, random_weights, summary_rows, text_table
from bench.results_index import ResultSet, discover, load_set
from bench.store import CELLS_FILE, ResultsError
from metrics import direction

FORMATS = {"md": "md", "latex": "tex", "html": "html"}
PARETO = "★"
BLOCK_SPARSE_NOTE = "random weights keep more key blocks than real ones: speedup understated"
SHOWN = ("time_s", "speedup", "peak_gib", "scenes", "gpu", "commit", "weights", "set")


def result_sets(locations: list[str | Path]) -> list[ResultSet]:
    """The sets named: a results folder itself, or every current set below a results root."""
    sets = []
    for location in map(Path, locations):
        if (location / CELLS_FILE).is_file():
            sets.append(load_set(location, archived=False))
        else:
            sets += [s for s in discover(location) if s.measured and not s.archived]
    if not sets:
        raise ResultsError(f"no results sets in {', '.join(map(str, locations))} (folders with a {CELLS_FILE})")
    return sets


def board_rows(sets: list[ResultSet], include_cpu: bool = False) -> pd.DataFrame:
    """One row per (benchmark, GPU, model, method), from the newest set that has it."""
    parts = []
    for s in sets:
        rows = s.rows if include_cpu else s.rows[~s.rows["gpu"].str.startswith("CPU (")]
        for gpu, df in rows.groupby("gpu", sort=False):
            parts += _set_rows(s, gpu, df)
    if not parts:
        raise ResultsError("no GPU rows in these sets; --include-cpu shows CPU rows")
    board = pd.concat(parts, ignore_index=True)
    board = board.sort_values("_last", ascending=False, kind="stable").drop_duplicates(["benchmark", "gpu", "model", "method"])
    return board.sort_values("_order", kind="stable").reset_index(drop=True)


def _set_rows(s: ResultSet, gpu: str, df: pd.DataFrame) -> list[pd.DataFrame]:
    """The benchmark rows of one set on one GPU, tagged with where they come from."""
    commits = df.groupby(["model", "method"], sort=False)["commit"].agg(lambda c: ", ".join(dict.fromkeys(c)))
    weights = df.groupby("model", sort=False)["weights"].first()
    random = random_weights(df).groupby(df["model"]).any()
    sparse = {(r["model"], r["method"]) for _, r in df.iterrows() if _block_sparse(r.get("plan"))}
    tagged = []
    protocol_rows = df["protocol"].notna() if "protocol" in df else pd.Series(False, index=df.index)
    for title, table in protocol_tables(df[protocol_rows], s.path):
        protocol = PROTOCOLS.get(title.split(" v")[0])
        columns = [c.label for c in protocol.columns]
        tagged.append(table.assign(benchmark=title, _columns=[columns] * len(table), _better=protocol.columns[0].better))
    summary = summary_rows(df[~protocol_rows])
    values = metric_columns(df[~protocol_rows], ("value",))
    for (dataset, frames), table in summary.groupby(["dataset", "frames"], sort=False):
        columns = [c for c in values if table[c].notna().any()]
        tagged.append(table.assign(benchmark=f"{dataset} · {frames} frames", _columns=[columns] * len(table), _better=direction(columns[0]) if columns else None))
    out = []
    for table in tagged:
        keys = list(zip(table["model"], table["method"]))
        out.append(table.assign(
            gpu=gpu, set=s.name, _last=s.last, _order=range(len(table)),
            commit=[commits.get(k, "") for k in keys], weights=table["model"].map(weights), weights_random=table["model"].map(random),
            block_sparse=[k in sparse for k in keys],
        ))  # fmt: skip
    return out


def _block_sparse(plan: object) -> bool:
    return isinstance(plan, dict) and any(layer.get("operator") == "block_sparse" for layer in plan.get("layers", []) if isinstance(layer, dict))


def pareto(times: pd.Series, accuracy: pd.Series, better: str | None) -> pd.Series:
    """Whether each row is on the accuracy–time front: no other row at most as slow and at least as
    accurate, and strictly better in one of the two. Rows without both numbers are not."""
    t = times.to_numpy(dtype=float)
    a = accuracy.to_numpy(dtype=float) * (1 if better == "higher" else -1)
    known = np.isfinite(t) & np.isfinite(a)
    front = []
    for i in range(len(t)):
        others = known & (t <= t[i]) & (a >= a[i]) & ((t < t[i]) | (a > a[i]))
        front.append(bool(known[i] and better is not None and not others.any()))
    return pd.Series(front, index=times.index)


def sections(board: pd.DataFrame) -> tuple[list[tuple[str, pd.DataFrame]], list[tuple[str, pd.DataFrame]]]:
    """(title, table) per benchmark and GPU: rows with real weights (accuracy, Pareto marks), then
    the timing-only tables of random-weight rows."""
    accuracy, timing = [], []
    for (benchmark, gpu), group in board.groupby(["benchmark", "gpu"], sort=False):
        columns = group["_columns"].iloc[0]
        flag = group["weights_random"].astype(bool)
        real, random = group[~flag], group[flag]
        if len(real):
            marks = pareto(real["time_s"], real[columns[0]], real["_better"].iloc[0]) if columns else pd.Series(False, index=real.index)
            table = real.assign(pareto=marks.map({True: PARETO, False: ""}))
            accuracy.append((f"{benchmark} · {gpu}", _ranked(table, ["model", "method", "pareto", *columns, *SHOWN, *_notes(table)])))
        if len(random):
            table = random.assign(note=np.where(random["block_sparse"], BLOCK_SPARSE_NOTE, ""))
            timing.append((f"{benchmark} · {gpu} · random weights (timing only)", _ranked(table, ["model", "method", *SHOWN, "note"])))
    return accuracy, timing


def _notes(table: pd.DataFrame) -> list[str]:
    return [c for c in ("comparable", "note") if c in table]


def _ranked(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Fastest first within one GPU; empty columns dropped."""
    kept = [c for c in dict.fromkeys(columns) if c in table]
    return table.sort_values("speedup", ascending=False, kind="stable", na_position="last")[kept].dropna(axis=1, how="all").reset_index(drop=True)


# -- rendering -----------------------------------------------------------------------------------------

INTRO = (
    "Every current result, one table per benchmark and GPU (rows of different GPUs are never ranked together). "
    "Speedup is against the dense row of the same results set; ★ marks the accuracy–time Pareto front on the "
    "benchmark's first column. Random-weight rows time the models only and are listed apart."
)


def render(board: pd.DataFrame, fmt: str) -> str:
    accuracy, timing = sections(board)
    if fmt == "md":
        return _markdown(accuracy, timing)
    if fmt == "latex":
        return _latex(accuracy + timing)
    if fmt == "html":
        return _html(accuracy, timing, board)
    raise ValueError(f"unknown leaderboard format {fmt!r}; allowed: {', '.join(FORMATS)}")


HEADINGS = {"time_s": "time (s)", "peak_gib": "peak (GiB)", "gpu": "GPU", "pareto": PARETO}


def _cells(table: pd.DataFrame) -> pd.DataFrame:
    """The table as shown: missing values empty, columns under readable headings."""
    return table.astype(object).where(table.notna(), None).rename(columns=HEADINGS)


def _markdown(accuracy: list, timing: list) -> str:
    lines = ["# Leaderboard", "", INTRO, ""]
    for heading, group in (("Accuracy and speed", accuracy), ("Timing only (random weights)", timing)):
        if group:
            lines += [f"## {heading}", ""]
            for title, table in group:
                lines += [f"### {title}", "", text_table(_cells(table)), ""]
    return "\n".join(lines)


def _latex_text(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", text).replace("·", "--").replace("★", r"$\star$")


def _latex(tables: list) -> str:
    """One booktabs table per section, each ready to paste into a paper (needs \\usepackage{booktabs})."""
    out = [f"% {_latex_text(INTRO)}", "% needs \\usepackage{booktabs}", ""]
    for title, table in tables:
        body = text_table(_cells(table.replace(PARETO, "*")), "latex_booktabs", missingval="--")
        out += ["\\begin{table}[t]", "\\centering", "\\small", f"\\caption{{{_latex_text(title)}}}", body, "\\end{table}", ""]
    return "\n".join(out)


PAGE_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #1b1b1b; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; white-space: nowrap; }
td.number { text-align: right; }
th { cursor: pointer; background: #f4f4f4; position: sticky; top: 0; }
th:after { content: " ⇅"; color: #aaa; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""

# Sort a table by the clicked column (numbers as numbers, "–" last); no library, no network.
PAGE_SCRIPT = """
document.querySelectorAll("table.sortable td").forEach(function (td) {
  if (td.textContent.trim() !== "" && !isNaN(Number(td.textContent))) td.className = "number";
});
document.querySelectorAll("table.sortable th").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var up = th.dataset.order !== "up";
    th.dataset.order = up ? "up" : "down";
    function key(row) {
      var text = row.cells[column].textContent.trim();
      var number = parseFloat(text);
      return text === "–" || text === "" ? null : isNaN(number) ? text : number;
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === null) return 1;
      if (y === null) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _html_table(table: pd.DataFrame) -> str:
    return _cells(table).to_html(index=False, na_rep="–", classes="sortable", border=0, float_format=lambda v: f"{v:.4g}", escape=True)


def _html(accuracy: list, timing: list, board: pd.DataFrame) -> str:
    parts = [f"<h1>Leaderboard</h1><p>{html.escape(INTRO)} Click a column heading to sort.</p>"]
    for heading, group in (("Accuracy and speed", accuracy), ("Timing only (random weights)", timing)):
        if group:
            parts.append(f"<h2>{heading}</h2>")
            parts += [f"<h3>{html.escape(title)}</h3>{_html_table(table)}" for title, table in group]
    figures = _figures(board)
    if figures:
        parts.append("<h2>Plots</h2>")
        parts += [f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></figure>' for name, data in figures]
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>avggt-bench leaderboard</title><style>{PAGE_STYLE}</style></head><body>",
        *parts, f"<script>{PAGE_SCRIPT}</script>", "</body></html>", "",
    ])  # fmt: skip


def _figures(board: pd.DataFrame) -> list[tuple[str, str]]:
    """Base64 PNGs per GPU: time and speedup by frame count of the dataset benchmarks, accuracy vs time (real weights)."""
    figures = []
    datasets = board[board["dataset"].notna()] if "dataset" in board else board.iloc[0:0]
    for gpu, rows in datasets.groupby("gpu", sort=False):
        values = list(dict.fromkeys(c for columns in rows["_columns"] for c in columns))
        for name, fig in plots.sweep_figures(rows, f" · {gpu}") + plots.accuracy_figures(rows, values, f" · {gpu}"):
            figures.append((f"{name} {gpu}", base64.b64encode(plots.png(fig)).decode()))
    return figures


def write_leaderboard(locations: list[str | Path], fmt: str = "md", out: str | Path | None = None, include_cpu: bool = False) -> Path:
    """Render the leaderboard of `locations` and write it whole to `out` (default: leaderboard.<ext>
    in the one results root given)."""
    if out is None:
        if len(locations) != 1 or (Path(locations[0]) / CELLS_FILE).is_file():
            raise ResultsError("give --out: the default (ROOT/leaderboard.<ext>) needs exactly one results root")
        out = Path(locations[0]) / f"leaderboard.{FORMATS[fmt]}"
    text = render(board_rows(result_sets(locations), include_cpu), fmt)
    path = Path(out)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)  # whole or not at all
    return path
