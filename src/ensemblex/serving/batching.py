"""Dynamic micro-batching: concurrent requests share one model call.

Requests wait in a bounded queue; one worker takes the first, then whatever else arrives
within ``max_wait_ms`` up to ``max_batch`` rows, runs the model once on all of them in a
thread (so the event loop keeps accepting), and hands each request its rows back. A full
queue refuses new requests at once (the server answers 503) instead of letting latency grow
without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd


class QueueFull(RuntimeError):
    """The batcher holds ``max_queue`` requests already."""


@dataclass
class _Request:
    frame: pd.DataFrame
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gathers frames into batches for ``predict(frame) -> (result_frame, info)``.

    Parameters
    ----------
    predict : callable
        Runs on the concatenated rows of a batch, in a worker thread; returns a frame with
        one row per input row (in order) and a dict passed to ``on_batch``.
    max_batch : int
        Most rows in one model call (a request larger than this runs alone).
    max_wait_ms : float
        How long the first request of a batch waits for others.
    max_queue : int
        Most requests waiting; beyond it :meth:`submit` raises :class:`QueueFull`.
    on_batch : callable, optional
        ``on_batch(n_rows, info)`` after every batch (metrics).
    """

    def __init__(
        self,
        predict: Callable[[pd.DataFrame], tuple[pd.DataFrame, dict]],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        max_queue: int = 1024,
        on_batch: Callable[[int, dict], None] | None = None,
    ):
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Requests waiting."""
        return 0 if self._queue is None else self._queue.qsize()

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._worker = asyncio.create_task(self._run(), name="ensemblex-batcher")

    async def stop(self) -> None:
        """Answer what is queued, then stop (graceful shutdown)."""
        if self._worker is None:
            return
        while self._queue.qsize():
            await asyncio.sleep(0.005)
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
        self._worker = None

    async def submit(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's rows for ``frame``; raises :class:`QueueFull` when the queue is full."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        request = _Request(frame, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            raise QueueFull(f"{self.max_queue} requests are waiting") from None
        return await request.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch, rows = [first], len(first.frame)
            deadline = loop.time() + self.max_wait
            while rows < self.max_batch:
                timeout = deadline - loop.time()
                try:
                    nxt = (
                        self._queue.get_nowait()
                        if timeout <= 0
                        else await asyncio.wait_for(self._queue.get(), timeout)
                    )
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                if rows + len(nxt.frame) > self.max_batch:
                    # too big to join: it opens the next batch, which runs right after
                    await self._run_batch(batch, rows)
                    batch, rows = [nxt], len(nxt.frame)
                    deadline = loop.time() + self.max_wait
                    continue
                batch.append(nxt)
                rows += len(nxt.frame)
            await self._run_batch(batch, rows)

    async def _run_batch(self, batch: list[_Request], rows: int) -> None:
        frame = (
            pd.concat([r.frame for r in batch], ignore_index=True)
            if len(batch) > 1
            else (batch[0].frame.reset_index(drop=True))
        )
        try:
            result, info = await asyncio.to_thread(self.predict, frame)
        except Exception as exc:  # every request of the batch gets the error
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(rows, info)
        start = 0
        for r in batch:
            part = result.iloc[start : start + len(r.frame)].reset_index(drop=True)
            start += len(r.frame)
            if not r.future.done():  # a client that went away leaves a cancelled future
                r.future.set_result(part)
