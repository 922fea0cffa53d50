"""Command-line parameter types the commands share (serve, scan, evidence, report)."""

from __future__ import annotations

import math

import click


def state_dir_option(func):
    """--state.dir, shared by `serve` (the evidence collector reads the records there) and
    `evidence` (which appends to them)."""
    return click.option(
        "--state.dir", "state_dir", type=click.Path(file_okay=False), default="", envvar="MINERWATCH_STATE_DIR",
        help="Where `minerwatch evidence` records each bundle's manifest sha256 for the exporter to expose "
             "(default: $MINERWATCH_STATE_DIR, else /var/lib/minerwatch under --path.rootfs; "
             "%ProgramData%\\minerwatch on Windows).",
    )(func)


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange lets nan through (every comparison with nan is false) and inf."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number.", param, ctx)
        return number
