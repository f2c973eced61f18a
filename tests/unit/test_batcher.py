"""Group commit's batching, with a fake write: who goes together, and who gets which answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from oms.db import Batcher


async def settle() -> None:
    """Let the tasks started so far run up to their next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


class Writes:
    def __init__(self, refuse: set[int] | None = None, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.refuse = refuse or set()
        self.fail = fail
        self.gate = asyncio.Event()

    async def write(self, items: list[int]) -> Sequence[BaseException | None]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("database gone")
        return [ValueError(f"refused {i}") if i in self.refuse else None for i in items]


def test_a_lone_write_goes_at_once_and_the_waiting_ones_go_together() -> None:
    async def scenario() -> Writes:
        writes = Writes()
        batcher = Batcher(writes.write, in_flight=1)
        first = asyncio.ensure_future(batcher.submit(0))
        await settle()
        assert writes.batches == [[0]]  # did not wait for company
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 6)]
        await settle()
        writes.gate.set()
        await asyncio.gather(first, *rest)
        return writes

    assert asyncio.run(scenario()).batches == [[0], [1, 2, 3, 4, 5]]


def test_each_caller_gets_its_own_answer() -> None:
    async def scenario() -> list[BaseException | None]:
        writes = Writes(refuse={2, 4})
        writes.gate.set()
        batcher = Batcher(writes.write, in_flight=1)
        return await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)

    answers = asyncio.run(scenario())
    assert [type(a).__name__ if a else None for a in answers] == [None, None, "ValueError", None, "ValueError", None]
    assert str(answers[2]) == "refused 2"


def test_a_failed_batch_fails_every_caller_in_it_and_the_next_batch_still_runs() -> None:
    async def scenario() -> tuple[list[BaseException | None], Writes]:
        writes = Writes(fail=True)
        writes.gate.set()
        batcher = Batcher(writes.write, in_flight=1)
        failed = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        writes.fail = False
        await batcher.submit(9)
        return failed, writes

    failed, writes = asyncio.run(scenario())
    assert all(isinstance(f, RuntimeError) for f in failed)
    assert writes.batches[-1] == [9]


def test_batches_are_capped_and_run_side_by_side_up_to_in_flight() -> None:
    async def scenario() -> Writes:
        writes = Writes()
        batcher = Batcher(writes.write, in_flight=2, most=3)
        calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(10)]
        await settle()
        assert len(writes.batches) == 2  # two batches under way at once, no more
        writes.gate.set()
        await asyncio.gather(*calls)
        return writes

    batches = asyncio.run(scenario()).batches
    assert sorted(i for batch in batches for i in batch) == list(range(10))
    assert max(len(batch) for batch in batches) <= 3


def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    async def scenario() -> Writes:
        writes = Writes()
        batcher = Batcher(writes.write, in_flight=1)
        calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        await settle()
        calls[1].cancel()
        writes.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await calls[1]
        await asyncio.gather(calls[0], calls[2])
        return writes

    assert asyncio.run(scenario()).batches == [[0, 1, 2]]  # the cancelled one was written all the same
