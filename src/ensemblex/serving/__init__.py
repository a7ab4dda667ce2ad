"""Serving a saved ensemble over HTTP (``ensemblex serve``; the ``serve`` extra).

:mod:`.batching` gathers concurrent requests into micro-batches, :mod:`.runner` runs the
model (optionally as an early-exit cascade), :mod:`.metrics` keeps the Prometheus counters and
:mod:`.app` is the FastAPI application that ties them together.
"""

from ensemblex.serving.app import create_app

__all__ = ["create_app"]
