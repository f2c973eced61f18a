"""OrderService's saga writes: one order's as statements of its own (either database), and on
PostgreSQL many orders' as one statement (group commit, through ``Batcher``).

On PostgreSQL every statement is a round trip and a commit, for the client and for the server. Under
load many sagas write at once; here the writes that wait while others run go as one statement: the
new orders as one ``INSERT``, the saga steps of many orders as one ``INSERT`` of log rows, one
catalog upsert and one ``UPDATE`` of their orders. The statements' text never changes (the rows
travel as arrays, through ``unnest``), so PostgreSQL plans each once.

Each write is what the one-order path writes, in one transaction with the others of its batch; a
batch the server refuses is written again one order at a time, so one order's error is its own.

A write that changes an order's status writes its event too (``oms.orders.events``), decided on the
order's row by the ``UPDATE`` itself: the row's newest version, locked by the write, so the event's
``sequence`` is the row's ``event_sequence`` plus one whoever else writes the order, and a batch of
many orders numbers each order's events on its own row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from oms.db import Database, IntegrityError, Statement
from oms.orders.events import CREATED, event_type, new_event_id
from oms.orders.ports import Item

LOG_COLUMNS = (
    "saga", "kind", "name", "outcome", "reason", "detail", "attempt", "started_at", "ended_at", "duration_ms"
)  # fmt: skip
ORDER_CHANGES = (
    "items", "status", "saga_name", "saga_status", "inventory_check", "reservation", "total_amount", "currency",
    "payment_id", "failure_reason", "pending_reason", "updated_at",
)  # fmt: skip
_INTEGERS = {"attempt", "total_amount"}


@dataclass(frozen=True)
class NewOrder:
    values: dict[str, Any]
    """id, idempotency_key, request_hash, customer_id, payment_method, lines, status, now, lease_owner,
    lease_until, trace_context, event_id, event_data (its ``created`` event)."""


@dataclass(frozen=True)
class SagaWrite:
    """One saga write: new log rows, the catalog's last known stock, the order's new state."""

    order_id: str
    log_rows: Sequence[dict[str, Any]]
    catalog: Sequence[Item]
    changes: dict[str, Any]
    """The order's new values of ORDER_CHANGES."""
    lease: str
    """``keep`` the lease as it is, ``null`` it, or ``set`` it to ``lease_until``."""
    lease_until: str | None
    now: str
    event_id: str = field(default_factory=new_event_id)
    """The id of the event written if the status changes (the row decides)..."""
    event_type: str = ""
    """...its type (by default, the type of a change to the new status)..."""
    event_data: str = "{}"
    """...and its data (JSON)."""

    def __post_init__(self) -> None:
        if not self.event_type:
            object.__setattr__(self, "event_type", event_type(str(self.changes["status"])))

    def statements(self) -> list[Statement]:
        """The same write as statements of its own (one order; either database), to run in this
        order in one transaction (``write_in_order``): the event's ``INSERT`` reads what the
        order's ``UPDATE`` decided."""
        statements: list[Statement] = []
        if self.log_rows:
            one = "(" + ", ".join("?" for _ in range(len(LOG_COLUMNS) + 1)) + ")"
            params = [v for row in self.log_rows for v in (self.order_id, *(row[c] for c in LOG_COLUMNS))]
            statements.append((
                f"INSERT INTO saga_log (order_id, {', '.join(LOG_COLUMNS)}) "
                f"VALUES {', '.join([one] * len(self.log_rows))}", params
            ))  # fmt: skip
        if self.catalog:
            statements.append(remember_statement(self.catalog, self.now))
        lease = {"keep": "lease_until", "null": "NULL", "set": "?"}[self.lease]
        until = [self.lease_until] if self.lease == "set" else []
        sets = ", ".join(f"{c} = ?" for c in ORDER_CHANGES)
        status = self.changes["status"]
        statements.append((
            f"UPDATE orders SET {sets}, lease_until = {lease}, {EVENT_SETS} WHERE id = ?",
            [*(self.changes[c] for c in ORDER_CHANGES), *until, status, status, self.event_id, self.order_id],
        ))  # fmt: skip
        statements.append((
            "INSERT INTO events (id, order_id, sequence, type, time, data) SELECT ?, id, event_sequence, ?, ?, ? "
            "FROM orders WHERE id = ? AND last_event = ?",
            [self.event_id, self.event_type, self.now, self.event_data, self.order_id, self.event_id],
        ))  # fmt: skip
        return statements


