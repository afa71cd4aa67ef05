"""The results index: what every committed results set is, and which of its numbers are current.

A *set* is a folder directly under the results root (or under its `archive/`): a run's folder
(`cells.jsonl`, `env.json`) or a folder of script outputs (`*.json` with `*.md` tables; an
`about.json` {"title", "env": {"gpu", "git_commit"} or a list of them} describes outputs that do not). The index
reads each set's commit, GPU, dates, suite and what it measured from its own files. A run's cell
is *current* in the newest set that measured it on the same GPU in the same suite; a set whose
every cell was measured again by a newer set is superseded and can be archived (moved under
`archive/`). `INDEX.md` lists every set; the README's speed table is generated from the current
cells of the `speed` suite, each table row from one set, so no row mixes two commits.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.env import commit_name
from bench.report import load_results, weights_summary
from bench.store import CELLS_FILE, ResultsError, ResultStore

ARCHIVE = "archive"
ABOUT = "about.json"
INDEX_FILE = "INDEX.md"
SPEED_SUITE = "speed"
BEGIN, END = "<!-- speed-table:begin (written by `avggt-bench index`) -->", "<!-- speed-table:end -->"


@dataclass
class ResultSet:
    """One results folder as the index sees it."""

    name: str
    path: Path
    archived: bool
    rows: pd.DataFrame = field(repr=False)  # the newest row per cell, with `gpu`, `commit` and `speedup` (empty for script outputs)
    title: str = ""  # script outputs: about.json's title, else the names of their tables
    script_envs: list[dict] = field(default_factory=list, repr=False)  # script outputs: the environments their JSON files record
    superseded_by: dict[str, int] = field(default_factory=dict)  # newer set → cells of this one it measured again
    measured_again: int = 0  # cells of this one that some newer set measured again (each counted once)

    @property
    def measured(self) -> bool:
        return not self.rows.empty

    @property
    def last(self) -> str:
        return str(self.rows["recorded_at"].max()) if self.measured else ""

    @property
    def status(self) -> str:
        if self.archived:
            return "archived"
        if not self.superseded_by:
            return "current"
        newer = ", ".join(f"{name} ({count})" for name, count in self.superseded_by.items())
        again = self.measured_again
        return f"superseded by {newer}" if again >= len(self.rows) else f"partly current: {again} of {len(self.rows)} cells measured again in {newer}"


def load_set(path: Path, archived: bool) -> ResultSet:
    """A results folder with its rows tagged by GPU and commit (from env.json)."""
    if (path / CELLS_FILE).is_file():
        store = ResultStore(path)
        envs = store.environments()
        rows = load_results(path, envs)
        missing = sorted(set(rows["env_id"].dropna()) - set(envs))
        if missing:
            raise ResultsError(f"{store.env}: no environment for env id {', '.join(missing)} that rows of {path / CELLS_FILE} name")
        rows["commit"] = rows["env_id"].map(lambda ident: commit_name(envs[ident]) if ident in envs else "unknown")
        return ResultSet(path.name, path, archived, rows)
    outputs = {file.name: _json(file) for file in sorted(path.glob("*.json"))}
    if not outputs and not any(path.glob("*.md")):
        raise ResultsError(f"{path}: neither a run's folder ({CELLS_FILE}) nor script outputs (*.json, *.md)")
    about = outputs.get(ABOUT, {})
    recorded = [data.get("environment") or data.get("env") for data in outputs.values() if isinstance(data, dict)]
    envs = [env for entry in recorded for env in (entry if isinstance(entry, list) else [entry]) if isinstance(env, dict)]  # about.json may list one per run
    title = about.get("title") or f"tables: {', '.join(p.stem for p in sorted(path.glob('*.md')))}"
    return ResultSet(path.name, path, archived, pd.DataFrame(), title=title, script_envs=envs)


def _json(file: Path) -> object:
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ResultsError(f"{file}: not valid JSON ({err.msg} at line {err.lineno})") from None


def discover(root: str | Path) -> list[ResultSet]:
    """Every set under `root` and `root/archive`, with supersession worked out for the current ones."""
    root = Path(root)
    if not root.is_dir():
        raise ResultsError(f"{root}: no such results folder")
    found = [load_set(p, False) for p in sorted(root.iterdir()) if p.is_dir() and p.name != ARCHIVE and not p.name.startswith(".")]
    if (root / ARCHIVE).is_dir():
        found += [load_set(p, True) for p in sorted((root / ARCHIVE).iterdir()) if p.is_dir()]
    _supersede([s for s in found if s.measured and not s.archived])
    return found


def _supersede(sets: list[ResultSet]) -> None:
    """Fill `superseded_by`: a cell is measured again when a newer set holds it for the same suite and GPU."""
    for older in sets:
        keys = set(zip(older.rows["suite"], older.rows["gpu"], older.rows["cell"]))
        measured_again: set = set()
        for newer in sorted((s for s in sets if s.last > older.last), key=lambda s: s.last):
            again = keys & set(zip(newer.rows["suite"], newer.rows["gpu"], newer.rows["cell"]))
            if again:
                older.superseded_by[newer.name] = len(again)
                measured_again |= again
        older.measured_again = len(measured_again)


def archive_superseded(root: str | Path) -> list[str]:
    """Move every set whose cells were all measured again into `root/archive/`; returns their names."""
    moved = []
    for s in discover(root):
        if s.status.startswith("superseded by"):
            target = Path(root) / ARCHIVE / s.name
            if target.exists():
                raise ResultsError(f"{target} exists already; cannot archive {s.path} there")
            target.parent.mkdir(exist_ok=True)
            shutil.move(str(s.path), target)
            moved.append(s.name)
    return moved


# -- INDEX.md ------------------------------------------------------------------------------------------


def _what(s: ResultSet) -> str:
    if not s.measured:
        return s.title
    rows = s.rows
    frames = sorted({f for f in rows["frames"] if isinstance(f, int)})
    span = f"{frames[0]}–{frames[-1]} frames" if len(frames) > 1 else f"{frames[0]} frames" if frames else "all frames"
    failed = int((rows["status"] != "ok").sum())
    return (
        f"{', '.join(dict.fromkeys(rows['model']))} × {', '.join(dict.fromkeys(rows['method']))} on {', '.join(dict.fromkeys(rows['dataset']))}, "
        f"{span}; {len(rows)} cells" + (f" ({failed} not ok)" if failed else "") + f"; {weights_summary(rows)}"
    )


def index_table(sets: list[ResultSet]) -> pd.DataFrame:
    records = []
    for s in sets:
        rows = s.rows
        records.append({
            "set": f"[{s.name}]({ARCHIVE + '/' if s.archived else ''}{s.name}/)",
            "status": s.status,
            "suite": ", ".join(dict.fromkeys(rows["suite"])) if s.measured else "(script outputs)",
            "GPU": ", ".join(dict.fromkeys(rows["gpu"] if s.measured else [e["gpu"] for e in s.script_envs if e.get("gpu")])) or "not recorded",
            "commit": ", ".join(dict.fromkeys(rows["commit"] if s.measured else [commit_name(e) for e in s.script_envs if e.get("git_commit")])) or "not recorded",
            "measured": f"{str(rows['recorded_at'].min())[:10]} – {s.last[:10]}" if s.measured else "",
            "what": _what(s),
        })  # fmt: skip
    return pd.DataFrame.from_records(records)


def render_index(root: str | Path) -> str:
    sets = discover(root)
    table = tabulate(index_table(sets), headers="keys", tablefmt="github", showindex=False)
    return "\n".join([
        "# Results index",
        "",
        "Every results set in this folder, written by `avggt-bench index`. A set is *current* while no",
        "newer set of the same suite on the same GPU measured its cells again; `avggt-bench index --archive`",
        "moves a set whose cells were all measured again into `archive/`. Rows with random weights time the",
        "models only: their accuracy means nothing.",
        "",
        table,
        "",
    ])  # fmt: skip


def write_index(root: str | Path) -> Path:
    store = ResultStore(root)
    return store.write_text(INDEX_FILE, render_index(root))


# -- the README's speed table ---------------------------------------------------------------------------


def speed_tables(root: str | Path, suite: str = SPEED_SUITE) -> str:
    """Markdown: per GPU, dense times and every method's speedup by frame count from the current sets
    of `suite`. Each row comes from one set, named with its commit, so every ratio is from one run:
    the newest set's row first, then an older set's row for the frame counts no newer set has."""
    sets = [s for s in discover(root) if s.measured and not s.archived]
    rows = pd.concat([s.rows.assign(set=s.name) for s in sets], ignore_index=True) if sets else pd.DataFrame()
    if rows.empty or suite not in set(rows["suite"]):
        raise ResultsError(f"{root}: no current set of suite {suite!r}")
    rows = rows[(rows["suite"] == suite) & (rows["status"] == "ok")]
    parts = []
    newest_first = rows.groupby("gpu")["recorded_at"].max().sort_values(ascending=False).index
    for gpu in newest_first:
        on_gpu = rows[rows["gpu"] == gpu]
        table, sources = _speed_rows(on_gpu)
        frames = sorted({f for f in on_gpu["frames"] if isinstance(f, int)})
        header = ["model", "method", *[str(f) for f in frames], "set (commit)"]
        body = [[*key[:2], *[cells.get(f, "") for f in frames], sources[key]] for key, cells in table.items()]  # key: model, method, set
        compiled = {bool((options or {}).get("compile")) for options in on_gpu["model_options"]}
        how = {frozenset({True}): "models compiled", frozenset({False}): "models eager"}.get(frozenset(compiled), "some sets compiled, some eager")
        heads = {(options or {}).get("heads_dtype", "float32") for options in on_gpu["model_options"]}  # rows from before the option: float32
        parts += [f"**{gpu}**, {how}, heads in {' and '.join(sorted(heads, reverse=True))}, random weights: dense rows give the median time of one forward, method rows the speedup over the dense row of the same set.", "",
                  tabulate(body, headers=header, tablefmt="github", colalign=("left", "left", *["right"] * len(frames), "left")), ""]  # fmt: skip
    return "\n".join(parts)


def _speed_rows(rows: pd.DataFrame) -> tuple[dict, dict]:
    """Rows keyed (model, method, set): for each model and method the newest set's cells, then each
    older set's cells at the frame counts no newer set has (a dense row's times, a method's speedups)."""
    table: dict[tuple[str, str, str], dict[int, str]] = {}
    sources: dict[tuple[str, str, str], str] = {}
    models, methods = list(dict.fromkeys(rows["model"])), list(dict.fromkeys(rows["method"]))
    order = rows.assign(_model=rows["model"].map(models.index), _dense=~rows["method_dense"].astype(bool), _method=rows["method"].map(methods.index))
    rows = rows.loc[order.sort_values(["_model", "_dense", "_method"], kind="stable").index]
    for (model, method), group in rows.groupby(["model", "method"], sort=False):
        dense = bool(group["method_dense"].iloc[0])
        usable = group if dense else group[group["speedup"].notna()]
        value = (lambda r: _seconds(r["time_median_s"])) if dense else (lambda r: f"{r['speedup']:.2f}×")
        covered: set[int] = set()
        for name in usable.groupby("set")["recorded_at"].max().sort_values(ascending=False).index:
            picked = usable[(usable["set"] == name) & ~usable["frames"].isin(covered)]
            cells = {int(r["frames"]): value(r) for _, r in picked.iterrows() if isinstance(r["frames"], int)}
            if cells:
                table[(model, method, name)] = cells
                sources[(model, method, name)] = f"{name} ({', '.join(dict.fromkeys(picked['commit']))})"
                covered |= set(cells)
    return table, sources


def _seconds(value: float) -> str:
    return f"{value:.2g} s" if value < 0.01 else f"{value:.3f} s" if value < 1 else f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def rewrite_readme(readme: str | Path, root: str | Path) -> bool:
    """Replace the block between the speed-table markers of `readme` with `speed_tables(root)`;
    returns whether the file changed."""
    path = Path(readme)
    text = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ResultsError(f"{path}: no speed-table block; add the two marker lines\n{BEGIN}\n{END}")
    new = pattern.sub(lambda _: f"{BEGIN}\n{speed_tables(root)}\n{END}", text)
    if new != text:
        path.write_text(new)
    return new != text
