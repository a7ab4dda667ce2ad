"""The FastAPI application of ``ensemblex serve``.

Endpoints: ``POST /predict`` (JSON records or a CSV body), ``GET /health``, ``GET /metadata``
and ``GET /metrics`` (Prometheus). A request is checked against the training schema before it
joins a batch, so one bad request never fails the others; every refusal is a 4xx JSON body
``{"error": ..., "field": ...}`` naming what was wrong.
"""

from __future__ import annotations

import io
import json
import re
import time
from contextlib import asynccontextmanager

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Route

from ensemblex.serving.batching import MicroBatcher, QueueFull
from ensemblex.serving.metrics import ServerMetrics
from ensemblex.serving.runner import (
    CascadeRunner,
    ModelRunner,
    compile_members,
    fit_serving_cascade,
    probe_rows,
)

_NAMED_COLUMN = re.compile(r"column '([^']*)'")


class RequestError(ValueError):
    """A request refused with ``status`` (4xx) and a message naming the ``field``."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.field = field


def create_app(
    source,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 0.0,
    max_queue: int = 256,
    max_body_bytes: int = 8 * 2**20,
    cascade: bool = False,
    id_column: str | None = None,
    key: str | bytes | None = None,
    treelite: bool = True,
):
    """A FastAPI application serving the saved ensemble of a run or model folder.

    The model is loaded (digests checked; signature too with ``key`` or the
    ``ENSEMBLEX_SIGNING_KEY`` environment variable) before the application exists: a model
    that fails verification raises ValueError, so the server never starts on it.

    Parameters
    ----------
    source : path
        A run folder (``ensemblex run --out``) or a saved model folder.
    max_batch, max_wait_ms : int, float
        Micro-batching: most rows per model call, and how long the first request of a batch
        waits for others (0: requests that arrive while the model runs form the next batch).
    max_queue : int
        Most requests waiting; more are answered 503.
    max_body_bytes : int
        Larger request bodies are answered 413.
    cascade : bool
        Run the early-exit cascade chosen on the run's out-of-fold rows (classification
        runs only).
    id_column : str, optional
        A column copied from each request into its response (also ``?id=COL`` per request).
    key : str or bytes, optional
        Signing key the model must be signed with.
    treelite : bool
        Give tree members Treelite twins where they predict as the members do (needs the
        ``treelite`` package); nearest-neighbour members get numpy twins either way
        (:func:`ensemblex.serving.runner.compile_members`).
    """
    from ensemblex.ensemble import MANIFEST, MANIFEST_DIGEST, Ensemble
    from ensemblex.runs import model_dir

    folder = model_dir(source)
    model = Ensemble.load(folder, key=key)
    digest = (folder / MANIFEST_DIGEST).read_text().split()[0]
    manifest = json.loads((folder / MANIFEST).read_text())
    compiled = compile_members(model, treelite=treelite)
    runner = CascadeRunner(model, fit_serving_cascade(source, model)) if cascade else None
    runner = runner or ModelRunner(model)
    metrics = ServerMetrics()
    batcher = MicroBatcher(
        lambda parts: predict_parts(runner, parts),
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        on_batch=metrics.on_batch,
    )
    runner.predict(probe_rows(model, n=8))  # warm the members' first calls before serving
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        state["ready"] = True
        yield
        state["ready"] = False  # graceful shutdown: answer what is queued, then stop
        await batcher.stop()

    app = FastAPI(title="ensemblex", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error(status: int, message: str, field: str | None, endpoint: str, kind: str):
        metrics.errors.labels(kind=kind).inc()
        metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
        return JSONResponse({"error": message, "field": field}, status_code=status)

    # A plain Starlette route: the endpoint reads the raw request itself, so FastAPI's
    # dependency resolution per request (a fifth of the event loop's time at concurrency 64)
    # buys nothing here.
    async def predict(request: Request):
        start = time.perf_counter()
        try:
            body = await _read_body(request, max_body_bytes)
            part = _parse(body, request.headers.get("content-type", ""))
            id_name = request.query_params.get("id") or id_column
            ids, part = _split_id(part, id_name, model)
            part = _checked(part, model)
        except RequestError as exc:
            return error(exc.status, str(exc), exc.field, "predict", "bad_request")
        if not state["ready"]:
            return error(503, "the server is shutting down", None, "predict", "shutting_down")
        metrics.queue.set(batcher.depth)
        try:
            rows = await batcher.submit(part, len(part))
        except QueueFull as exc:
            return error(503, f"busy: {exc}; retry later", None, "predict", "queue_full")
        except ValueError as exc:  # what the checks let through but a member refuses
            return error(422, _one_line(exc), _field(exc), "predict", "model_refused")
        except Exception as exc:  # a native library's error: named, the server stays up
            message = f"the model failed on this request ({type(exc).__name__}: {_one_line(exc)})"
            return error(500, message, None, "predict", "model_failed")
        if ids is not None:
            rows = [{id_name: i, **row} for i, row in zip(ids, rows)]
        metrics.latency.observe(time.perf_counter() - start)
        metrics.requests.labels(endpoint="predict", status="200").inc()
        text = json.dumps({"predictions": rows}, default=_plain)
        return Response(text, media_type="application/json")

    app.router.routes.append(Route("/predict", predict, methods=["POST"]))

    @app.get("/health")
    async def health():
        status = 200 if state["ready"] else 503
        metrics.requests.labels(endpoint="health", status=str(status)).inc()
        body = {"status": "ok" if state["ready"] else "shutting down", "queue": batcher.depth}
        return JSONResponse(body, status_code=status)

    weights = _weights(model)
    meta = {
        "model": str(folder),
        "sha256": digest,
        "estimator": manifest.get("estimator"),
        "task": model.task_,
        "classes": None if model.classes_ is None else [_plain(c) for c in model.classes_],
        "metric": model.metric_.name,
        "schema": model.schema_.to_dict(),
        "members": [m.name for m in model.fitted_members_],
        "member_columns": list(model.member_names_),
        "refit_full": bool(getattr(model, "refit_full", False)),
        "compiled_members": compiled,
        "combiner": manifest["combiner"].get("class"),
        "chosen": getattr(model.combiner_, "method_", type(model.combiner_).__name__),
        "weights": weights,
        "versions": manifest.get("versions", {}),
        "serving": {
            "max_batch": max_batch,
            "max_wait_ms": max_wait_ms,
            "max_queue": max_queue,
            "max_body_bytes": max_body_bytes,
            "id_column": id_column,
        },
        "cascade": None
        if not cascade
        else {
            "order": list(runner.cascade.order_),
            "rule": runner.cascade.rule,
            "threshold": float(runner.cascade.threshold_),
        },
    }

    @app.get("/metadata")
    async def metadata():
        metrics.requests.labels(endpoint="metadata", status="200").inc()
        return JSONResponse(_finite(meta))

    @app.get("/metrics")
    async def prometheus():
        metrics.queue.set(batcher.depth)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.model = model
    app.state.metrics = metrics
    return app


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body has {declared} bytes; the limit is {limit}")
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


# JSON requests up to this many records are checked record by record and batched as
# records; larger ones go through a DataFrame and the schema's own check.
_RECORDS_CHECKED_ONE_BY_ONE = 256


def predict_parts(runner, parts: list) -> tuple[list, dict]:
    """The model on the parts of one batch (lists of checked records, or checked frames):
    one list of output records per part. A part the model refuses fails alone."""
    if all(isinstance(p, list) for p in parts):
        frame = pd.DataFrame.from_records([r for p in parts for r in p])
    else:
        frames = [pd.DataFrame.from_records(p) if isinstance(p, list) else p for p in parts]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    try:
        table, info = runner.predict(frame)
    except ValueError:
        if len(parts) == 1:
            raise
        results, stages = [], None
        for part in parts:
            try:
                result, info = predict_parts(runner, [part])
            except ValueError as exc:
                results.append(exc)
                continue
            results.append(result[0])
            if "exit_stages" in info:
                stages = info["exit_stages"] if stages is None else stages + info["exit_stages"]
        return results, ({} if stages is None else {"exit_stages": stages})
    records = table.to_dict("records")
    results, start = [], 0
    for part in parts:
        results.append(records[start : start + len(part)])
        start += len(part)
    return results, info


def _parse(body: bytes, content_type: str):
    """Rows from a JSON body (a list of records, or ``{"records": [...]}``) as a list of
    dicts, or from a CSV body as a DataFrame."""
    kind = content_type.split(";")[0].strip().lower()
    if not body:
        raise RequestError(400, "the body is empty; send JSON records or CSV rows")
    if kind in ("text/csv", "application/csv"):
        try:
            frame = pd.read_csv(io.BytesIO(body))
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise RequestError(400, f"not a readable CSV body ({_one_line(exc)})") from None
        if frame.empty:
            raise RequestError(422, "no rows to predict")
        return frame
    if kind not in ("application/json", ""):
        raise RequestError(415, f"content type {kind!r}; send application/json or text/csv")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"not valid JSON ({_one_line(exc)})") from None
    if isinstance(data, dict):
        data = data.get("records", data.get("dataframe_records"))
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise RequestError(
            422, 'expected a JSON list of records ({"column": value, ...}) or {"records": [...]}'
        )
    if not data:
        raise RequestError(422, "no rows to predict")
    for i, record in enumerate(data):
        for name, value in record.items():
            if isinstance(value, dict | list):
                raise RequestError(
                    422,
                    f"record {i}: column {name!r} holds a {type(value).__name__}; "
                    "expected a number, a string or null",
                    name,
                )
    return data


def _split_id(part, id_column: str | None, model) -> tuple:
    """The id values of a request, and its rows without the id column unless the model
    reads or knowingly ignores that column."""
    if id_column is None:
        return None, part
    schema = model.schema_
    keep = id_column in schema.features or id_column in schema.dropped
    if isinstance(part, pd.DataFrame):
        if id_column not in part.columns:
            raise RequestError(422, f"id column {id_column!r} is not in the request", id_column)
        ids = part[id_column].tolist()
        return ids, part if keep else part.drop(columns=id_column)
    if any(id_column not in r for r in part):
        raise RequestError(422, f"id column {id_column!r} is not in every record", id_column)
    ids = [r[id_column] for r in part]
    if keep:
        return ids, part
    return ids, [{k: v for k, v in r.items() if k != id_column} for r in part]


def _checked(part, model):
    """The request's rows checked against the training schema (a 422 naming the field):
    small JSON requests record by record (they are batched as records), the rest as a
    frame through the schema's own check."""
    schema = model.schema_
    if isinstance(part, list) and len(part) > _RECORDS_CHECKED_ONE_BY_ONE:
        part = pd.DataFrame.from_records(part)
    if isinstance(part, pd.DataFrame):
        missing = [c for c in schema.features if c not in part.columns]
        if missing:
            raise RequestError(
                422, f"missing columns {missing}; the model was trained on them", missing[0]
            )
        try:
            return schema.check(part, source="request")
        except (ValueError, TypeError) as exc:
            raise RequestError(422, _one_line(exc), _field(exc)) from None
    known = set(schema.features) | set(schema.dropped)
    for i, record in enumerate(part):
        missing = [c for c in schema.features if c not in record]
        if missing:
            raise RequestError(
                422,
                f"record {i}: missing columns {missing}; the model was trained on them",
                missing[0],
            )
        extra = [c for c in record if c not in known]
        if extra:
            raise RequestError(
                422,
                f"record {i}: unexpected columns {extra}; the model knows {schema.features}",
                extra[0],
            )
        for col in schema.numeric:
            value = record[col]
            if value is None or isinstance(value, int | float):
                continue
            if isinstance(value, str):
                try:
                    float(value)
                    continue
                except ValueError:
                    pass
            raise RequestError(
                422,
                f"record {i}: column {col!r} holds {value!r}; expected a number or null",
                col,
            )
    return part


def _field(exc: Exception) -> str | None:
    found = _NAMED_COLUMN.search(str(exc))
    if found:
        return found.group(1)
    listed = re.search(r"columns \['([^']*)'", str(exc))
    return listed.group(1) if listed else None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:500]


def _weights(model) -> dict | None:
    from ensemblex.combiners.base import mixture_weights

    weights = mixture_weights(model.combiner_)
    if weights is None:
        return None
    return {name: float(w) for name, w in zip(model.member_names_, weights)}


def _finite(value):
    """JSON-able: NaN and infinities (a range, a threshold) become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return _plain(value)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["RequestError", "create_app"]
