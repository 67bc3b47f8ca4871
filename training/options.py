"""Command-line options that several training and evaluation commands share, declared once."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="a setting SECTION.KEY=VALUE, e.g. train.learning_rate=1e-4 (repeatable)"
    ),
]
OutOption = Annotated[Path | None, typer.Option(help="output folder")]
QuietOption = Annotated[bool, typer.Option(help="no progress on stderr")]
BootstrapOption = Annotated[int, typer.Option(help="bootstrap resamples")]


def positive_minutes(value: float | None) -> float | None:
    """A time budget: 0, a negative number or nan would have meant no budget at all."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter("must be a positive number of minutes")
    return value
