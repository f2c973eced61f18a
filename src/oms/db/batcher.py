"""Group commit for PostgreSQL: writes that arrive while others are under way go together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """Writes that arrive while others are under way go together: ``write`` gets the waiting items
    (at most ``most``) and answers, for each, None or the exception its caller gets. At most
    ``in_flight`` batches run at once; a submit that finds one free starts at once, alone, so a
    lone write never waits. This is group commit for PostgreSQL, where each statement is a round
    trip and a commit: under load, one statement writes the saga steps of many orders."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[Sequence[BaseException | None]]],
        *,
        in_flight: int = 3,
        most: int = 64,
    ) -> None:
        self._write = write
        self._in_flight = in_flight
        self._most = most
        self._running = 0
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # held, so none is collected while it runs

    async def submit(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((item, done))
        if self._running < self._in_flight:
            self._running += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await done

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._most], self._queue[self._most :]
                try:
                    outcomes: Sequence[BaseException | None] = await self._write([item for item, _ in batch])
                except Exception as exc:
                    outcomes = [exc] * len(batch)
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if done.done():
                        continue  # its caller was cancelled; the write stands
                    if outcome is None:
                        done.set_result(None)
                    else:
                        done.set_exception(outcome)
        finally:
            self._running -= 1
