"""Batcher: batches form by size and by wait, callers get their own results, failures stay local."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from trtseg.batching import Batcher, BatcherClosedError

T = TypeVar("T")


class Recorder:
    """A batch function that remembers the batches it ran (and can be told to fail or be slow)."""

    def __init__(self, delay_s: float = 0.0, fail_on: object = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s
        self.fail_on = fail_on

    def __call__(self, items: list[int]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(items))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [item * 10 for item in items]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_full_batch_forms_without_waiting() -> None:
    fn = Recorder()

    async def main() -> tuple[list[int], float]:
        batcher = Batcher(fn, max_batch=4, max_wait_ms=5000)
        started = time.monotonic()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(4)))
        elapsed = time.monotonic() - started
        await batcher.close()
        return list(results), elapsed

    results, elapsed = run(main())
    assert results == [0, 10, 20, 30]
    assert fn.batches == [[0, 1, 2, 3]]
    assert elapsed < 1.0, "a full batch must not wait for max_wait"


def test_partial_batch_runs_after_max_wait() -> None:
    fn = Recorder()

    async def main() -> float:
        batcher = Batcher(fn, max_batch=8, max_wait_ms=150)
        started = time.monotonic()
        results = await asyncio.gather(batcher.submit(1), batcher.submit(2))
        assert results == [10, 20]
        elapsed = time.monotonic() - started
        await batcher.close()
        return elapsed

    elapsed = run(main())
    assert fn.batches == [[1, 2]]
    assert 0.12 <= elapsed < 2.0


def test_oversubscription_splits_into_ordered_batches() -> None:
    fn = Recorder()

    async def main() -> list[int]:
        batcher = Batcher(fn, max_batch=3, max_wait_ms=20)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(8)))
        stats = batcher.stats()
        await batcher.close()
        assert stats["batches"] == 3 and stats["items"] == 8
        assert stats["batch_sizes"] == {2: 1, 3: 2}
        return list(results)

    assert run(main()) == [i * 10 for i in range(8)]
    assert fn.batches == [[0, 1, 2], [3, 4, 5], [6, 7]]


def test_items_arriving_during_a_batch_form_the_next_batch() -> None:
    fn = Recorder(delay_s=0.2)

    async def main() -> None:
        batcher = Batcher(fn, max_batch=8, max_wait_ms=0)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)  # batch [0] is running in the worker thread now
        later = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
        assert await first == 0
        assert await asyncio.gather(*later) == [10, 20, 30]
        await batcher.close()

    run(main())
    assert fn.batches == [[0], [1, 2, 3]]
    assert all(name.startswith("batcher-batch") for name in fn.threads), "batches run off the event loop"


def test_failure_reaches_only_its_own_batch() -> None:
    fn = Recorder(fail_on=2)

    async def main() -> None:
        batcher = Batcher(fn, max_batch=2, max_wait_ms=10)
        outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)
        assert outcomes[0] == 0 and outcomes[1] == 10
        assert isinstance(outcomes[2], ValueError) and isinstance(outcomes[3], ValueError)
        assert outcomes[4] == 40 and outcomes[5] == 50
        stats = batcher.stats()
        assert stats["failed_batches"] == 1 and stats["failed_items"] == 2
        assert await batcher.submit(7) == 70, "the batcher keeps working after a failed batch"
        await batcher.close()

    run(main())


def test_wrong_result_count_is_an_error_for_the_batch() -> None:
    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(lambda items: items[:-1], max_batch=2, max_wait_ms=10)
        outcomes = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        assert all(isinstance(o, RuntimeError) and "2 items" in str(o) for o in outcomes)
        await batcher.close()

    run(main())


def test_cancelled_caller_is_skipped() -> None:
    fn = Recorder(delay_s=0.15)

    async def main() -> None:
        batcher = Batcher(fn, max_batch=1, max_wait_ms=0)
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.02)
        doomed = asyncio.ensure_future(batcher.submit(2))
        kept = asyncio.ensure_future(batcher.submit(3))
        await asyncio.sleep(0.02)
        doomed.cancel()
        assert await first == 10 and await kept == 30
        assert batcher.stats()["cancelled_items"] == 1
        await batcher.close()

    run(main())
    assert fn.batches == [[1], [3]]


def test_observer_sees_each_batch_and_close_refuses_new_work() -> None:
    seen: list[tuple[int, float]] = []

    async def main() -> None:
        batcher = Batcher(Recorder(), max_batch=4, max_wait_ms=5, observer=lambda n, s: seen.append((n, s)))
        await asyncio.gather(*(batcher.submit(i) for i in range(4)))
        await batcher.close()
        with pytest.raises(BatcherClosedError):
            await batcher.submit(1)

    run(main())
    assert [n for n, _ in seen] == [4]
    assert seen[0][1] >= 0


@pytest.mark.parametrize(("max_batch", "max_wait_ms"), [(0, 1), (1, -1)])
def test_bad_settings_are_refused(max_batch: int, max_wait_ms: float) -> None:
    with pytest.raises(ValueError):
        Batcher(Recorder(), max_batch=max_batch, max_wait_ms=max_wait_ms)


def test_two_batches_in_flight_overlap_and_answer_their_own_callers() -> None:
    """max_inflight=2: a second batch starts while the first still runs (the GPU engine's overlap)."""
    both_running = threading.Barrier(2, timeout=5)
    seen: list[list[int]] = []

    def fn(items: list[int]) -> list[int]:
        seen.append(list(items))
        both_running.wait()  # only returns when two batches run at the same time
        return [item + 100 for item in items]

    async def main() -> list[int]:
        batcher = Batcher(fn, max_batch=2, max_wait_ms=1, max_inflight=2)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(4)))
        await batcher.close()
        return list(results)

    assert run(main()) == [100, 101, 102, 103]
    assert sorted(seen) == [[0, 1], [2, 3]]


def test_single_inflight_never_overlaps() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def fn(items: list[int]) -> list[int]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return items

    async def main() -> None:
        batcher = Batcher(fn, max_batch=1, max_wait_ms=0)
        await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.close()

    run(main())
    assert peak == 1


def test_close_waits_for_every_batch_in_flight() -> None:
    fn = Recorder(delay_s=0.2)

    async def main() -> list[int]:
        batcher = Batcher(fn, max_batch=1, max_wait_ms=0, max_inflight=2)
        first = [asyncio.ensure_future(batcher.submit(i)) for i in range(2)]
        await asyncio.sleep(0.05)  # both batches are running
        await batcher.close()
        return [f.result() for f in first]

    assert run(main()) == [0, 10]


def test_max_inflight_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_inflight"):
        Batcher(Recorder(), max_batch=1, max_wait_ms=0, max_inflight=0)
