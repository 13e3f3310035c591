"""Runs the model off the event loop: a thread pool with one predictor per thread, a budget of decoded pixels
in flight (requests that do not fit wait, smallest first), a bound on queued work (503 when full) and a
per-request timeout (504). Each job returns its own result objects, so concurrent requests cannot mix results.

Images are decoded here, in the worker, at a reduced size (:func:`~agegender.data.images.load_image_reduced`):
the predictor gets an array whose longer side is at most ``decode_side`` and the boxes it returns are mapped
back to the full image's pixels."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agegender.data.images import DEFAULT_DECODE_SIDE, DEFAULT_MAX_PIXELS, load_image_reduced
from agegender.errors import AgeGenderError
from agegender.inference.results import STATUS_NO_FACE, STATUS_OK, ImageResult
from agegender.serve.uploads import ApiError

log = logging.getLogger(__name__)

#: status of an image whose decoding failed for a reason that is not a known user error (as the predictor's)
STATUS_ERROR = "error"


# ------------------------------------------------------------------------------------------ decoded-pixel budget


@dataclass(order=True)
class _Waiter:
    cost: int
    seq: int
    loop: asyncio.AbstractEventLoop = field(compare=False)
    future: asyncio.Future = field(compare=False)
    granted: bool = field(default=False, compare=False)
    abandoned: bool = field(default=False, compare=False)


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class PixelBudget:
    """At most ``capacity`` decoded pixels admitted to the model at once.

    A request that fits goes ahead at once; one that does not waits, and waiters are admitted smallest first
    as pixels come back, so a flood of big images delays small requests by at most the jobs already running,
    never by the big ones still waiting. At most ``max_waiting`` requests wait (503 ``pixel_budget_full``
    beyond); a wait longer than the request's timeout gives 504 ``pixel_budget_timeout``.

    Pixels are given back from the worker threads when a job ends (not when its request times out: a job that
    has started runs to the end and keeps its pixels meanwhile), hence the lock rather than asyncio-only state.
    """

    def __init__(self, capacity: int, max_waiting: int) -> None:
        if int(capacity) < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity, self.max_waiting = int(capacity), int(max_waiting)
        self.in_use = 0
        self.waiting = 0
        self._heap: list[_Waiter] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def clamp(self, cost: int) -> int:
        """A request's cost as the budget counts it: at most the whole budget (it then runs alone)."""
        return min(max(int(cost), 0), self.capacity)

    async def acquire(self, cost: int, timeout_s: float) -> float:
        """Take ``cost`` pixels (see :meth:`clamp`), waiting up to ``timeout_s``; return the seconds waited."""
        cost = self.clamp(cost)
        t0 = time.perf_counter()
        with self._lock:
            # Waiters are only ever requests that did not fit, so one that fits now is smaller than all of
            # them: going ahead keeps the smallest-first order.
            if self.in_use + cost <= self.capacity:
                self.in_use += cost
                return 0.0
            if self.waiting >= self.max_waiting:
                raise ApiError(503, "pixel_budget_full",
                               f"the server is busy with large images ({self.waiting} waiting to be decoded); "
                               "retry shortly, or send a smaller image", headers={"Retry-After": "1"})
            loop = asyncio.get_running_loop()
            waiter = _Waiter(cost, next(self._seq), loop, loop.create_future())
            heapq.heappush(self._heap, waiter)
            self.waiting += 1
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout_s)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    waiter.abandoned = True  # release() drops it from the heap
                    self.waiting -= 1
            if granted:  # handed over at the last moment
                if isinstance(exc, asyncio.CancelledError):
                    self.release(cost)
                    raise
            elif isinstance(exc, asyncio.CancelledError):
                raise
            else:
                raise ApiError(504, "pixel_budget_timeout",
                               f"waited {timeout_s:g} s for the server to have room to decode this image; retry "
                               "when it is less busy, or send a smaller image") from None
        return time.perf_counter() - t0

    def release(self, cost: int) -> None:
        """Give back ``cost`` pixels (the clamped cost :meth:`acquire` took); thread-safe."""
        with self._lock:
            self.in_use -= cost
            while self._heap:
                head = self._heap[0]
                if head.abandoned:
                    heapq.heappop(self._heap)
                    continue
                if self.in_use + head.cost > self.capacity:
                    break  # the smallest waiter does not fit: no larger one does
                heapq.heappop(self._heap)
                try:
                    head.loop.call_soon_threadsafe(_wake, head.future)
                except RuntimeError:  # its event loop is closed: nobody is left to use the pixels
                    self.waiting -= 1
                    continue
                head.granted = True
                self.in_use += head.cost
                self.waiting -= 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"pixels_in_flight": self.in_use, "waiting_for_pixels": self.waiting}


