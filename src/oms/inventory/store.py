"""InventoryService's domain: the catalog, stock checks, and reservations keyed by order id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from oms.db import Database, IntegrityError, Row, Tx, placeholders
from oms.edge.paging import Keyset, Page
from oms.inventory.errors import AlreadyReleased, OutOfStock, ReservationMismatch, Shortage, UnknownSkus
from oms.utc import utc_now


class ReservationStatus(StrEnum):
    """A reservation's status, stored as its name. A RELEASED row with no lines is a release that
    came before its reservation: a late reservation for that order is refused."""

    RESERVED = "RESERVED"
    RELEASED = "RELEASED"


ITEM_COLUMNS = "sku, name, unit_price, currency, available, reserved"

ITEMS = Keyset("items", ("sku",))
RESERVATIONS = Keyset("reservations", ("created_at", "order_id"))


@dataclass(frozen=True)
class Reservation:
    order_id: str
    status: ReservationStatus
    lines: list[dict[str, Any]]
    created_at: str
    updated_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "status": self.status,
            "items": self.lines,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _reservation(row: Row) -> Reservation:
    return Reservation(
        row["order_id"],
        ReservationStatus(row["status"]),
        orjson.loads(row["lines"]),
        row["created_at"],
        row["updated_at"],
    )


def _item(row: Row) -> dict[str, Any]:
    return {k: row[k] for k in ("sku", "name", "unit_price", "currency", "available", "reserved")}


async def put_item(db: Database, *, sku: str, name: str, unit_price: int, currency: str, available: int) -> bool:
    """Create or replace an item; units reserved for orders stay reserved. True when it was new."""
    now = utc_now()
    async with db.transaction() as tx:
        existed = await tx.fetchone("SELECT 1 AS x FROM items WHERE sku = ?", sku)
        await tx.execute(
            "INSERT INTO items (sku, name, unit_price, currency, available, reserved, updated_at) "
            "VALUES (?, ?, ?, ?, ?, 0, ?) ON CONFLICT (sku) DO UPDATE SET name = excluded.name, "
            "unit_price = excluded.unit_price, currency = excluded.currency, "
            "available = excluded.available, updated_at = excluded.updated_at",
            sku, name, unit_price, currency, available, now,
        )  # fmt: skip
    return existed is None


async def get_item(db: Database, sku: str) -> dict[str, Any] | None:
    row = await db.fetch_one(f"SELECT {ITEM_COLUMNS} FROM items WHERE sku = ?", sku)
    return _item(row) if row else None


async def list_items(
    db: Database, *, limit: int = 100, offset: int = 0, after: Sequence[str] | None = None
) -> Page[dict[str, Any]]:
    """Items by SKU: the ``limit`` after the SKU ``after`` (or after ``offset`` rows)."""
    where = "WHERE sku > ? " if after else ""
    rows = await db.fetch_all(
        f"SELECT {ITEM_COLUMNS} FROM items {where}ORDER BY sku LIMIT ? OFFSET ?", *(after or ()), limit + 1, offset
    )
    return ITEMS.page([_item(r) for r in rows], limit, key=lambda item: (item["sku"],))


async def _items_for(tx: Tx, skus: Sequence[str]) -> dict[str, Row]:
    rows = await tx.fetchall(f"SELECT {ITEM_COLUMNS} FROM items WHERE sku IN ({placeholders(skus)})", *skus)
    return {r["sku"]: r for r in rows}


async def _items_now(db: Database, skus: Sequence[str]) -> dict[str, Row]:
    rows = await db.fetch_all(f"SELECT {ITEM_COLUMNS} FROM items WHERE sku IN ({placeholders(skus)})", *skus)
    return {r["sku"]: r for r in rows}


async def check(db: Database, lines: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """Whether every line could be reserved now, with each item's price and stock."""
    found = await _items_now(db, [sku for sku, _ in lines])
    result = []
    for sku, quantity in lines:
        row = found.get(sku)
        if row is None:
            continue
        item = _item(row)
        item.update(requested=quantity, sufficient=row["available"] >= quantity)
        result.append(item)
    unknown = [sku for sku, _ in lines if sku not in found]
    return {
        "available": not unknown and all(i["sufficient"] for i in result),
        "items": result,
        "unknown": unknown,
    }


