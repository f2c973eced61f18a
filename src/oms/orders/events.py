"""An order's events: one for each change of its status, written in the same transaction as the
change (the outbox), and shown as CloudEvents 1.0 in JSON structured mode.

The row of an event (table ``events``) holds what the envelope needs: its id, the order (the
``subject``), its ``sequence`` among the order's events (1, 2, 3, ...), its type, its time, and its
``data`` as JSON text, the order as an admin's ``GET /orders/{id}`` shows it then, without the
payment method and without the saga log.

Events are read in one global order, ``(tx, position)``: on SQLite ``tx`` is 0 and ``position``
follows the commits (transactions run one at a time); on PostgreSQL ``tx`` is the writing
transaction's id, and a reader takes only events of transactions older than every one still running,
so that an event committed late is never passed over (``visible``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from oms.edge.paging import Keyset
from oms.ids import sortable_id
from oms.orders.saga import OrderStatus

SOURCE = "oms/order-service"
PREFIX = "oms.order."
CREATED = PREFIX + "created"
TYPES = (CREATED, *(PREFIX + s.value.lower() for s in OrderStatus if s is not OrderStatus.PENDING))
"""Every event type: created (the order stored PENDING), then one per status it can change to."""

EVENTS = Keyset("events", ("tx", "position"))
"""The feed's order: oldest first."""

EVENT_COLUMNS = "position, tx, id, order_id, sequence, type, time, data"

PG_TX = "CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)"
"""The writing transaction's id, on PostgreSQL (the ``tx`` column's default there)."""

VISIBLE_PG = "tx < CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)"
"""On PostgreSQL: written by a transaction that has ended, older than every one still running: no
event of a lower ``(tx, position)`` can commit after it is read."""


def new_event_id() -> str:
    """``evt_`` and a unique id that sorts by time, as order ids are made."""
    return sortable_id("evt_")


def event_type(status: str) -> str:
    """The type of the event of a change to ``status`` (PENDING: the order is created)."""
    return CREATED if status == OrderStatus.PENDING else PREFIX + status.lower()


def event_data(view: Mapping[str, Any]) -> str:
    """The event's data: the order as shown (``order_view``) less its payment method and saga log."""
    return orjson.dumps({k: v for k, v in view.items() if k not in ("payment_method", "saga", "trace_url")}).decode()


def cloud_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """An event's row as a CloudEvent, JSON structured mode."""
    return {
        "specversion": "1.0",
        "id": row["id"],
        "source": SOURCE,
        "type": row["type"],
        "subject": row["order_id"],
        "time": row["time"],
        "datacontenttype": "application/json",
        "sequence": int(row["sequence"]),
        "data": orjson.loads(row["data"]),
    }


def read_after(
    columns: str, conditions: list[str], params: list[Any], after: Sequence[int] | None, limit: int
) -> tuple[str, list[Any]]:
    """The query of up to ``limit`` events after the key ``after`` (all, if None) that meet
    ``conditions``, oldest first: as two index ranges, the rest of the transaction ``after`` is in and
    the transactions after it. (One condition, ``tx >= ? AND (tx > ? OR position > ?)``, is searched on
    ``tx`` alone: on SQLite, where ``tx`` is always 0, it walked every event from the first, 14 ms for
    500 events after 200,000, against 1 ms this way.)"""
    where = " AND ".join(conditions)
    if not after:
        return (
            f"SELECT {columns} FROM events {'WHERE ' + where + ' ' if where else ''}ORDER BY tx, position LIMIT ?",
            [*params, limit],
        )
    also = f" AND {where}" if where else ""
    return (
        f"SELECT * FROM (SELECT {columns} FROM events WHERE tx = ? AND position > ?{also} ORDER BY position LIMIT ?) "
        f"AS same UNION ALL SELECT * FROM (SELECT {columns} FROM events WHERE tx > ?{also} ORDER BY tx, position "
        "LIMIT ?) AS later ORDER BY tx, position LIMIT ?",
        [after[0], after[1], *params, limit, after[0], *params, limit, limit],
    )


def event_filters(
    *, visible: bool, type_: str | None, order_id: str | None, customer_id: str | None
) -> tuple[list[str], list[Any]]:
    """The conditions (and their parameters) of the events a reader of the feed sees: on PostgreSQL
    (``visible``) only those no running transaction can still come before; of one type, one order, one
    customer's orders, when given."""
    conditions: list[str] = [VISIBLE_PG] if visible else []
    params: list[Any] = []
    if type_ is not None:
        conditions.append("type = ?")
        params.append(type_)
    if order_id is not None:
        conditions.append("order_id = ?")
        params.append(order_id)
    if customer_id is not None:
        conditions.append("order_id IN (SELECT id FROM orders WHERE customer_id = ?)")
        params.append(customer_id)
    return conditions, params