EVENT_SETS = (
    "event_sequence = CASE WHEN status <> ? THEN event_sequence + 1 ELSE event_sequence END, "
    "last_event = CASE WHEN status <> ? THEN ? ELSE last_event END"
)
"""An order's last event, when the write changes its status (each term reads the row before it)."""


async def write_in_order(db: Database, statements: Sequence[Statement]) -> None:
    """Statements that read each other's effects, in this order, in one transaction (not
    ``write_all``: on PostgreSQL its clauses see one snapshot)."""
    async with db.transaction() as tx:
        for sql, values in statements:
            await tx.execute(sql, *values)


def remember_statement(items: Iterable[Item], now: str) -> Statement:
    """Upsert the items' last known stock (one row per SKU: the last word on a SKU wins; rows locked
    in SKU order, as everywhere, so two such statements never deadlock)."""
    latest = {item.sku: item for item in items}
    ordered = [latest[sku] for sku in sorted(latest)]
    params = [v for i in ordered for v in (i.sku, i.name, i.unit_price, i.currency, i.available, now)]
    return (
        "INSERT INTO catalog (sku, name, unit_price, currency, available, synced_at) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(ordered))
        + " ON CONFLICT (sku) DO UPDATE SET name = excluded.name, unit_price = excluded.unit_price, "
        "currency = excluded.currency, available = excluded.available, synced_at = excluded.synced_at",
        params,
    )


def _array(column: str) -> str:
    if column in _INTEGERS:
        return "CAST(? AS INTEGER[])" if column == "attempt" else "CAST(? AS BIGINT[])"
    if column == "duration_ms":
        return "CAST(? AS DOUBLE PRECISION[])"
    return "CAST(? AS TEXT[])"


_NEW = ("id", "idempotency_key", "request_hash", "customer_id", "payment_method", "lines", "status", "now",
        "lease_owner", "lease_until", "trace_context", "event_id")  # fmt: skip
CREATE_SQL = (
    "WITH made AS (INSERT INTO orders (id, idempotency_key, request_hash, customer_id, payment_method, lines, "
    "status, saga_status, reservation, created_at, updated_at, lease_owner, lease_until, trace_context, "
    "event_sequence, last_event) "
    "SELECT v.id, v.idempotency_key, v.request_hash, v.customer_id, v.payment_method, v.lines, v.status, 'running', "
    "'none', v.now, v.now, v.lease_owner, v.lease_until, v.trace_context, 1, v.event_id "
    f"FROM unnest({', '.join(_array(c) for c in _NEW)}) AS v({', '.join(_NEW)}) "
    "ON CONFLICT DO NOTHING RETURNING id, last_event, created_at) "
    "INSERT INTO events (id, order_id, sequence, type, time, data) "
    f"SELECT made.last_event, made.id, 1, '{CREATED}', made.created_at, e.data "
    "FROM made JOIN unnest(CAST(? AS TEXT[]), CAST(? AS TEXT[])) AS e(id, data) ON e.id = made.id "
    "RETURNING order_id AS id"
)

_CATALOG = ("sku", "name", "unit_price", "currency", "available", "synced_at")
_ORDER = ("id", *ORDER_CHANGES, "lease", "lease_until", "event_id", "event_type", "event_data")
RECORD_SQL = (
    f"WITH log AS (INSERT INTO saga_log (order_id, {', '.join(LOG_COLUMNS)}) "
    f"SELECT l.order_id, {', '.join('l.' + c for c in LOG_COLUMNS)} "
    f"FROM unnest(CAST(? AS TEXT[]), {', '.join(_array(c) for c in LOG_COLUMNS)}) WITH ORDINALITY "
    f"AS l(order_id, {', '.join(LOG_COLUMNS)}, n) ORDER BY l.n), "
    f"cat AS (INSERT INTO catalog ({', '.join(_CATALOG)}) "
    "SELECT * FROM unnest(CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS BIGINT[]), CAST(? AS TEXT[]), "
    "CAST(? AS BIGINT[]), CAST(? AS TEXT[])) "
    "ON CONFLICT (sku) DO UPDATE SET name = excluded.name, unit_price = excluded.unit_price, "
    "currency = excluded.currency, available = excluded.available, synced_at = excluded.synced_at), "
    f"changed AS (UPDATE orders o SET {', '.join(f'{c} = v.{c}' for c in ORDER_CHANGES)}, "
    "lease_until = CASE v.lease WHEN 'keep' THEN o.lease_until WHEN 'null' THEN NULL ELSE v.lease_until END, "
    "event_sequence = CASE WHEN o.status <> v.status THEN o.event_sequence + 1 ELSE o.event_sequence END, "
    "last_event = CASE WHEN o.status <> v.status THEN v.event_id ELSE o.last_event END "
    f"FROM unnest({', '.join(_array(c) for c in _ORDER)}) AS v({', '.join(_ORDER)}) WHERE o.id = v.id "
    "RETURNING o.id, o.event_sequence, o.last_event, v.event_id, v.event_type, v.updated_at, v.event_data) "
    "INSERT INTO events (id, order_id, sequence, type, time, data) "
    "SELECT c.event_id, c.id, c.event_sequence, c.event_type, c.updated_at, c.event_data FROM changed c "
    "WHERE c.last_event = c.event_id"
)


