"""Where the dashboard's Events page starts reading the feed.

``GET /events`` is read oldest first, from the start or from a ``next``: to show the newest events
a page would read every page before them. The Events page asks instead for the cursor just before
the newest ``count`` events that match its filters, and reads the feed from there with ``GET
/events?next=`` like any reader, so what it shows and what a customer may see stay the feed's.

On PostgreSQL only events the feed would show are counted (written by a transaction older than
every one still running, ``VISIBLE_PG``): the cursor never passes over an event that commits later.
"""

from __future__ import annotations

from oms.db import Database
from oms.orders.events import EVENTS, event_filters


async def start_before_newest(
    db: Database,
    *,
    count: int,
    type_: str | None = None,
    order_id: str | None = None,
    customer_id: str | None = None,
) -> str | None:
    """The feed's cursor after which the newest ``count`` matching events come; None when there are
    no more than ``count`` (the feed's start is the place)."""
    conditions, params = event_filters(
        visible=db.writes_in_one_statement, type_=type_, order_id=order_id, customer_id=customer_id
    )
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    row = await db.fetch_one(
        f"SELECT tx, position FROM events {where}ORDER BY tx DESC, position DESC LIMIT 1 OFFSET ?", *params, count
    )
    return None if row is None else EVENTS.cursor((str(row["tx"]), str(row["position"])))
