"""The relay's storage: each way out's cursor and lease (``relay_ways``), the events after a cursor,
webhook endpoints as the relay sees them, and what a pass of a way writes back (``Flush``), all of
it in one transaction so that a relay that lost its lease writes nothing.

A way's cursor is the last event (``tx``, ``position``) it is done with: every event up to it was
sent, or handed to ``webhook_deliveries`` for a later try. A relay holds a way until ``lease_until``
(seconds since the epoch) and renews it as it goes; a relay that dies stops renewing, and another
takes the way over from the cursor, sending again what the dead one sent after it (at least once).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from oms.db import Database, Row, Tx
from oms.errors import OmsError
from oms.events.signing import SigningSecret
from oms.events.store import signing_secrets
from oms.orders.events import EVENT_COLUMNS, VISIBLE_PG, read_after
from oms.utc import utc_now

Key = tuple[int, int]
"""An event's place in the outbox's order: (tx, position)."""

TALLY = "tally"
"""The way that counts events for ``oms_events_total`` (one relay at a time counts each event once)."""
NATS = "nats"
WEBHOOK = "webhook:"
"""``webhook:<endpoint id>``."""

INSERT_CHUNK = 200
"""Rows an INSERT carries at most: one statement, one round trip, for a pass's attempts."""


class LostLease(OmsError):
    """Another relay holds the way now: this one's pass wrote nothing, and it stops driving it."""


