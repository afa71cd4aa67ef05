"""Click option callbacks that more than one command uses."""

from __future__ import annotations

import click

from bench.suite import check_device


def device_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--device: cpu, cuda or cuda:N (None when not given)."""
    try:
        return None if value is None else check_device(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
