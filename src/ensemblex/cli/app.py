"""The typer application and what its commands share: errors, console, bundled data."""

from __future__ import annotations

from enum import Enum
from importlib import resources
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from ensemblex import __version__

app = typer.Typer(
    help="Build, combine, evaluate and deploy ensembles of machine-learning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# What the commands print holds users' names (columns, members, paths): never read as markup
console = Console(markup=False, emoji=False)
err_console = Console(stderr=True, markup=False, emoji=False)


class TaskChoice(str, Enum):
    auto = "auto"
    regression = "regression"
    binary = "binary"
    multiclass = "multiclass"


def _version(value: bool) -> None:
    if value:
        console.print(f"ensemblex {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """ensemblex: one system for building, combining and checking ensembles."""


def fail(message: str) -> None:
    """One red line on stderr and exit code 2: how every command reports bad input."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    err_console.print(
        Text.assemble(("error:", "bold red"), " ", line), highlight=False, soft_wrap=True
    )
    raise typer.Exit(2)


def example_path(name: str) -> Path:
    """Path of a file bundled in ``ensemblex/data``."""
    return Path(str(resources.files("ensemblex") / "data" / name))


def idle_threads_sleep() -> None:
    """Make the native libraries' idle threads sleep instead of spinning, for commands that
    run models on modest batches (``predict``, ``serve``); call before the libraries load.

    Members from several OpenMP libraries (LightGBM, XGBoost, scikit-learn) take turns; idle
    OpenMP threads that spin-wait steal the next library's core (churn, one row through 11
    members: 14.3 ms spinning, 8.2 ms passive). OpenBLAS's threads spin from the moment numpy
    and scipy load: `predict` on 10,000 churn rows spent 0.3-0.5 s more CPU with them (3.7-4.2
    against 3.2-3.6 s), and no less wall time, as its matrices are small. The environment's
    own settings win.
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
