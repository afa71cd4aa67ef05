"""`avggt-bench check-data DATASET ROOT`: a thin command over `datasets_adapters.check`."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from bench.registry import UnknownNameError
from datasets_adapters.base import DatasetError
from datasets_adapters.check import check_dataset


def _parse_options(pairs: tuple[str, ...]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--option")
        options[key] = yaml.safe_load(value)
    return options


def _parse_frames(value: str) -> int | None:
    if value == "all":
        return None
    if not value.isdigit():
        raise click.BadParameter(f"{value!r}: give a number of frames or 'all'", param_hint="--frames")
    return int(value)


@click.command("check-data")
@click.argument("dataset")
@click.argument("root", required=False, type=click.Path(path_type=Path))
@click.option(
    "-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
    help="Adapter option as in a suite's `options:` (value read as YAML), e.g. -o categories=[apple,bench].",
)  # fmt: skip
@click.option("--frames", default="1", show_default=True, help="Frames per scene to decode fully (evenly spread), or 'all'.")
@click.option("--scene", "scenes", multiple=True, help="Check only these scenes (repeatable).")
def check_data(dataset: str, root: Path | None, options: tuple[str, ...], frames: str, scenes: tuple[str, ...]) -> None:
    """Walk DATASET at ROOT: scenes, frame counts, invalid poses, missing or unreadable files.

    ROOT is the folder that holds the dataset (none for `synthetic`, which is generated). Exits non-zero with the problems listed when the layout is wrong.
    """
    try:
        report = check_dataset(dataset, root, _parse_options(options), _parse_frames(frames), scenes or None, progress=True)
    except (DatasetError, UnknownNameError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(report.format())
    if not report.ok:
        first = report.issues()[0] if report.issues() else "no scenes found"
        raise click.ClickException(f"{dataset}{f' at {root}' if root else ''} is not usable: {first}")
