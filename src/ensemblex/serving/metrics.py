"""The server's Prometheus metrics, in a registry of its own (one per application)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Latency buckets from 1 ms: single rows of a small ensemble answer in milliseconds.
_LATENCY = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServerMetrics:
    """Requests by endpoint and status, request latency, batch sizes, cascade exit stages,
    errors by kind and the queue's depth."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ensemblex_requests", "HTTP requests answered", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "ensemblex_request_seconds",
            "Seconds from receiving a predict request to answering it",
            buckets=_LATENCY,
            registry=r,
        )
        self.rows = Counter("ensemblex_predicted_rows", "Rows predicted", registry=r)
        self.batch_rows = Histogram(
            "ensemblex_batch_rows", "Rows per model call (micro-batch)", buckets=_ROWS, registry=r
        )
        self.exits = Counter(
            "ensemblex_cascade_exits",
            "Rows leaving the early-exit cascade, by stage (the last: the full ensemble)",
            ["stage"],
            registry=r,
        )
        self.errors = Counter(
            "ensemblex_errors", "Requests refused or failed, by kind", ["kind"], registry=r
        )
        self.queue = Gauge("ensemblex_queue_requests", "Requests waiting for a batch", registry=r)

    def on_batch(self, n_rows: int, info: dict) -> None:
        self.batch_rows.observe(n_rows)
        self.rows.inc(n_rows)
        for stage, count in enumerate(info.get("exit_stages", ())):
            if count:
                self.exits.labels(stage=str(stage)).inc(int(count))
