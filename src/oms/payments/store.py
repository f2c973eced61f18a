"""PaymentService's domain: charges keyed by order id, refunds, and voids."""

from __future__ import annotations

import uuid
from typing import Any

from oms.db import Database, IntegrityError, Row, fetch_all
from oms.fields import utc_now

SUCCEEDED = "SUCCEEDED"
DECLINED = "DECLINED"
REFUNDED = "REFUNDED"

# Stripe's test payment methods: https://docs.stripe.com/testing
DECLINES = {
    "pm_card_visa": None,
    "pm_card_chargeDeclined": "card_declined",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
}

COLUMNS = "id, order_id, amount, currency, status, decline_code, payment_method, created_at, updated_at"


class OrderVoided(Exception):
    """The order was voided before this charge arrived; it is never charged."""


class ChargeMismatch(Exception):
    """The order was charged already, for another amount or currency."""


class NoPayment(Exception):
    pass


class NotRefundable(Exception):
    pass


def decline_code(payment_method: str) -> str | None:
    return DECLINES.get(payment_method, "invalid_payment_method")


def as_dict(row: Row) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "order_id", "amount", "currency", "status", "decline_code", "created_at")}


async def find(db: Database, order_id: str | None, limit: int = 100) -> list[dict[str, Any]]:
    if order_id is not None:
        rows = await fetch_all(db, f"SELECT {COLUMNS} FROM payments WHERE order_id = ?", order_id)
    else:
        rows = await fetch_all(db, f"SELECT {COLUMNS} FROM payments ORDER BY created_at DESC LIMIT ?", limit)
    return [as_dict(r) for r in rows]


async def charge(
    db: Database, *, order_id: str, amount: int, currency: str, payment_method: str
) -> tuple[dict[str, Any], bool]:
    """Charge the order once. A repeat returns the first charge unchanged. True when new."""
    try:
        return await _charge_once(db, order_id, amount, currency, payment_method)
    except IntegrityError:
        # Two charges for one order raced (PostgreSQL); the first one stands.
        return await _charge_once(db, order_id, amount, currency, payment_method)


async def _charge_once(
    db: Database, order_id: str, amount: int, currency: str, payment_method: str
) -> tuple[dict[str, Any], bool]:
    now = utc_now()
    async with db.transaction() as tx:
        row = await tx.fetchone(f"SELECT {COLUMNS} FROM payments WHERE order_id = ?", order_id)
        if row is not None:
            if (row["amount"], row["currency"]) != (amount, currency):
                raise ChargeMismatch(order_id)
            return as_dict(row), False
        if await tx.fetchone("SELECT order_id FROM voids WHERE order_id = ?", order_id):
            raise OrderVoided(order_id)
        code = decline_code(payment_method)
        payment = {
            "id": "pay_" + uuid.uuid4().hex[:24],
            "order_id": order_id,
            "amount": amount,
            "currency": currency,
            "status": DECLINED if code else SUCCEEDED,
            "decline_code": code,
            "created_at": now,
        }
        await tx.execute(
            "INSERT INTO payments (id, order_id, amount, currency, payment_method, status, decline_code, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            payment["id"], order_id, amount, currency, payment_method, payment["status"], code, now, now,
        )  # fmt: skip
    return payment, True


async def void(db: Database, order_id: str) -> dict[str, Any] | None:
    """Settle an order whose charge may be in flight: its payment if one was made; else none ever will be."""
    async with db.transaction() as tx:
        row = await tx.fetchone(f"SELECT {COLUMNS} FROM payments WHERE order_id = ?", order_id)
        if row is not None:
            return as_dict(row)
        await tx.execute(
            "INSERT INTO voids (order_id, created_at) VALUES (?, ?) ON CONFLICT (order_id) DO NOTHING",
            order_id,
            utc_now(),
        )
    return None


async def refund(db: Database, order_id: str) -> tuple[dict[str, Any], bool]:
    """Refund the order's charge. Repeating it changes nothing. True when this call refunded."""
    async with db.transaction() as tx:
        row = await tx.fetchone(f"SELECT {COLUMNS} FROM payments WHERE order_id = ?", order_id)
        if row is None:
            raise NoPayment(order_id)
        payment = as_dict(row)
        if payment["status"] == REFUNDED:
            return payment, False
        if payment["status"] != SUCCEEDED:
            raise NotRefundable(order_id)
        await tx.execute(
            "UPDATE payments SET status = ?, updated_at = ? WHERE order_id = ?", REFUNDED, utc_now(), order_id
        )
    payment["status"] = REFUNDED
    return payment, True