# ------------------------------------------------------------------------------------------------ reduced decoding


def _reduced(data: bytes, source: str, max_side: int | None,
             max_pixels: int | None) -> tuple[np.ndarray | None, tuple[int, int], ImageResult | None]:
    """``(rgb, full size, None)``, or ``(None, _, error result)`` when the upload cannot be decoded."""
    try:
        rgb, full = load_image_reduced(data, max_side=max_side, max_pixels=max_pixels)
        return rgb, full, None
    except AgeGenderError as e:
        return None, (0, 0), ImageResult(source=source, status=e.code, message=str(e))
    except Exception as e:  # a bug, reported like the predictor's own unexpected errors
        log.warning("unexpected error decoding %s", source, exc_info=True)
        return None, (0, 0), ImageResult(source=source, status=STATUS_ERROR, message=f"{type(e).__name__}: {e}")


def _to_full_size(res: ImageResult, rgb: np.ndarray, full: tuple[int, int]) -> ImageResult:
    """A result on the reduced array, with its boxes and size in the full image's pixels."""
    if res.status not in (STATUS_OK, STATUS_NO_FACE):
        return res
    width, height = full
    sx, sy = width / max(1, rgb.shape[1]), height / max(1, rgb.shape[0])
    for person in res.people:
        x1, y1, x2, y2 = person.box
        person.box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
    res.width, res.height = width, height
    return res


def predict_reduced(predictor: Any, data: bytes, source: str, max_side: int | None,
                    max_pixels: int | None) -> ImageResult:
    """``predictor.predict_image`` on ``data`` decoded at a reduced size, with its boxes in full-size pixels."""
    rgb, full, error = _reduced(data, source, max_side, max_pixels)
    if error is not None:
        return error
    return _to_full_size(predictor.predict_image(rgb, source=source), rgb, full)


def predict_batch_reduced(predictor: Any, images: Sequence[bytes], sources: Sequence[str], max_side: int | None,
                          max_pixels: int | None) -> list[ImageResult]:
    """``predictor.predict_batch`` on reduced decodes (one after the other, so only one full-size image is held
    at a time); files that cannot be decoded get their error result in place."""
    out: list[ImageResult | None] = [None] * len(images)
    good: list[tuple[int, np.ndarray, tuple[int, int]]] = []
    for i, (data, src) in enumerate(zip(images, sources)):
        rgb, full, error = _reduced(data, src, max_side, max_pixels)
        if error is not None:
            out[i] = error
        else:
            good.append((i, rgb, full))  # type: ignore[arg-type]
    if good:
        # workers=1: the pool's threads are the service's parallelism; a batch must not fan out further
        results = predictor.predict_batch([g[1] for g in good], workers=1, sources=[sources[g[0]] for g in good])
        for (i, rgb, full), res in zip(good, results):
            out[i] = _to_full_size(res, rgb, full)
    return [r for r in out if r is not None]


# ------------------------------------------------------------------------------------------------ the pool


