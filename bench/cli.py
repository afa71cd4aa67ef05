"""The `avggt-bench` command line: a thin layer over bench.suite, runner, report and compare.

Each command is a plain click command joined to the `main` group at the bottom of this file, so a
command defined in another module joins with one more `main.add_command(...)` line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tabulate import tabulate

import bench
from bench import analysis as analysis_mod
from bench import compare as compare_mod
from bench import distributed as distributed_mod
from bench import leaderboard as leaderboard_mod
from bench import plots
from bench import report as report_mod
from bench import results_index, runner
from bench.env import RESULTS_DIR
from bench.registry import OPTIONS_AFTER, option_defaults
from bench.store import ResultsError, ResultStore, read_rows
from bench.methods import METHODS
from bench.methods.presets import method_summary
from bench.models import MODELS, published_families, published_traits
from bench.check_data import check_data
from bench.predict import predict
from bench.preprocess import PREPROCESS
from bench.protocols import PROTOCOLS
from bench.options import device_option
from bench.suite import SuiteError, check_frames, expand, load_suite
from datasets_adapters import DATASETS
from metrics import METRICS

REGISTRIES = {"models": MODELS, "methods": METHODS, "datasets": DATASETS, "metrics": METRICS, "protocols": PROTOCOLS, "preprocess": PREPROCESS}


def _load(suite_path: Path, device: str | None = None):
    try:
        suite = load_suite(suite_path)
        return suite, expand(suite, device)
    except SuiteError as err:
        raise click.ClickException(str(err)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(bench.__version__, prog_name="avggt-bench")
def main() -> None:
    """Benchmark accelerated multi-view 3D transformers (VGGT, pi3, AVGGT, sparse attention, token
    merging): accuracy and wall-clock speedup over the dense model, in reproducible tables."""


@click.command("run")
@click.argument("suite_path", metavar="SUITE.yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Results folder [default: results/<suite name>].")
@click.option("--only", multiple=True, metavar="GLOB", help="Run only cells whose id matches (e.g. 'oracle/dense/*/orbit/*'); repeatable.")
@click.option("--device", callback=device_option, metavar="cpu|cuda|cuda:N", help="Device to run on [default: the suite's `device`].")
@click.option("--fresh", is_flag=True, help="Measure the selected cells again even where they are done; the new rows supersede the old (no row is deleted).")
@click.option(
    "--start-from", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="RESULTS_DIR",
    help="First take into OUT the rows (and environments) of an earlier results folder that OUT lacks: continue a sweep measured elsewhere. Refused if that folder measured this suite's cells with other settings.",
)
@click.option("--dry-run", is_flag=True, help="List the cells (and whether each is already done) without running anything.")
@click.option(
    "--time-limit", type=click.FloatRange(min=0), metavar="SECONDS",
    help="Start no new cell after this many seconds (for machines with a wall-time limit); run again to continue.",
)
@click.option(
    "--expect-from", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="RESULTS_DIR",
    help="With --time-limit: also leave for the next run each cell that, timed as in this earlier run of the same cells, would end after the limit. "
    "With --workers/--scheduler: also the order of the work, longest first (else the FLOP model's).",
)
@click.option("--workers", type=click.IntRange(min=1), metavar="N", help="Run on a local Dask cluster: one worker process per GPU (device cuda) or N processes sharing the CPU.")
@click.option("--scheduler", metavar="ADDRESS", help="Run on a running Dask cluster (e.g. tcp://host:8786), one GPU per worker.")
def run_command(
    suite_path: Path, out: Path | None, only: tuple[str, ...], device: str | None, fresh: bool, start_from: Path | None, dry_run: bool,
    time_limit: float | None, expect_from: Path | None, workers: int | None, scheduler: str | None,
) -> None:
    """Run a suite: every model × method × dataset × scene × frame count.

    Each finished cell is appended to OUT/cells.jsonl at once (timing, metrics, configuration),
    and OUT/env.json records the environment. Running again skips cells already measured (status
    ok or oom; error rows are retried), so an interrupted run resumes where it stopped. One run
    writes a results folder at a time. Exits 1 when a cell ended in `error`.
    """
    if expect_from and time_limit is None and not (workers or scheduler):
        raise click.UsageError("--expect-from only matters with --time-limit (or --workers/--scheduler): give both, or leave it out")
    if workers and scheduler:
        raise click.UsageError("--workers starts a cluster here, --scheduler uses a running one: give one of them")
    suite, expansion = _load(suite_path, device)
    if suite.analysis is not None:
        raise click.ClickException(f"{suite_path} is an analysis suite (it has `analysis:` settings): run `avggt-bench analyze {suite_path}`")
    store = ResultStore(out or Path(RESULTS_DIR) / suite.name)
    cells = runner.select(expansion.cells, only)
    if only and not cells:
        example = expansion.cells[0].cell_id if expansion.cells else "model/method/dataset/scene/frames"
        raise click.ClickException(f"no cell id matches {' or '.join(only)}; ids look like {example}")
    for note in expansion.skipped:
        click.echo(note, err=True)
    if dry_run:
        try:
            done = set() if fresh else store.done()
        except ResultsError as err:
            raise click.ClickException(str(err)) from None
        for cell in cells:
            click.echo(f"{'done' if cell.identity in done else 'todo'}  {cell.cell_id}")
        click.echo(f"{len(cells)} cells, {sum(c.identity in done for c in cells)} already in {store.cells}", err=True)
        return
    try:
        with store.locked():
            if start_from:
                taken = store.start_from(start_from, {cell.cell_id: cell.identity for cell in expansion.cells})
                click.echo(f"took {taken} rows from {start_from}", err=True)
            expect = runner.expected_seconds(read_rows(expect_from)) if expect_from else None
            if workers or scheduler:
                summary = _run_distributed(expansion, store, suite_path, workers, scheduler, only=only, time_limit=time_limit, expect=expect, remeasure=fresh)
            else:
                summary = runner.run(expansion, store, only, time_limit=time_limit, expect=expect, remeasure=fresh)
    except (runner.RunError, ResultsError) as err:
        raise click.ClickException(str(err)) from None
    counts = ", ".join(f"{n} {status}" for status, n in summary.statuses.items()) or "nothing new"
    click.echo(f"{summary.selected} cells: {summary.already_done} already done, recorded {counts} in {store.cells}", err=True)
    if summary.interrupted:
        click.echo(
            f"Interrupted: the {summary.already_done + summary.recorded} finished rows in {store.cells} are kept. "
            f"Run the same command again to resume (finished cells are skipped).",
            err=True,
        )
        sys.exit(130)
    if summary.out_of_time:
        click.echo(f"Time limit reached: {summary.selected - summary.already_done - summary.recorded} cells left; run the same command again to continue.", err=True)
    if summary.statuses["error"]:
        raise click.ClickException(
            f"{summary.statuses['error']} of {summary.recorded} cells ended in error (messages above and in {store.cells}); "
            "fix the cause and run the same command again to retry them"
        )


def _run_distributed(expansion, store: ResultStore, suite_path: Path, workers: int | None, scheduler: str | None, **options) -> runner.RunSummary:
    """The run on a Dask cluster: a local one of `workers` processes, or the one at `scheduler`."""
    from distributed import Client

    device = expansion.cells[0].device if expansion.cells else "cpu"
    cluster = distributed_mod.local_cluster(workers, device) if workers else None
    try:
        with Client(cluster if cluster is not None else scheduler, timeout="60s") as client:
            return distributed_mod.run(expansion, store, client, suite_path.read_text(), **options)
    except OSError as err:
        raise runner.RunError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
    finally:
        if cluster is not None:
            cluster.close()


@click.command("analyze")
@click.argument("suite_path", metavar="SUITE.yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Results folder [default: results/<suite name>].")
@click.option("--device", callback=device_option, metavar="cpu|cuda|cuda:N", help="Device to run on [default: the suite's `device`].")
def analyze_command(suite_path: Path, out: Path | None, device: str | None) -> None:
    """Measure what each global attention layer of the suite's model does, and choose AVGGT's
    t_early and σ from it.

    SUITE.yaml has `analysis:` settings and one model. For every global layer and head, on scenes
    with ground-truth depth and poses: attention on the true correspondence in other frames (top-1
    hit, mass) against chance, where the attention goes (other frames, own frame, special tokens,
    reference frame), entropy. Then ablations as ordinary cells: each layer alone as frame
    attention, the first t layers (t = 1 … all), σ swept at t_early. Prints the plan whose accuracy
    stays within the tolerance of dense at the lowest cost, with the evidence; writes
    OUT/analysis.md, OUT/recommendation.json and OUT/plots/. Resumable like `run`; exits 1 when a
    cell ended in error.
    """
    suite, _ = _load(suite_path, device)
    if suite.analysis is None:
        raise click.ClickException(f"{suite_path}: no `analysis:` settings; add them (see README, 'Roles of global attention') or run it with `avggt-bench run`")
    store = ResultStore(out or Path(RESULTS_DIR) / suite.name)
    try:
        with store.locked():
            summary = analysis_mod.analyze(suite, store, device)
    except (runner.RunError, ResultsError, SuiteError, analysis_mod.AnalysisError) as err:
        raise click.ClickException(str(err)) from None
    if summary.interrupted:
        click.echo(f"Interrupted: the finished rows in {store.cells} are kept. Run the same command again to resume.", err=True)
        sys.exit(130)
    click.echo("\n".join(summary.recommendation.lines()))
    for path in summary.written:
        click.echo(f"wrote {path}", err=True)
    if summary.errors:
        raise click.ClickException(f"{summary.errors} cells ended in error (messages above and in {store.cells}); fix the cause and run the same command again to retry them")


@click.command("report")
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(list(report_mod.FORMATS)), default="md", show_default=True, help="Table format.")
@click.option("--plot", is_flag=True, help="Also write PNGs to RESULTS_DIR/plots: time and speedup vs frames (log-log), accuracy vs time.")
def report_command(results_dir: Path, fmt: str, plot: bool) -> None:
    """Tables of a results folder: protocol tables in the papers' columns first, then per (model,
    dataset, frames) one row per method with accuracy, median time, peak memory and speedup over
    the dense method of the same model in these results.

    Writes only inside RESULTS_DIR: report.<md|tex|csv> and the rows as a Hugging Face dataset in
    rows.parquet (and plots/ with --plot).
    """
    try:
        text, path = report_mod.write_report(results_dir, fmt)
        written = [path, report_mod.export_parquet(results_dir)]
        if plot:
            written += plots.write_plots(results_dir)
    except ResultsError as err:
        raise click.ClickException(str(err)) from None
    click.echo(text)
    for p in written:
        click.echo(f"wrote {p}", err=True)


@click.command("leaderboard")
@click.argument("locations", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="RESULTS...")
@click.option("--format", "fmt", type=click.Choice(list(leaderboard_mod.FORMATS)), default="md", show_default=True, help="Markdown, LaTeX (booktabs) or one self-contained HTML page.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Where to write it [default: RESULTS/leaderboard.<md|tex|html> for one results root].")
@click.option("--include-cpu", is_flag=True, help="Also show rows measured on a CPU (left out by default: CPU timings are not comparable).")
def leaderboard_command(locations: tuple[Path, ...], fmt: str, out: Path | None, include_cpu: bool) -> None:
    """The current result of every model and method on every benchmark, one table per benchmark
    and GPU. RESULTS are results roots (every current set below) or results folders."""
    try:
        path = leaderboard_mod.write_leaderboard(list(locations), fmt, out, include_cpu)
    except ResultsError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {path}", err=True)


@click.command("index")
@click.argument("results_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--archive", is_flag=True, help="First move every set whose cells were all measured again by a newer set into RESULTS_ROOT/archive/.")
@click.option("--readme", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Also rewrite this README's generated speed-table block.")
def index_command(results_root: Path, archive: bool, readme: Path | None) -> None:
    """Write RESULTS_ROOT/INDEX.md: every results set with its status (current, partly current,
    superseded, archived), suite, GPU, commit, dates and what it measured."""
    try:
        for name in results_index.archive_superseded(results_root) if archive else []:
            click.echo(f"archived {name} → {results_root / results_index.ARCHIVE / name}", err=True)
        click.echo(f"wrote {results_index.write_index(results_root)}", err=True)
        if readme is not None:
            changed = results_index.rewrite_readme(readme, results_root)
            click.echo(f"{'rewrote' if changed else 'unchanged:'} the speed table of {readme}", err=True)
    except ResultsError as err:
        raise click.ClickException(str(err)) from None


@click.command("compare")
@click.argument("baseline", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--tolerances", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Tolerances YAML [default: bench/tolerances.yaml].")
@click.option("--allow-missing", is_flag=True, help="Pass even when baseline cells are missing from NEW (NEW is a partial run or a narrowed suite).")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", show_default=True, help="markdown: one summary for a pull-request comment, on stdout.")
def compare_command(baseline: Path, new: Path, tolerances: Path | None, allow_missing: bool, fmt: str) -> None:
    """Check NEW against BASELINE (results folders or cells.jsonl files) for regressions.

    Cells are matched by identity. Exits 1 when a cell that was measured now fails, an accuracy
    metric moves the wrong way beyond its tolerance, or a speedup drops beyond its tolerance; also
    when no cell was compared, or baseline cells are missing from NEW (unless --allow-missing).
    Exits 0 otherwise.
    """
    try:
        result = compare_mod.compare(report_mod.load_results(baseline), report_mod.load_results(new), compare_mod.load_tolerances(tolerances))
    except (ResultsError, compare_mod.ToleranceError) as err:
        raise click.ClickException(str(err)) from None
    if fmt == "markdown":
        click.echo(result.markdown(str(baseline), str(new), allow_missing))
    else:
        if len(result.diffs):
            click.echo(compare_mod.diff_table(result.diffs))
        else:
            click.echo(f"no differences in {result.matched} matched cells")
        for line in result.notes(allow_missing):
            click.echo(line, err=True)
    failures = result.failures(allow_missing)
    if failures:
        raise click.ClickException("; ".join(failures))


def protocol_summary(protocol) -> str:
    """What `list protocols` shows of a protocol: what it reproduces, its columns, and each dataset setting."""
    lines = [f"v{protocol.version}: {protocol.summary}", f"  reproduces: {protocol.reproduces}", f"  columns: {', '.join(c.label for c in protocol.columns)}"]
    for setting in protocol.settings:
        frames = ", ".join("all" if f is None else str(f) for f in setting.frames)
        adapter = "" if setting.dataset in DATASETS else "  (no adapter yet)"
        lines.append(f"  {setting.dataset}, variant {setting.variant}: {frames} frames, sampling {setting.sampling.kind}{adapter}" + (f"; {setting.note}" if setting.note else ""))
    return "\n".join(lines)


@click.command("list")
@click.argument("kind", type=click.Choice(list(REGISTRIES)))
def list_command(kind: str) -> None:
    """List the registered models, methods, datasets, metrics or preprocess modes."""
    registry = REGISTRIES[kind]
    if kind == "methods":
        families = published_families()
        rows = [
            (name, "\n  ".join([registry.help(name)] + [method_summary(name, published_traits(f)) for f in families if f in (registry.get(name).families or families)]))
            for name in registry
        ]
    elif kind == "protocols":
        rows = [(name, protocol_summary(registry.get(name))) for name in registry]
    elif kind in OPTIONS_AFTER:  # suite `options:` (models, datasets) and `metric_options:`
        rows = [(name, f"{registry.help(name)}\n  options: {option_defaults(registry.get(name), OPTIONS_AFTER[kind])}") for name in registry]
    else:
        rows = [(name, registry.help(name)) for name in registry]
    click.echo(tabulate(rows, headers=["name", "description"], tablefmt="plain") if rows else f"(no {kind} registered)")


@click.command("validate")
@click.argument("suite_path", metavar="SUITE.yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate_command(suite_path: Path) -> None:
    """Check a suite file without running anything: schema, names, option types, weights files
    (their keys and shapes against the model's), and that every scene on disk has the frames asked
    for; then count its cells."""
    suite, expansion = _load(suite_path)
    try:
        if suite.analysis is not None:
            _, expansion = analysis_mod.first_phase(suite)
        check_frames(suite, expansion, progress=True)
    except SuiteError as err:
        raise click.ClickException(str(err)) from None
    if suite.analysis is not None:
        click.echo(f"{suite_path}: valid analysis suite; {len(expansion.cells)} ablation cells before the σ sweep; run `avggt-bench analyze {suite_path}`")
        return
    for note in expansion.skipped:
        click.echo(note)
    click.echo(
        f"{suite_path}: valid; {len(expansion.cells)} cells from {len(suite.models)} models × {len(suite.methods)} methods × "
        f"{len(suite.datasets)} datasets"
    )


for command in (run_command, analyze_command, report_command, leaderboard_command, index_command, compare_command, list_command, validate_command, predict, check_data):
    main.add_command(command)

if __name__ == "__main__":
    main()
