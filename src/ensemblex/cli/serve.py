"""``ensemblex serve``: a saved ensemble behind HTTP (the ``serve`` extra)."""

from __future__ import annotations

import signal
from pathlib import Path

import typer

from ensemblex.cli.app import app, console, fail, idle_threads_sleep


@app.command()
def serve(
    run_dir: Path = typer.Argument(..., help="A run folder (or a saved model folder)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: local)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="Most rows per model call."),
    max_wait_ms: float = typer.Option(
        0.0,
        "--max-wait-ms",
        min=0.0,
        help="How long a batch's first request waits for others (0: requests arriving while "
        "the model runs form the next batch).",
    ),
    max_queue: int = typer.Option(
        256, "--max-queue", min=1, help="Most waiting requests; more get 503."
    ),
    max_body_mb: float = typer.Option(8.0, "--max-body-mb", min=0.001, help="Larger: 413."),
    cascade: bool = typer.Option(
        False, "--cascade", help="Early exit: cheap members first, thresholds from the run."
    ),
    id_column: str | None = typer.Option(
        None, "--id", help="A request column copied into the response."
    ),
    treelite: bool = typer.Option(
        True, "--treelite/--no-treelite", help="Tree members through Treelite's runtime."
    ),
) -> None:
    """Serve a saved ensemble: POST /predict, GET /health, /metadata and /metrics.

    The model is verified before the server starts (signed models: ENSEMBLEX_SIGNING_KEY).
    """
    idle_threads_sleep()  # read when the libraries load, which is below
    try:
        import uvicorn

        from ensemblex.serving import create_app
    except ImportError as exc:
        fail(f"serving needs the serve extra: pip install 'ensemblex[serve]' ({exc})")
    try:
        application = create_app(
            run_dir,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            max_body_bytes=int(max_body_mb * 2**20),
            cascade=cascade,
            id_column=id_column,
            treelite=treelite,
        )
    except (ValueError, TypeError, OSError) as exc:
        fail(f"{run_dir}: {exc}" if str(run_dir) not in str(exc) else str(exc))
    meta = application.state.model
    console.print(
        f"serving {run_dir} ({len(meta.fitted_members_)} members"
        f"{', cascade' if cascade else ''}) on http://{host}:{port} "
        "(POST /predict; GET /health, /metadata, /metrics); Ctrl-C stops"
    )
    # uvicorn answers SIGTERM/SIGINT by finishing the requests in flight, then raises the
    # signal again under the handlers it found: these make that a clean exit (code 0)
    # instead of death by signal
    signal.signal(signal.SIGTERM, _stopped)
    signal.signal(signal.SIGINT, _stopped)
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )


def _stopped(signum, frame) -> None:
    console.print("stopped")
    raise typer.Exit(0)