class PredictorPool:
    """``len(predictors)`` worker threads; a job borrows a free predictor for its whole duration.

    A predictor is only ever used by one thread at a time, which is what makes sharing safe even for
    detectors (OpenCV, dlib) that are not thread-safe. Queued jobs start cheapest first (by decoded pixels,
    in arrival order among equals), so small images do not queue behind big ones.
    """

    def __init__(self, predictors: Sequence[Any], max_pending: int, timeout_s: float, *,
                 pixel_budget: int | None = None, decode_side: int | None = DEFAULT_DECODE_SIDE,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        if not predictors:
            raise ValueError("at least one predictor is needed")
        self.predictors = list(predictors)
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for p in self.predictors:
            self._free.put(p)
        self._executor = ThreadPoolExecutor(len(self.predictors), thread_name_prefix="agegender-serve")
        self.max_pending = int(max_pending)
        self.timeout_s = float(timeout_s)
        self.decode_side, self.max_pixels = decode_side, max_pixels
        # requests waiting for pixels hold only their upload; max_pending bounds them as it bounds the queue
        self.budget = PixelBudget(pixel_budget, self.max_pending) if pixel_budget else None
        self._lock = threading.Lock()
        self._jobs: list[tuple[int, int, Future, Callable[[Any], Any], float]] = []  # heap, under _lock
        self._seq = itertools.count()
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

    def _run_next(self) -> None:
        """One executor task per submitted job; each runs the cheapest job queued when a thread is free."""
        with self._lock:
            _, _, fut, fn, queued_at = heapq.heappop(self._jobs)
        if not fut.set_running_or_notify_cancel():
            return  # cancelled while queued (its request timed out)
        try:
            fut.set_result(self._job(fn, queued_at))
        except BaseException as exc:  # noqa: BLE001  handed to the request, which answers 500
            fut.set_exception(exc)

    def _finished(self, cost: int) -> Callable[[Any], None]:
        def done(_fut: Any) -> None:
            with self._lock:
                self.pending -= 1
                self.completed += 1
            if self.budget is not None:
                self.budget.release(cost)

        return done

    async def run(self, fn: Callable[[Any], Any], cost: int = 0) -> tuple[Any, float, float]:
        """``fn(predictor)`` in a worker thread → ``(result, queue_ms, run_ms)``; ``cost``: decoded pixels.

        Waits for ``cost`` pixels of the budget first (503 ``pixel_budget_full``, 504 ``pixel_budget_timeout``).
        Raises ``ApiError(503, "busy")`` when ``max_pending`` jobs are already admitted and
        ``ApiError(504, "timeout")`` after ``timeout_s`` in all. A job that has not started by then is cancelled;
        one already running finishes in its thread (Python threads cannot be stopped) and still counts
        towards ``max_pending`` and the pixel budget until it does, so a stuck model makes the service answer
        503, not pile up.
        """
        t0 = time.perf_counter()
        cost = self.budget.clamp(cost) if self.budget is not None else 0
        waited = await self.budget.acquire(cost, self.timeout_s) if self.budget is not None else 0.0
        with self._lock:
            busy = self.pending >= self.max_pending
            if not busy:
                self.pending += 1
        if busy:
            if self.budget is not None:
                self.budget.release(cost)
            raise ApiError(503, "busy", f"the server is busy ({self.pending} requests queued); retry shortly",
                           headers={"Retry-After": "1"})
        fut: Future = Future()
        fut.add_done_callback(self._finished(cost))
        with self._lock:
            heapq.heappush(self._jobs, (cost, next(self._seq), fut, fn, time.perf_counter()))
        try:
            self._executor.submit(self._run_next)
        except RuntimeError:  # the executor was shut down
            fut.cancel()
            raise ApiError(503, "shutting_down", "the server is shutting down") from None
        remaining = max(0.0, self.timeout_s - (time.perf_counter() - t0))
        try:
            result, queue_ms, run_ms = await asyncio.wait_for(asyncio.wrap_future(fut), remaining)
        except asyncio.TimeoutError:
            fut.cancel()
            raise ApiError(504, "timeout", f"the prediction took longer than {self.timeout_s:g} s; try a smaller "
                                           "image or retry when the server is less busy") from None
        return result, queue_ms + waited * 1000.0, run_ms

    async def predict(self, data: bytes, source: str, cost: int = 0) -> tuple[ImageResult, float, float]:
        side, limit = self.decode_side, self.max_pixels
        return await self.run(lambda p: predict_reduced(p, data, source, side, limit), cost)

    async def predict_batch(self, images: Sequence[bytes], sources: Sequence[str],
                            cost: int = 0) -> tuple[list[ImageResult], float, float]:
        side, limit = self.decode_side, self.max_pixels
        return await self.run(lambda p: predict_batch_reduced(p, list(images), list(sources), side, limit), cost)

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = {"workers": len(self.predictors), "running": self.running,
                   "queued": max(0, self.pending - self.running), "completed": self.completed}
        if self.budget is not None:
            out.update(self.budget.stats())
        return out

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            queued = [job[2] for job in self._jobs]
        for fut in queued:  # their executor tasks were just cancelled: nobody would run them
            fut.cancel()
