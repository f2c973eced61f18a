"""The events feed (``GET /events``): the outbox read oldest first, a page at a time, and waited on
when there is nothing new (``wait``: a long poll).

Unlike the other lists, a page of the feed names where the next one starts even when it is the
last for now: the feed never ends, and a reader goes on from its ``next`` later. An empty page
gives back the cursor it was given, so a reader can always follow ``next``.

A long poll wakes when this process writes an order (``OrderRepository.news``), and looks again
every ``recheck`` seconds for what other processes wrote (replicas on one PostgreSQL database, or
the workers of one service) and, on PostgreSQL, for events that waited on an older transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from oms.edge.paging import Page
from oms.errors import Fault
from oms.orders.events import EVENTS, cloud_event
from oms.orders.repository import OrderRepository
from oms.orders.views import for_customer
from oms.utc import utc_after

MAX_WAIT = 30.0
"""Longest long poll, in seconds."""

log = structlog.get_logger("oms.orders")


class EventFeed:
    def __init__(self, repository: OrderRepository, *, recheck: float = 0.5) -> None:
        self.repository = repository
        self.recheck = recheck

    async def read(
        self,
        *,
        limit: int,
        cursor: str | None,
        after: Sequence[int] | None,
        type_: str | None = None,
        order_id: str | None = None,
        customer_id: str | None = None,
        wait: float = 0.0,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> Page[dict[str, Any]]:
        """A page of CloudEvents after ``after`` (the key ``cursor`` names); with ``wait``, the
        first that has any within that many seconds, or an empty one as soon as ``gone`` says the
        reader has gone (asked at each look: a poll nobody waits for any more ends, rather than
        hold the service's shutdown back). A customer's (``customer_id``) shows each order as the
        customer is shown it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(wait, MAX_WAIT)
        while True:
            news = self.repository.news()  # taken before the read: a write during it is not missed
            page = await self.repository.events(
                limit=limit, after=after, type_=type_, order_id=order_id, customer_id=customer_id
            )
            remaining = deadline - loop.time()
            if page.items or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(news.wait(), min(remaining, self.recheck))
            if gone is not None and await gone():
                break
        events = [cloud_event(row) for row in page.items]
        if customer_id is not None:
            for event in events:
                event["data"] = for_customer(event["data"])
        if page.items:
            last = page.items[-1]
            cursor = EVENTS.cursor((str(last["tx"]), str(last["position"])))
        return Page(events, cursor)


async def prune(repository: OrderRepository, retention: float, *, batch: int = 1000) -> int:
    """Delete the events older than ``retention`` seconds, and the webhook tries made before then,
    ``batch`` at a time (how many)."""
    before = utc_after(-retention)
    pruned = 0
    for table in (repository.prune_events, repository.prune_attempts):
        while True:
            deleted = await table(before=before, batch=batch)
            pruned += deleted
            if deleted < batch:
                break
            await asyncio.sleep(0)  # the orders go on between two batches
    return pruned


async def prune_forever(repository: OrderRepository, retention: float, interval: float = 300.0) -> None:
    """``prune`` every ``interval`` seconds, for as long as the service runs."""
    while True:
        try:
            pruned = await prune(repository, retention)
            if pruned:
                log.info("events pruned", count=pruned)
        except Fault as exc:  # the database is away: said once a pass, without a traceback
            log.warning("pruning events failed", error=str(exc))
        except Exception:
            log.exception("pruning events failed")
        await asyncio.sleep(interval)