async def write_new_orders(db: Database, batch: list[NewOrder]) -> list[BaseException | None]:
    """Insert the orders; one whose id or idempotency key is taken gets an IntegrityError. A batch
    the database refuses is written again one order at a time: one order's error is its own."""
    try:
        made = await _insert_orders(db, batch)
    except db.refusals:  # refused by the server: nothing of it stands
        if len(batch) == 1:
            raise
        outcomes: list[BaseException | None] = []
        for order in batch:
            try:
                outcomes.extend(await write_new_orders(db, [order]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
    return [None if order.values["id"] in made else IntegrityError("idempotency key taken") for order in batch]


async def _insert_orders(db: Database, batch: list[NewOrder]) -> set[str]:
    columns = [[order.values[c] for order in batch] for c in _NEW]
    events = [[order.values["id"] for order in batch], [order.values["event_data"] for order in batch]]
    return {row["id"] for row in await db.write_returning(CREATE_SQL, *columns, *events)}


async def write_sagas(db: Database, batch: list[SagaWrite]) -> list[BaseException | None]:
    """Write the sagas' steps and their orders' new state (each order once a statement)."""
    outcomes: dict[int, BaseException | None] = {}
    for part in _distinct_orders(batch):
        try:
            await db.execute_one(RECORD_SQL, *_record_arrays(part))
        except db.refusals:
            # The server refused the statement (nothing of it stands): one order at a time, so one
            # order's error is its own.
            for write in part:
                try:
                    await write_in_order(db, write.statements())
                    outcomes[id(write)] = None
                except Exception as exc:
                    outcomes[id(write)] = exc
            continue
        except Exception as exc:
            # The connection failed: the statement may have committed or not. Writing it again could
            # write its rows twice; its callers fail instead, and recovery reads what the log holds.
            outcomes.update((id(write), exc) for write in part)
            continue
        outcomes.update((id(write), None) for write in part)
    return [outcomes[id(write)] for write in batch]


def _distinct_orders(batch: list[SagaWrite]) -> list[list[SagaWrite]]:
    """Split so that no statement updates an order twice (PostgreSQL would apply only one)."""
    parts: list[list[SagaWrite]] = []
    for write in batch:
        for part in parts:
            if all(other.order_id != write.order_id for other in part):
                part.append(write)
                break
        else:
            parts.append([write])
    return parts


def _record_arrays(part: list[SagaWrite]) -> list[list[Any]]:
    rows = [(write.order_id, row) for write in part for row in write.log_rows]
    log = [[order_id for order_id, _ in rows], *[[row[c] for _, row in rows] for c in LOG_COLUMNS]]
    latest = {item.sku: item for write in part for item in write.catalog}  # the last word on a SKU wins
    items = [latest[sku] for sku in sorted(latest)]  # rows locked in SKU order, as everywhere
    synced = [part[-1].now] * len(items)
    catalog: list[list[Any]] = [[i.sku for i in items], [i.name for i in items], [i.unit_price for i in items],
               [i.currency for i in items], [i.available for i in items], synced]  # fmt: skip
    # Two batches never share an order (one saga writes at a time); the lease renewal, the other
    # statement that updates many orders, skips the rows a write holds. So no circle of waits.
    part = sorted(part, key=lambda w: w.order_id)
    orders: list[list[Any]] = [
        [w.order_id for w in part],
        *[[w.changes[c] for w in part] for c in ORDER_CHANGES],
        [w.lease for w in part],
        [w.lease_until for w in part],
        [w.event_id for w in part],
        [w.event_type for w in part],
        [w.event_data for w in part],
    ]
    return [*log, *catalog, *orders]