@dataclass(frozen=True)
class Endpoint:
    id: str
    url: str
    events: frozenset[str]
    """Its types; empty: every type ("*")."""
    secrets: tuple[SigningSecret, ...]
    failing_since: str | None
    last_success_at: str | None

    def wants(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


def endpoint_of(row: Row) -> Endpoint:
    types = orjson.loads(row["events"])
    return Endpoint(
        id=row["id"],
        url=row["url"],
        events=frozenset() if "*" in types else frozenset(types),
        secrets=tuple(signing_secrets(row)),
        failing_since=row["failing_since"],
        last_success_at=row["last_success_at"],
    )


@dataclass
class Flush:
    """What one pass of a way writes, in one transaction with its cursor."""

    attempts: list[dict[str, Any]] = field(default_factory=list)
    parked: list[dict[str, Any]] = field(default_factory=list)
    """New rows of ``webhook_deliveries``: failed first tries, and later events held behind them."""
    retried: list[tuple[int, int, float, float]] = field(default_factory=list)
    """Rows of ``webhook_deliveries`` tried again and due again: (id, tries, first_tried_at, next_try_at)."""
    finished: list[int] = field(default_factory=list)
    """Rows of ``webhook_deliveries`` delivered or given up on."""
    health: dict[str, Any] | None = None
    """The endpoint's ``last_success_at`` and ``failing_since``, when they changed."""
    disable: str | None = None
    """Why the endpoint is disabled now (410 Gone; failing for too long)."""

    def absorb(self, newer: Flush) -> None:
        """Add what a later pass would write (this one could not be written)."""
        self.attempts += newer.attempts
        self.parked += newer.parked
        self.retried += newer.retried
        self.finished += newer.finished
        self.health = newer.health or self.health
        self.disable = newer.disable or self.disable

    def __bool__(self) -> bool:
        return bool(self.attempts or self.parked or self.retried or self.finished or self.health or self.disable)


ATTEMPT_COLUMNS = (
    "endpoint_id", "event_id", "event_type", "order_id", "sequence", "try", "status_code", "error",
    "duration_ms", "outcome", "next_try_at", "at",
)  # fmt: skip
PARKED_COLUMNS = (
    "endpoint_id", "event_id", "order_id", "sequence", "tries", "first_tried_at", "next_try_at", "created_at",
)  # fmt: skip


class Ways:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._visible = [VISIBLE_PG] if db.writes_in_one_statement else []

    async def head(self) -> Key:
        row = await self.db.fetch_one("SELECT tx, position FROM events ORDER BY tx DESC, position DESC LIMIT 1")
        return (int(row["tx"]), int(row["position"])) if row else (0, 0)

    async def ensure(self, way: str, at: Key) -> None:
        """The way's row, with its cursor at ``at``, unless it has one."""
        await self.db.execute_one(
            "INSERT INTO relay_ways (way, tx, position) VALUES (?, ?, ?) ON CONFLICT (way) DO NOTHING", way, *at
        )

    async def claim(self, way: str, owner: str, *, now: float, ttl: float) -> Key | None:
        """The way's cursor, if ``owner`` holds it now (it was free, lapsed, or its own already)."""
        rows = await self.db.write_returning(
            "UPDATE relay_ways SET owner = ?, lease_until = ? "
            "WHERE way = ? AND (owner IS NULL OR owner = ? OR lease_until < ?) RETURNING tx, position",
            owner, now + ttl, way, owner, now,
        )  # fmt: skip
        return (int(rows[0]["tx"]), int(rows[0]["position"])) if rows else None

    async def release(self, way: str, owner: str) -> None:
        await self.db.execute_one("UPDATE relay_ways SET owner = NULL WHERE way = ? AND owner = ?", way, owner)

    async def free_leases_of(self, prefix: str) -> int:
        """Let go the ways a relay named ``prefix...`` held: an earlier process of this OrderService
        (the same host and port), dead now, whose leases would otherwise hold its ways until they lapse."""
        return await self.db.execute_one(
            "UPDATE relay_ways SET owner = NULL WHERE owner LIKE ? ESCAPE '\\'", _like_prefix(prefix)
        )

    async def events_after(self, key: Key, limit: int) -> list[Row]:
        """Up to ``limit`` events after ``key``, in the outbox's order (on PostgreSQL, only those no
        running transaction can still come before)."""
        sql, params = read_after(EVENT_COLUMNS, self._visible, [], key, limit)
        return await self.db.fetch_all(sql, *params)

    async def enabled_endpoints(self) -> list[Endpoint]:
        rows = await self.db.fetch_all(
            "SELECT id, url, events, secrets, failing_since, last_success_at FROM webhooks WHERE status = 'enabled'"
        )
        return [endpoint_of(row) for row in rows]

    async def waiting(self, endpoint_id: str) -> tuple[set[str], str | None]:
        """The orders that have deliveries waiting at the endpoint (their later events queue behind), and
        the time of the oldest such event."""
        rows = await self.db.fetch_all(
            "SELECT d.order_id, MIN(e.time) AS oldest FROM webhook_deliveries d "
            "LEFT JOIN events e ON e.id = d.event_id WHERE d.endpoint_id = ? GROUP BY d.order_id",
            endpoint_id,
        )
        times = [r["oldest"] for r in rows if r["oldest"] is not None]
        return {r["order_id"] for r in rows}, min(times) if times else None

    async def due(self, endpoint_id: str, *, now: float, limit: int, skip: Sequence[int]) -> list[Row]:
        """The waiting deliveries that may go now: each order's first (by sequence), if it is due;
        with their events (``type``, ``time``, ``data``: None once the event was pruned)."""
        skipping = f"AND d.id NOT IN ({', '.join('?' for _ in skip)}) " if skip else ""
        return await self.db.fetch_all(
            "SELECT d.id AS delivery, d.event_id, d.order_id, d.sequence, d.tries, d.first_tried_at, "
            "e.type, e.time, e.data, e.tx, e.position "
            "FROM webhook_deliveries d LEFT JOIN events e ON e.id = d.event_id "
            f"WHERE d.endpoint_id = ? AND d.next_try_at <= ? {skipping}"
            "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id "
            "AND p.order_id = d.order_id AND (p.sequence < d.sequence OR (p.sequence = d.sequence AND p.id < d.id))) "
            "ORDER BY d.next_try_at, d.id LIMIT ?",
            endpoint_id, now, *skip, limit,
        )  # fmt: skip

    async def next_due(self, endpoint_id: str) -> float | None:
        row = await self.db.fetch_one(
            "SELECT MIN(next_try_at) AS due FROM webhook_deliveries WHERE endpoint_id = ?", endpoint_id
        )
        return float(row["due"]) if row and row["due"] is not None else None

    async def write(
        self, way: str, owner: str, cursor: Key, lease_until: float, flush: Flush, endpoint_id: str | None = None
    ) -> None:
        """The pass's writes and the way's new cursor and lease, all or none: ``LostLease`` (and
        nothing written) when ``owner`` no longer holds the way."""
        async with self.db.transaction() as tx:
            held = await tx.execute(
                "UPDATE relay_ways SET tx = ?, position = ?, lease_until = ? WHERE way = ? AND owner = ?",
                *cursor, lease_until, way, owner,
            )  # fmt: skip
            if held != 1:
                raise LostLease(way)
            if endpoint_id is not None and flush:
                await _write_flush(tx, endpoint_id, flush)


async def _write_flush(tx: Tx, endpoint_id: str, flush: Flush) -> None:
    await _insert(tx, "webhook_attempts", ATTEMPT_COLUMNS, flush.attempts)
    await _insert(tx, "webhook_deliveries", PARKED_COLUMNS, flush.parked)
    for start in range(0, len(flush.finished), INSERT_CHUNK):
        chunk = flush.finished[start : start + INSERT_CHUNK]
        await tx.execute(f"DELETE FROM webhook_deliveries WHERE id IN ({', '.join('?' for _ in chunk)})", *chunk)
    for delivery, tries, first_tried_at, next_try_at in flush.retried:
        await tx.execute(
            "UPDATE webhook_deliveries SET tries = ?, first_tried_at = ?, next_try_at = ? WHERE id = ?",
            tries, first_tried_at, next_try_at, delivery,
        )  # fmt: skip
    if flush.health is not None:
        await tx.execute(
            "UPDATE webhooks SET last_success_at = ?, failing_since = ? WHERE id = ?",
            flush.health["last_success_at"], flush.health["failing_since"], endpoint_id,
        )  # fmt: skip
    if flush.disable is not None:
        await tx.execute(
            "UPDATE webhooks SET status = 'disabled', disabled_reason = ?, updated_at = ? WHERE id = ?",
            flush.disable, flush.health["at"] if flush.health else utc_now(), endpoint_id,
        )  # fmt: skip


async def _insert(tx: Tx, table: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    one = f"({', '.join('?' for _ in columns)})"
    names = ", ".join(f'"{c}"' for c in columns)
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        values = [row[c] for row in chunk for c in columns]
        await tx.execute(f"INSERT INTO {table} ({names}) VALUES {', '.join(one for _ in chunk)}", *values)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class Tail:
    """The outbox's newest events as this relay's ways read them: ways close behind one another (the
    usual case: every way keeps up) read each event from the database once, and share its row, so
    its body is made once too. A way further behind than the tail holds reads the database."""

    def __init__(self, ways: Ways, size: int = 5000) -> None:
        self.ways = ways
        self.size = size
        self.start: Key | None = None
        """The key the tail's rows follow (every event after it, up to the last row, is in the tail)."""
        self.keys: list[Key] = []
        self.rows: list[dict[str, Any]] = []
        self._reading = asyncio.Lock()

    async def after(self, key: Key, limit: int) -> list[tuple[Key, dict[str, Any]]]:
        """Up to ``limit`` events after ``key``, oldest first, each a row shared by the ways."""
        async with self._reading:  # one way at a time: two reading on from the end would both add it
            return await self._after(key, limit)

    async def _after(self, key: Key, limit: int) -> list[tuple[Key, dict[str, Any]]]:
        end = self.keys[-1] if self.keys else self.start
        if self.start is None or end is None or not self.start <= key <= end:
            self.start, self.keys, self.rows = key, [], []
            end = key
        at = bisect.bisect_right(self.keys, key)
        got = list(zip(self.keys[at : at + limit], self.rows[at : at + limit], strict=True))
        if len(got) < limit:
            fresh = [dict(row) for row in await self.ways.events_after(end, limit - len(got))]
            fresh_keys = [(int(row["tx"]), int(row["position"])) for row in fresh]
            self.keys += fresh_keys
            self.rows += fresh
            got += list(zip(fresh_keys, fresh, strict=True))
            if len(self.keys) > self.size:
                cut = len(self.keys) - self.size
                self.start = self.keys[cut - 1]
                del self.keys[:cut], self.rows[:cut]
        return got
