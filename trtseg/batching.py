"""Dynamic batching for the segmentation actor: many cameras' frames, one engine call.

Concurrent ``submit`` calls are gathered into batches of up to ``max_batch`` items, or as many as
arrived within ``max_wait_ms`` of the oldest waiting item, and each batch runs in a worker thread
(ONNX Runtime and CUDA release the GIL, so the event loop keeps accepting frames meanwhile). Up to
``max_inflight`` batches run at once, for engines that overlap one batch's post-processing with the
next one's network. Every caller gets its own result; a failing batch fails only its own callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BatchFn = Callable[[list[T]], Sequence[R]]
BatchObserver = Callable[[int, float], None]


class BatcherClosedError(RuntimeError):
    """The batcher was closed; no new work is accepted."""


@dataclass(slots=True)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    arrived: float


@dataclass(slots=True)
class BatchStats:
    """Figures of the batches run so far (sizes, engine time, failures)."""

    batches: int = 0
    items: int = 0
    failed_batches: int = 0
    failed_items: int = 0
    cancelled_items: int = 0
    busy_s: float = 0.0
    last_batch_s: float = 0.0
    max_batch_s: float = 0.0
    sizes: Counter[int] = field(default_factory=Counter)

    def as_dict(self, queue_depth: int) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "items": self.items,
            "failed_batches": self.failed_batches,
            "failed_items": self.failed_items,
            "cancelled_items": self.cancelled_items,
            "mean_batch_size": round(self.items / self.batches, 3) if self.batches else 0.0,
            "mean_batch_ms": round(1000 * self.busy_s / self.batches, 3) if self.batches else 0.0,
            "last_batch_ms": round(1000 * self.last_batch_s, 3),
            "max_batch_ms": round(1000 * self.max_batch_s, 3),
            "batch_sizes": {int(k): int(v) for k, v in sorted(self.sizes.items())},
            "queue_depth": queue_depth,
        }


class Batcher(Generic[T, R]):
    """Collects concurrent submissions into batches and runs ``batch_fn`` on each batch.

    ``batch_fn`` takes the list of items and returns one result per item, in the same order.
    ``observer(size, seconds)`` is called after every batch (metrics hook).
    """

    def __init__(
        self,
        batch_fn: BatchFn[T, R],
        max_batch: int,
        max_wait_ms: float,
        name: str = "batcher",
        observer: BatchObserver | None = None,
        max_inflight: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be at least 1, got {max_inflight}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms cannot be negative, got {max_wait_ms}")
        self._fn = batch_fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.name = name
        self._observer = observer
        self._queue: deque[_Pending[T, R]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self.max_inflight = max_inflight
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix=f"{name}-batch")
        self._closed = False
        self.figures = BatchStats()

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its own result (or its batch's exception)."""
        if self._closed:
            raise BatcherClosedError(f"{self.name} is closed")
        loop = asyncio.get_running_loop()
        self._ensure_running(loop)
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Pending(item, future, time.monotonic()))
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    def stats(self) -> dict[str, Any]:
        """Batch sizes, times and failures, and how many items wait now."""
        return self.figures.as_dict(len(self._queue))

    async def close(self) -> None:
        """Finish the batches in progress, fail the waiting items, stop the worker threads."""
        self._closed = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(BatcherClosedError(f"{self.name} closed before this item ran"))
        self._executor.shutdown(wait=True)

    def _ensure_running(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._wakeup = asyncio.Event()
            self._slots = asyncio.Semaphore(self.max_inflight)
            self._loop_task = loop.create_task(self._run(), name=f"{self.name}-loop")

    async def _run(self) -> None:
        assert self._wakeup is not None and self._slots is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # A free slot first: items keep arriving while every slot is busy, so the batch taken
            # once one frees is a fuller one.
            await self._slots.acquire()
            try:
                await self._wait_for_fill()
                batch = self._take_batch()
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._running.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        assert self._slots is not None
        self._slots.release()

    async def _wait_for_fill(self) -> None:
        """Wait until the batch is full or the oldest item has waited ``max_wait``."""
        assert self._wakeup is not None
        deadline = self._queue[0].arrived + self.max_wait_s
        while len(self._queue) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Pending[T, R]]:
        batch: list[_Pending[T, R]] = []
        while self._queue and len(batch) < self.max_batch:
            pending = self._queue.popleft()
            if pending.future.done():  # the caller gave up (cancelled): do not spend the engine on it
                self.figures.cancelled_items += 1
                continue
            batch.append(pending)
        return batch

    async def _run_batch(self, batch: list[_Pending[T, R]]) -> None:
        loop = asyncio.get_running_loop()
        items = [pending.item for pending in batch]
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._call, items)
        except Exception as error:  # one batch's failure belongs to its callers only
            elapsed = time.perf_counter() - started
            self._record(len(batch), elapsed, failed=True)
            logger.warning("batch failed batcher=%s size=%d error=%s", self.name, len(batch), error, exc_info=error)
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        elapsed = time.perf_counter() - started
        self._record(len(batch), elapsed, failed=False)
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)

    def _call(self, items: list[T]) -> list[R]:
        results = list(self._fn(items))
        if len(results) != len(items):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        return results

    def _record(self, size: int, elapsed: float, failed: bool) -> None:
        figures = self.figures
        figures.batches += 1
        figures.items += size
        figures.sizes[size] += 1
        figures.busy_s += elapsed
        figures.last_batch_s = elapsed
        figures.max_batch_s = max(figures.max_batch_s, elapsed)
        if failed:
            figures.failed_batches += 1
            figures.failed_items += size
        if self._observer is not None:
            try:
                self._observer(size, elapsed)
            except Exception:  # metrics must never break inference
                logger.exception("batch observer failed batcher=%s", self.name)
