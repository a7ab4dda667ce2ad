"""The ``ensemblex`` command line: one module per command, registered on one typer app."""

from ensemblex.cli import blend, cascade, evaluate, predict, run, serve  # noqa: F401  (registers the commands)
from ensemblex.cli.app import app

__all__ = ["app"]
