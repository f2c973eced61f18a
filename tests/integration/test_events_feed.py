"""The outbox read as a feed (``OrderRepository.events``, ``EventFeed``), on SQLite and PostgreSQL:
oldest first a page at a time, filtered by type, order and customer; a reader that goes on from its
cursor never passes over an event whose transaction commits after a later one's (PostgreSQL); a long
poll wakes when this process writes an order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from oms.db import Database
from oms.orders.events import EVENTS
from oms.orders.feed import EventFeed, prune
from oms.orders.repository import OrderRepository
from oms.orders.schema import metadata
from oms.utc import utc_after


async def create(repo: OrderRepository, order_id: str, customer_id: str = "cus_1") -> None:
    made = await repo.create(
        order_id=order_id, idempotency_key=None, request_hash="h", customer_id=customer_id,
        payment_method="pm_card_visa", lines=[("A", 1)],
    )  # fmt: skip
    assert made


def key(row: Any) -> list[int]:
    return [int(row["tx"]), int(row["position"])]


def test_the_feed_pages_oldest_first_and_filters(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        for n in range(7):
            await create(repo, f"ord-{n}", customer_id="cus_even" if n % 2 == 0 else "cus_odd")
        seen, after = [], None
        while True:
            page = await repo.events(limit=3, after=after)
            seen += [row["order_id"] for row in page.items]
            if page.next is None:
                break
            after = [int(v) for v in EVENTS.after(page.next) or ()]
        assert seen == [f"ord-{n}" for n in range(7)]
        own = await repo.events(limit=50, customer_id="cus_odd")
        assert [row["order_id"] for row in own.items] == ["ord-1", "ord-3", "ord-5"]
        one = await repo.events(limit=50, order_id="ord-4", type_="oms.order.created")
        assert [(row["order_id"], row["sequence"]) for row in one.items] == [("ord-4", 1)]
        assert (await repo.events(limit=50, type_="oms.order.placed")).items == []

    with_db(metadata, scenario)


@pytest.mark.postgres
def test_a_reader_never_passes_over_an_event_that_commits_late(new_database: Any) -> None:
    """An event written first but committed last (its transaction ran long) is read all the same:
    the feed waits for it rather than show the later one and go on past it."""
    from oms.db import PostgresDatabase, create_schema

    url = new_database("postgresql")

    async def scenario() -> None:
        await create_schema(url, metadata)
        db = await PostgresDatabase.connect(url, min_size=4, max_size=4)
        try:
            repo = OrderRepository(db)
            await create(repo, "ord-early")
            first = await repo.events(limit=50)
            assert [row["order_id"] for row in first.items] == ["ord-early"]
            after = key(first.items[-1])
            go_on, written = asyncio.Event(), asyncio.Event()

            async def slow_writer() -> None:
                async with db.transaction() as tx:
                    await tx.execute(
                        "INSERT INTO events (id, order_id, sequence, type, time, data) "
                        "VALUES ('evt_slow', 'ord-early', 2, 'oms.order.placed', 't', '{}')"
                    )
                    written.set()
                    await go_on.wait()

            slow = asyncio.create_task(slow_writer())
            await written.wait()
            await create(repo, "ord-late")  # written after the slow one, committed before it
            meanwhile = await repo.events(limit=50, after=after)
            assert meanwhile.items == []  # not ord-late's yet: the slow transaction may still commit
            go_on.set()
            await slow
            rest = await repo.events(limit=50, after=after)
            assert [row["id"] for row in rest.items][:1] == ["evt_slow"]
            assert [row["order_id"] for row in rest.items] == ["ord-early", "ord-late"]
        finally:
            await db.close()

    asyncio.run(scenario())


def test_a_long_poll_wakes_when_this_process_writes_an_order(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        await create(repo, "ord-0")
        first = await EventFeed(repo, recheck=60).read(limit=50, cursor=None, after=None)
        assert first.next is not None
        after = [int(v) for v in EVENTS.after(first.next) or ()]
        # A recheck far beyond the test's wait: only the write itself can wake the poll in time.
        poll = asyncio.create_task(EventFeed(repo, recheck=60).read(limit=50, cursor=first.next, after=after, wait=30))
        await asyncio.sleep(0)  # the poll is reading (no timing: it finds nothing whenever it reads)
        await create(repo, "ord-1")
        page = await asyncio.wait_for(poll, 30)
        assert [event["subject"] for event in page.items] == ["ord-1"]
        assert page.next is not None and page.next != first.next

    with_db(metadata, scenario)


def test_events_past_their_retention_are_pruned_a_batch_at_a_time(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        for n in range(7):
            await create(repo, f"ord-{n}")
        # Five of them written 31 days ago, two just now.
        await db.execute_one(
            "UPDATE events SET time = ? WHERE order_id IN ('ord-0', 'ord-1', 'ord-2', 'ord-3', 'ord-4')",
            utc_after(-31 * 86400),
        )
        # And three webhook tries: two 31 days old, one now.
        for n, at in enumerate((utc_after(-31 * 86400), utc_after(-31 * 86400), utc_after(0))):
            await db.execute_one(
                'INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, "try", duration_ms, outcome, at) '
                "VALUES ('we_1', ?, 'oms.order.created', 1, 1.0, 'delivered', ?)",
                f"evt_{n}", at,
            )  # fmt: skip
        assert await prune(repo, 30 * 86400, batch=2) == 5 + 2
        left = await repo.events(limit=50)
        assert [row["order_id"] for row in left.items] == ["ord-5", "ord-6"]
        tries = await db.fetch_all("SELECT event_id FROM webhook_attempts")
        assert [row["event_id"] for row in tries] == ["evt_2"]
        assert await prune(repo, 30 * 86400, batch=2) == 0

    with_db(metadata, scenario)


def test_a_long_poll_ends_once_its_reader_has_gone(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        asked = 0

        async def gone() -> bool:
            nonlocal asked
            asked += 1
            return asked >= 2  # gone by the second look

        # Waiting 30 s at most; the deadline below only keeps a failure from hanging.
        read = EventFeed(repo, recheck=0.01).read(limit=50, cursor=None, after=None, wait=30, gone=gone)
        page = await asyncio.wait_for(read, 20)
        assert page.items == [] and asked == 2

    with_db(metadata, scenario)
