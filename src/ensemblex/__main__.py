"""``python -m ensemblex``: the same command line as the ``ensemblex`` script."""

from ensemblex.cli import app

app(prog_name="ensemblex")
