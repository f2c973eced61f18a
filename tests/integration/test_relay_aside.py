"""The relay's database work on a thread of its own (``oms.events.aside``), on both databases: every
call of the ways runs whole there (its transaction begun, written and committed on that thread, so a
relay in the cores' idle time never holds a lock), its answers and its errors come back."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from oms.db import Database, open_database
from oms.events.aside import Aside, WaysAside
from oms.events.ways import Flush, LostLease, Ways
from oms.orders.schema import metadata


def on_thread(db: Database, seen: set[int]) -> None:
    """Note the thread of every call ``db`` gets."""
    for name in ("fetch_all", "fetch_one", "execute_one", "transaction"):
        method: Callable[..., Any] = getattr(db, name)

        def noting(*args: Any, _method: Callable[..., Any] = method, **kwargs: Any) -> Any:
            seen.add(threading.get_ident())
            return _method(*args, **kwargs)

        setattr(db, name, noting)


def test_each_call_of_the_ways_runs_whole_on_the_aside_thread(database_url: str) -> None:
    async def main() -> None:
        aside = Aside()
        try:
            db = await aside.run(open_database(database_url, metadata))
            seen: set[int] = set()
            on_thread(db, seen)
            ways = WaysAside(db, aside)
            assert await ways.head() == (0, 0)
            await ways.ensure("nats", (0, 0))
            assert await ways.claim("nats", "relay-a", now=time.time(), ttl=10) == (0, 0)
            await ways.write("nats", "relay-a", (0, 0), time.time() + 10, Flush())
            with pytest.raises(LostLease):  # an error raised there comes back here
                await ways.write("nats", "relay-b", (0, 0), time.time() + 10, Flush())
            assert await ways.events_after((0, 0), 10) == []
            assert await ways.enabled_endpoints() == []
            assert await ways.waiting("we_none") == (set(), None)
            assert await ways.due("we_none", now=time.time(), limit=10, skip=[]) == []
            assert await ways.next_due("we_none") is None
            await ways.release("nats", "relay-a")
            assert await ways.claim("nats", "relay-b", now=time.time(), ttl=10) == (0, 0)
            assert await ways.free_leases_of("relay-b") == 1
            assert seen == {aside.thread.ident}
            assert threading.get_ident() != aside.thread.ident
            await aside.run(db.close())
        finally:
            aside.close()
        assert not aside.thread.is_alive()

    asyncio.run(main())


def test_every_call_of_the_ways_is_one_that_goes_aside() -> None:
    """A call added to ``Ways`` and not to ``WaysAside`` would run on the relay's idle-time loop."""
    calls = {name for name, value in vars(Ways).items() if inspect.iscoroutinefunction(value)}
    assert calls and calls == {name for name, value in vars(WaysAside).items() if inspect.iscoroutinefunction(value)}
