"""InventoryService's domain: the catalog, stock checks, and reservations keyed by order id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from oms.db import Database, IntegrityError, Row, Tx, fetch_all, fetch_one, placeholders
from oms.fields import utc_now

RESERVED = "RESERVED"
RELEASED = "RELEASED"

ITEM_COLUMNS = "sku, name, unit_price, currency, available, reserved"


class UnknownSkus(Exception):
    def __init__(self, skus: Sequence[str]) -> None:
        super().__init__(", ".join(skus))
        self.skus = list(skus)


@dataclass(frozen=True)
class Shortage:
    sku: str
    requested: int
    available: int


class OutOfStock(Exception):
    def __init__(self, shortages: Sequence[Shortage]) -> None:
        super().__init__(", ".join(s.sku for s in shortages))
        self.shortages = list(shortages)


class AlreadyReleased(Exception):
    """The order's reservation was released (or released before it was made): it cannot be made now."""


class ReservationMismatch(Exception):
    """The order already holds a reservation of other lines."""


@dataclass(frozen=True)
class Reservation:
    order_id: str
    status: str
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
    return Reservation(row["order_id"], row["status"], orjson.loads(row["lines"]), row["created_at"], row["updated_at"])


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
    row = await fetch_one(db, f"SELECT {ITEM_COLUMNS} FROM items WHERE sku = ?", sku)
    return _item(row) if row else None


async def list_items(db: Database) -> list[dict[str, Any]]:
    return [_item(r) for r in await fetch_all(db, f"SELECT {ITEM_COLUMNS} FROM items ORDER BY sku")]


async def _items_for(tx: Tx, skus: Sequence[str]) -> dict[str, Row]:
    rows = await tx.fetchall(f"SELECT {ITEM_COLUMNS} FROM items WHERE sku IN ({placeholders(skus)})", *skus)
    return {r["sku"]: r for r in rows}


async def _items_now(db: Database, skus: Sequence[str]) -> dict[str, Row]:
    rows = await fetch_all(db, f"SELECT {ITEM_COLUMNS} FROM items WHERE sku IN ({placeholders(skus)})", *skus)
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


async def list_reservations(db: Database, *, status: str | None, limit: int, offset: int) -> list[Reservation]:
    where = "WHERE status = ? " if status else ""
    params: list[Any] = [status] if status else []
    rows = await fetch_all(
        db, f"SELECT * FROM reservations {where}ORDER BY created_at, order_id LIMIT ? OFFSET ?", *params, limit, offset
    )
    return [_reservation(r) for r in rows]


async def get_reservation(db: Database, order_id: str) -> Reservation | None:
    row = await fetch_one(db, "SELECT * FROM reservations WHERE order_id = ?", order_id)
    return _reservation(row) if row else None


async def reserve(db: Database, order_id: str, lines: Sequence[tuple[str, int]]) -> tuple[Reservation, bool]:
    """Hold every line for the order, or none. Repeating it returns the first answer. True when new."""
    try:
        return await _reserve_once(db, order_id, lines)
    except IntegrityError:
        # Two requests for one order raced (PostgreSQL): the loser's stock moves were rolled back.
        return await _reserve_once(db, order_id, lines)


def _same_lines(reservation: Reservation, lines: Sequence[tuple[str, int]]) -> bool:
    held = sorted((line["sku"], line["quantity"]) for line in reservation.lines)
    return held == sorted(lines)


async def _reserve_once(db: Database, order_id: str, lines: Sequence[tuple[str, int]]) -> tuple[Reservation, bool]:
    now = utc_now()
    ordered = sorted(lines)  # one lock order for every transaction: no deadlocks on PostgreSQL
    async with db.transaction() as tx:
        row = await tx.fetchone("SELECT * FROM reservations WHERE order_id = ?", order_id)
        if row is not None:
            existing = _reservation(row)
            if existing.status == RELEASED:
                raise AlreadyReleased(order_id)
            if not _same_lines(existing, lines):
                raise ReservationMismatch(order_id)
            return existing, False
        short = []
        for sku, quantity in ordered:
            moved = await tx.execute(
                "UPDATE items SET available = available - ?, reserved = reserved + ?, updated_at = ? "
                "WHERE sku = ? AND available >= ?",
                quantity, quantity, now, sku, quantity,
            )  # fmt: skip
            if moved == 0:
                short.append((sku, quantity))
        if short:
            found = await _items_for(tx, [sku for sku, _ in short])
            unknown = [sku for sku, _ in short if sku not in found]
            if unknown:
                raise UnknownSkus(unknown)
            raise OutOfStock([Shortage(sku, q, found[sku]["available"]) for sku, q in short])
        held = [{"sku": sku, "quantity": q} for sku, q in ordered]
        await tx.execute(
            "INSERT INTO reservations (order_id, status, lines, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            order_id, RESERVED, orjson.dumps(held).decode(), now, now,
        )  # fmt: skip
    return Reservation(order_id, RESERVED, held, now, now), True


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
                    order_id, RELEASED, now, now,
                )  # fmt: skip
                if tombstone == 1:
                    return Reservation(order_id, RELEASED, [], now, now), True
                continue  # a reservation for the order landed meanwhile: release that one
            existing = _reservation(row)
            # The status flips first, and only from RESERVED: of two releases racing on PostgreSQL,
            # the second waits on this row, then finds nothing to flip and gives nothing back.
            flipped = await tx.execute(
                "UPDATE reservations SET status = ?, updated_at = ? WHERE order_id = ? AND status = ?",
                RELEASED, now, order_id, RESERVED,
            )  # fmt: skip
            if flipped == 0:
                return Reservation(order_id, RELEASED, existing.lines, existing.created_at, existing.updated_at), False
            for line in existing.lines:
                await tx.execute(
                    "UPDATE items SET available = available + ?, reserved = reserved - ?, updated_at = ? "
                    "WHERE sku = ?",
                    line["quantity"], line["quantity"], now, line["sku"],
                )  # fmt: skip
        return Reservation(order_id, RELEASED, existing.lines, existing.created_at, now), True
