"""Dynamic micro-batching: concurrent requests share one model call.

Requests wait in a bounded queue. One worker takes the first, optionally waits
``max_wait_ms`` for others, then takes whatever is queued up to ``max_batch`` rows, and runs
the model once on all of them in a thread, so the event loop keeps accepting. While the model
runs, new requests queue up and form the next batch (continuous batching: with the default
``max_wait_ms=0`` a lone request is never held back, and under load batches grow by
themselves). A full queue refuses new requests at once (the server answers 503) instead of
letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


class QueueFull(RuntimeError):
    """The batcher holds ``max_queue`` requests already."""


@dataclass
class _Request:
    part: Any
    rows: int
    future: asyncio.Future


class MicroBatcher:
    """Gathers requests' parts into batches for ``predict(parts) -> (results, info)``.

    Parameters
    ----------
    predict : callable
        Runs in a worker thread on the parts of one batch (in arrival order); returns one
        result per part (an exception instance fails that part's request alone) and a dict
        passed to ``on_batch``.
    max_batch : int
        Most rows in one model call (a larger request runs alone).
    max_wait_ms : float
        How long the first request of a batch waits for others (0: not at all).
    max_queue : int
        Most requests waiting; beyond it :meth:`submit` raises :class:`QueueFull`.
    on_batch : callable, optional
        ``on_batch(n_rows, info)`` after every batch (metrics).
    """

    def __init__(
        self,
        predict: Callable[[list], tuple[list, dict]],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 0.0,
        max_queue: int = 256,
        on_batch: Callable[[int, dict], None] | None = None,
    ):
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._carry: _Request | None = None
        self._busy = False

    @property
    def depth(self) -> int:
        """Requests waiting."""
        return (0 if self._queue is None else self._queue.qsize()) + (self._carry is not None)

    async def start(self) -> None:
        # one thread, always the same, runs the model: the members' libraries keep their
        # per-thread state (OpenMP teams, caches) warm between batches
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ensemblex-model")
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._worker = asyncio.create_task(self._run(), name="ensemblex-batcher")

    async def stop(self) -> None:
        """Answer what is queued, then stop (graceful shutdown)."""
        if self._worker is None:
            return
        while self.depth or self._busy:
            await asyncio.sleep(0.005)
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
        self._worker = None
        self._executor.shutdown(wait=True)

    async def submit(self, part, rows: int):
        """The result for ``part`` (``rows`` rows); raises :class:`QueueFull` when the queue
        is full, or the exception the model raised for this part."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        request = _Request(part, rows, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            raise QueueFull(f"{self.max_queue} requests are waiting") from None
        return await request.future

    async def _run(self) -> None:
        while True:
            if self._carry is not None:
                first, self._carry = self._carry, None
            else:
                first = await self._queue.get()
            self._busy = True
            if self.max_wait > 0:
                await asyncio.sleep(self.max_wait)
            batch, rows = [first], first.rows
            # only get_nowait after the first: an item is never lost to a cancelled get
            while rows < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if rows + nxt.rows > self.max_batch:
                    self._carry = nxt  # opens the next batch
                    break
                batch.append(nxt)
                rows += nxt.rows
            try:
                await self._run_batch(batch, rows)
            finally:
                self._busy = False

    async def _run_batch(self, batch: list[_Request], rows: int) -> None:
        try:
            loop = asyncio.get_running_loop()
            parts = [r.part for r in batch]
            results, info = await loop.run_in_executor(self._executor, self.predict, parts)
        except Exception as exc:  # every request of the batch gets the error
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(rows, info)
        for r, result in zip(batch, results):
            if r.future.done():  # a client that went away leaves a cancelled future
                continue
            if isinstance(result, BaseException):
                r.future.set_exception(result)
            else:
                r.future.set_result(result)