async def list_reservations(
    db: Database, *, status: str | None, limit: int, offset: int = 0, after: Sequence[str] | None = None
) -> Page[Reservation]:
    """Reservations, oldest first: the ``limit`` after the key (created_at, order_id) ``after``."""
    conditions, params = [], []
    if status:
        conditions.append("status = ?")
        params.append(status)
    if after:
        # The first term alone can use an index on created_at; the second picks within it.
        conditions.append("created_at >= ? AND (created_at > ? OR order_id > ?)")
        params += [after[0], after[0], after[1]]
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    rows = await db.fetch_all(
        f"SELECT * FROM reservations {where}ORDER BY created_at, order_id LIMIT ? OFFSET ?",
        *params,
        limit + 1,
        offset,
    )
    return RESERVATIONS.page([_reservation(r) for r in rows], limit, key=lambda r: (r.created_at, r.order_id))


async def get_reservation(db: Database, order_id: str) -> Reservation | None:
    row = await db.fetch_one("SELECT * FROM reservations WHERE order_id = ?", order_id)
    return _reservation(row) if row else None


async def reserve(
    db: Database, order_id: str, lines: Sequence[tuple[str, int]]
) -> tuple[Reservation, bool, list[dict[str, Any]]]:
    """Hold every line for the order, or none. Repeating it returns the first answer. True when
    new; then the items as they stand after it (else as they stand now)."""
    try:
        return await _reserve_once(db, order_id, lines)
    except IntegrityError:
        # Two requests for one order raced (PostgreSQL): the loser's stock moves were rolled back.
        return await _reserve_once(db, order_id, lines)


def _same_lines(reservation: Reservation, lines: Sequence[tuple[str, int]]) -> bool:
    held = sorted((line["sku"], line["quantity"]) for line in reservation.lines)
    return held == sorted(lines)


def _existing(row: Row, lines: Sequence[tuple[str, int]]) -> Reservation:
    existing = _reservation(row)
    if existing.status == ReservationStatus.RELEASED:
        raise AlreadyReleased(existing.order_id)
    if not _same_lines(existing, lines):
        raise ReservationMismatch(existing.order_id)
    return existing


def _short(lines: Sequence[tuple[str, int]], available: dict[str, int]) -> Exception:
    unknown = [sku for sku, _ in lines if sku not in available]
    if unknown:
        return UnknownSkus(unknown)
    return OutOfStock([Shortage(sku, q, available[sku]) for sku, q in lines if available[sku] < q])


async def _reserve_once(
    db: Database, order_id: str, lines: Sequence[tuple[str, int]]
) -> tuple[Reservation, bool, list[dict[str, Any]]]:
    now = utc_now()
    ordered = sorted(lines)  # one lock order for every transaction: no deadlocks on PostgreSQL
    held = [{"sku": sku, "quantity": q} for sku, q in ordered]
    if db.writes_in_one_statement:
        return await _reserve_in_one_statement(db, order_id, ordered, held, now)
    async with db.transaction() as tx:
        row = await tx.fetchone("SELECT * FROM reservations WHERE order_id = ?", order_id)
        if row is not None:
            existing = _existing(row, lines)
            found = await _items_for(tx, [sku for sku, _ in ordered])
            return existing, False, [_item(found[sku]) for sku, _ in ordered if sku in found]
        short = []
        for sku, quantity in ordered:
            moved = await tx.execute(
                "UPDATE items SET available = available - ?, reserved = reserved + ?, updated_at = ? "
                "WHERE sku = ? AND available >= ?",
                quantity, quantity, now, sku, quantity,
            )  # fmt: skip
            if moved == 0:
                short.append((sku, quantity))
        if short:  # the lines moved are moved back with the transaction
            found = await _items_for(tx, [sku for sku, _ in short])
            raise _short(short, {sku: row["available"] for sku, row in found.items()})
        found = await _items_for(tx, [sku for sku, _ in ordered])
        await tx.execute(
            "INSERT INTO reservations (order_id, status, lines, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            order_id, ReservationStatus.RESERVED, orjson.dumps(held).decode(), now, now,
        )  # fmt: skip
    return (
        Reservation(order_id, ReservationStatus.RESERVED, held, now, now),
        True,
        [_item(found[sku]) for sku, _ in ordered],
    )


