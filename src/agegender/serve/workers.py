"""Runs the model off the event loop: a thread pool with one predictor per thread, a bound on queued work
(503 when full) and a per-request timeout (504). Each job returns its own result objects, so concurrent
requests cannot mix results."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agegender.inference.results import ImageResult
from agegender.serve.uploads import ApiError


class PredictorPool:
    """``len(predictors)`` worker threads; a job borrows a free predictor for its whole duration.

    A predictor is only ever used by one thread at a time, which is what makes sharing safe even for
    detectors (OpenCV, dlib) that are not thread-safe.
    """

    def __init__(self, predictors: Sequence[Any], max_pending: int, timeout_s: float) -> None:
        if not predictors:
            raise ValueError("at least one predictor is needed")
        self.predictors = list(predictors)
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for p in self.predictors:
            self._free.put(p)
        self._executor = ThreadPoolExecutor(len(self.predictors), thread_name_prefix="agegender-serve")
        self.max_pending = int(max_pending)
        self.timeout_s = float(timeout_s)
        self._lock = threading.Lock()
        self.pending = 0  # admitted jobs not finished yet (running, queued, or abandoned after a timeout)
        self.running = 0
        self.completed = 0

    @property
    def primary(self) -> Any:
        return self.predictors[0]

    def _job(self, fn: Callable[[Any], Any], queued_at: float) -> tuple[Any, float, float]:
        started = time.perf_counter()
        predictor = self._free.get()
        with self._lock:
            self.running += 1
        try:
            result = fn(predictor)
        finally:
            self._free.put(predictor)
            with self._lock:
                self.running -= 1
        done = time.perf_counter()
        return result, (started - queued_at) * 1000.0, (done - started) * 1000.0

    def _finished(self, _fut: Any) -> None:
        with self._lock:
            self.pending -= 1
            self.completed += 1

    async def run(self, fn: Callable[[Any], Any]) -> tuple[Any, float, float]:
        """``fn(predictor)`` in a worker thread → ``(result, queue_ms, run_ms)``.

        Raises ``ApiError(503, "busy")`` when ``max_pending`` jobs are already admitted and
        ``ApiError(504, "timeout")`` after ``timeout_s``. A job that has not started by then is cancelled;
        one already running finishes in its thread (Python threads cannot be stopped) and still counts
        towards ``max_pending`` until it does, so a stuck model makes the service answer 503, not pile up.
        """
        with self._lock:
            if self.pending >= self.max_pending:
                raise ApiError(503, "busy", f"the server is busy ({self.pending} requests queued); retry shortly",
                               headers={"Retry-After": "1"})
            self.pending += 1
        try:
            fut = self._executor.submit(self._job, fn, time.perf_counter())
        except RuntimeError:  # the executor was shut down
            with self._lock:
                self.pending -= 1
            raise ApiError(503, "shutting_down", "the server is shutting down") from None
        fut.add_done_callback(self._finished)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.timeout_s)
        except asyncio.TimeoutError:
            fut.cancel()
            raise ApiError(504, "timeout", f"the prediction took longer than {self.timeout_s:g} s; try a smaller "
                                           "image or retry when the server is less busy") from None

    async def predict(self, data: bytes, source: str) -> tuple[ImageResult, float, float]:
        return await self.run(lambda p: p.predict_image(data, source=source))

    async def predict_batch(self, images: Sequence[bytes], sources: Sequence[str]) -> tuple[list[ImageResult],
                                                                                              float, float]:
        # workers=1: the pool's threads are the service's parallelism; a batch must not fan out further
        return await self.run(lambda p: p.predict_batch(list(images), workers=1, sources=list(sources)))

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"workers": len(self.predictors), "running": self.running,
                    "queued": max(0, self.pending - self.running), "completed": self.completed}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
