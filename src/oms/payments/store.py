"""PaymentService's domain: charges keyed by order id, refunds, and voids."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from oms.db import Database, IntegrityError, Row
from oms.edge.paging import Keyset, Page
from oms.payments.errors import ChargeMismatch, NoPayment, NotRefundable, OrderVoided
from oms.utc import utc_now


class PaymentStatus(StrEnum):
    """A payment's status, stored as its name. A VOIDED row is an order settled before any charge
    arrived: it has no payment, and never will."""

    SUCCEEDED = "SUCCEEDED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"
    VOIDED = "VOIDED"


# Stripe's test payment methods: https://docs.stripe.com/testing
DECLINES = {
    "pm_card_visa": None,
    "pm_card_chargeDeclined": "card_declined",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
}

COLUMNS = "id, order_id, amount, currency, status, decline_code, payment_method, created_at, updated_at"

PAYMENTS = Keyset("payments", ("created_at", "id"))
"""Newest first, and by id among payments made in the same microsecond."""


def decline_code(payment_method: str) -> str | None:
    return DECLINES.get(payment_method, "invalid_payment_method")


def as_dict(row: Row) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "order_id", "amount", "currency", "status", "decline_code", "created_at")}


async def find(db: Database, order_id: str) -> list[dict[str, Any]]:
    """The order's payment, if it has one (a voided order has none)."""
    rows = await db.fetch_all(
        f"SELECT {COLUMNS} FROM payments WHERE order_id = ? AND status <> ?", order_id, PaymentStatus.VOIDED
    )
    return [as_dict(r) for r in rows]


async def listing(
    db: Database,
    *,
    order_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
    after: Sequence[str] | None = None,
) -> Page[dict[str, Any]]:
    """Payments (of ``order_id`` only, when given), newest first: the ``limit`` after the key
    (created_at, id) ``after``, or after ``offset`` rows."""
    conditions, params = ["status <> ?"], [str(PaymentStatus.VOIDED)]
    if order_id is not None:
        conditions.append("order_id = ?")
        params.append(order_id)
    if after:
        # Newer first, and by ascending id within one created_at.
        conditions.append("created_at <= ? AND (created_at < ? OR id > ?)")
        params += [after[0], after[0], after[1]]
    where = " AND ".join(conditions)
    rows = await db.fetch_all(
        f"SELECT {COLUMNS} FROM payments WHERE {where} ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
        *params,
        limit + 1,
        offset,
    )
    return PAYMENTS.page([as_dict(r) for r in rows], limit, key=lambda p: (p["created_at"], p["id"]))


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
    code = decline_code(payment_method)
    payment = {
        "id": "pay_" + uuid.uuid4().hex[:24],
        "order_id": order_id,
        "amount": amount,
        "currency": currency,
        "status": PaymentStatus.DECLINED if code else PaymentStatus.SUCCEEDED,
        "decline_code": code,
        "created_at": now,
    }
    # One statement in the usual case (on PostgreSQL one round trip): the order's row is made
    # unless it has one; only then is that one read.
    made = await db.write_returning(
        "INSERT INTO payments (id, order_id, amount, currency, payment_method, status, decline_code, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING RETURNING id",
        payment["id"], order_id, amount, currency, payment_method, payment["status"], code, now, now,
    )  # fmt: skip
    if made:
        return payment, True
    row = await db.fetch_one(f"SELECT {COLUMNS} FROM payments WHERE order_id = ?", order_id)
    if row is None:
        raise IntegrityError(f"the payment of order {order_id} was there and is gone")  # charged again
    if row["status"] == PaymentStatus.VOIDED:
        raise OrderVoided(order_id)
    if (row["amount"], row["currency"]) != (amount, currency):
        raise ChargeMismatch(order_id)
    return as_dict(row), False


async def void(db: Database, order_id: str) -> dict[str, Any] | None:
    """Settle an order whose charge may be in flight: its payment if one was made; else none ever will be."""
    while True:
        async with db.transaction() as tx:
            row = await tx.fetchone(f"SELECT {COLUMNS} FROM payments WHERE order_id = ?", order_id)
            if row is not None:
                return None if row["status"] == PaymentStatus.VOIDED else as_dict(row)
            now = utc_now()
            inserted = await tx.execute(
                "INSERT INTO payments (id, order_id, amount, currency, payment_method, status, decline_code, "
                "created_at, updated_at) VALUES (?, ?, 0, 'XXX', '', ?, NULL, ?, ?) ON CONFLICT (order_id) DO NOTHING",
                "void_" + uuid.uuid4().hex[:24], order_id, PaymentStatus.VOIDED, now, now,
            )  # fmt: skip
            if inserted == 1:
                return None
        # A charge won the race for the order's row: read it back.


async def refund(db: Database, order_id: str) -> tuple[dict[str, Any], bool]:
    """Refund the order's charge. Repeating it changes nothing. True when this call refunded."""
    async with db.transaction() as tx:
        # Only a SUCCEEDED charge flips: of two refunds racing, the second finds nothing to flip.
        flipped = await tx.execute(
            "UPDATE payments SET status = ?, updated_at = ? WHERE order_id = ? AND status = ?",
            PaymentStatus.REFUNDED, utc_now(), order_id, PaymentStatus.SUCCEEDED,
        )  # fmt: skip
        row = await tx.fetchone(f"SELECT {COLUMNS} FROM payments WHERE order_id = ?", order_id)
    if row is None or row["status"] == PaymentStatus.VOIDED:
        raise NoPayment(order_id)
    if row["status"] != PaymentStatus.REFUNDED:
        raise NotRefundable(order_id)
    return as_dict(row), flipped == 1