async def _reserve_in_one_statement(
    db: Database, order_id: str, ordered: Sequence[tuple[str, int]], held: list[dict[str, Any]], now: str
) -> tuple[Reservation, bool, list[dict[str, Any]]]:
    """PostgreSQL: the whole reservation as one statement, so one round trip, and the item rows'
    locks (taken in SKU order) are held only while it runs. It goes ahead only if the order holds
    no reservation yet, every SKU is known and every line has the stock; else it changes nothing
    and the answer says why. A twin request racing it fails on the reservation's key, and the
    retry finds the reservation."""
    want = ", ".join(["(CAST(? AS TEXT), CAST(? AS BIGINT))"] * len(ordered))
    rows = await db.write_returning(
        f"WITH want (sku, quantity) AS (VALUES {want}), "
        "locked AS (SELECT i.sku, i.available FROM items i JOIN want w ON w.sku = i.sku ORDER BY i.sku "
        "FOR UPDATE OF i), "
        "decision AS (SELECT NOT EXISTS (SELECT 1 FROM reservations WHERE order_id = ?) "
        "AND (SELECT count(*) FROM locked) = ? "
        "AND NOT EXISTS (SELECT 1 FROM locked l JOIN want w ON w.sku = l.sku WHERE l.available < w.quantity) AS go), "
        "moved AS (UPDATE items SET available = items.available - w.quantity, "
        "reserved = items.reserved + w.quantity, updated_at = ? FROM want w "
        "WHERE items.sku = w.sku AND (SELECT go FROM decision) "
        "RETURNING items.sku, items.name, items.unit_price, items.currency, items.available, items.reserved), "
        "made AS (INSERT INTO reservations (order_id, status, lines, created_at, updated_at) "
        "SELECT ?, ?, ?, ?, ? FROM decision WHERE go) "
        "SELECT (SELECT go FROM decision) AS go, l.sku, l.available AS before, m.name, m.unit_price, m.currency, "
        "m.available, m.reserved FROM locked l LEFT JOIN moved m ON m.sku = l.sku",
        *[value for line in ordered for value in line], order_id, len(ordered), now,
        order_id, ReservationStatus.RESERVED, orjson.dumps(held).decode(), now, now,
    )  # fmt: skip
    if rows and rows[0]["go"]:
        return Reservation(order_id, ReservationStatus.RESERVED, held, now, now), True, [_item(r) for r in rows]
    row = await db.fetch_one("SELECT * FROM reservations WHERE order_id = ?", order_id)
    if row is not None:
        return _existing(row, ordered), False, await stock_of(db, [sku for sku, _ in ordered])
    raise _short(ordered, {r["sku"]: r["before"] for r in rows})


async def stock_of(db: Database, skus: Sequence[str]) -> list[dict[str, Any]]:
    """The items as they stand now (after a reservation, what the caller may remember as last known)."""
    found = await _items_now(db, skus)
    return [_item(found[sku]) for sku in skus if sku in found]


async def release(db: Database, order_id: str) -> tuple[Reservation, bool]:
    """Give the order's units back. Repeating it changes nothing. True when this call released."""
    while True:
        now = utc_now()
        async with db.transaction() as tx:
            row = await tx.fetchone("SELECT * FROM reservations WHERE order_id = ?", order_id)
            if row is None:
                tombstone = await tx.execute(
                    "INSERT INTO reservations (order_id, status, lines, created_at, updated_at) "
                    "VALUES (?, ?, '[]', ?, ?) ON CONFLICT (order_id) DO NOTHING",
                    order_id, ReservationStatus.RELEASED, now, now,
                )  # fmt: skip
                if tombstone == 1:
                    return Reservation(order_id, ReservationStatus.RELEASED, [], now, now), True
                continue  # a reservation for the order landed meanwhile: release that one
            existing = _reservation(row)
            # The status flips first, and only from RESERVED: of two releases racing on PostgreSQL,
            # the second waits on this row, then finds nothing to flip and gives nothing back.
            flipped = await tx.execute(
                "UPDATE reservations SET status = ?, updated_at = ? WHERE order_id = ? AND status = ?",
                ReservationStatus.RELEASED, now, order_id, ReservationStatus.RESERVED,
            )  # fmt: skip
            if flipped == 0:
                return Reservation(
                    order_id, ReservationStatus.RELEASED, existing.lines, existing.created_at, existing.updated_at
                ), False
            for line in existing.lines:
                await tx.execute(
                    "UPDATE items SET available = available + ?, reserved = reserved - ?, updated_at = ? "
                    "WHERE sku = ?",
                    line["quantity"], line["quantity"], now, line["sku"],
                )  # fmt: skip
        return Reservation(order_id, ReservationStatus.RELEASED, existing.lines, existing.created_at, now), True
