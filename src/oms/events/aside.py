"""The relay's database work on a thread of its own, at the process's niceness, while its event loop
runs in the cores' idle time (``oms.events.idle``).

Why: a transaction holds a lock other processes wait for (SQLite's one write lock above all). Taken by
a thread in idle time, it would be held for as long as that thread waits for a core, and OrderService's
commits would wait behind it: measured with two busy loops beside ``oms bench --webhook --nats`` on
SQLite, the orders' p99 went from 0.30 s (relay at niceness 10) to 3.5 s. So every call of
:class:`Ways` runs whole (its transaction begun, written and committed) on an event loop of its own,
in a thread started before the relay goes to idle time, which keeps the niceness; the sending stays in
idle time. A call hops threads there and back: about 50 µs, a few dozen times a second.

A limit: the two threads share the GIL. If the event loop is preempted while it holds it, a
transaction begun here waits with it until the loop runs again, or until OrderService replaces a
starving relay (``oms.events.process``). A process of its own for the database work would lift it;
measured, the slowest order while the relay starved was no slower than at niceness 10 (docs/webhooks.md).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from oms.db import Database, Row
from oms.events.ways import Endpoint, Flush, Key, Ways

T = TypeVar("T")


class Aside:
    """An event loop on a thread of its own."""

    def __init__(self, name: str = "relay-database") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """``work`` run on the thread's loop; its result or its exception here."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class WaysAside(Ways):
    """:class:`Ways` with each call run on ``aside``'s thread (``database`` was opened there)."""

    def __init__(self, db: Database, aside: Aside) -> None:
        super().__init__(db)
        self.aside = aside

    async def head(self) -> Key:
        return await self.aside.run(super().head())

    async def ensure(self, way: str, at: Key) -> None:
        await self.aside.run(super().ensure(way, at))

    async def claim(self, way: str, owner: str, *, now: float, ttl: float) -> Key | None:
        return await self.aside.run(super().claim(way, owner, now=now, ttl=ttl))

    async def release(self, way: str, owner: str) -> None:
        await self.aside.run(super().release(way, owner))

    async def free_leases_of(self, prefix: str) -> int:
        return await self.aside.run(super().free_leases_of(prefix))

    async def events_after(self, key: Key, limit: int) -> list[Row]:
        return await self.aside.run(super().events_after(key, limit))

    async def enabled_endpoints(self) -> list[Endpoint]:
        return await self.aside.run(super().enabled_endpoints())

    async def waiting(self, endpoint_id: str) -> tuple[set[str], str | None]:
        return await self.aside.run(super().waiting(endpoint_id))

    async def due(self, endpoint_id: str, *, now: float, limit: int, skip: Sequence[int]) -> list[Row]:
        return await self.aside.run(super().due(endpoint_id, now=now, limit=limit, skip=skip))

    async def next_due(self, endpoint_id: str) -> float | None:
        return await self.aside.run(super().next_due(endpoint_id))

    async def write(
        self, way: str, owner: str, cursor: Key, lease_until: float, flush: Flush, endpoint_id: str | None = None
    ) -> None:
        await self.aside.run(super().write(way, owner, cursor, lease_until, flush, endpoint_id))
