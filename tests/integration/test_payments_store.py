"""PaymentService's store on a real database: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from oms.db import Database
from oms.payments import store
from oms.payments.errors import ChargeMismatch, NoPayment, NotRefundable, OrderVoided
from oms.payments.schema import metadata
from oms.payments.store import PaymentStatus

VISA = "pm_card_visa"
DECLINE = "pm_card_chargeDeclined"


async def charge(
    db: Database, order_id: str, *, amount: int = 4200, currency: str = "EUR", method: str = VISA
) -> tuple[dict[str, Any], bool]:
    return await store.charge(db, order_id=order_id, amount=amount, currency=currency, payment_method=method)


async def voids(db: Database, order_id: str) -> int:
    row = await db.fetch_one("SELECT COUNT(*) AS n FROM payments WHERE order_id = ? AND status = 'VOIDED'", order_id)
    assert row is not None
    return int(row["n"])


async def count(db: Database, table: str, order_id: str) -> int:
    row = await db.fetch_one(f"SELECT COUNT(*) AS n FROM {table} WHERE order_id = ?", order_id)
    assert row is not None
    return int(row["n"])


# --- charge -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "status", "code"),
    [
        (VISA, PaymentStatus.SUCCEEDED, None),
        (DECLINE, PaymentStatus.DECLINED, "card_declined"),
        ("pm_card_chargeDeclinedInsufficientFunds", PaymentStatus.DECLINED, "insufficient_funds"),
        ("pm_card_unknown", PaymentStatus.DECLINED, "invalid_payment_method"),
        ("", PaymentStatus.DECLINED, "invalid_payment_method"),
    ],
)
def test_charge_outcome_follows_the_stripe_test_token(with_db: Any, method: str, status: str, code: str | None) -> None:
    async def scenario(db: Database) -> None:
        payment, created = await charge(db, "order-1", amount=1999, currency="USD", method=method)
        assert created is True
        assert payment["id"].startswith("pay_")
        assert {k: payment[k] for k in ("order_id", "amount", "currency", "status", "decline_code")} == {
            "order_id": "order-1",
            "amount": 1999,
            "currency": "USD",
            "status": status,
            "decline_code": code,
        }
        # What was answered is what was stored.
        assert await store.find(db, "order-1") == [payment]

    with_db(metadata, scenario)


def test_a_repeated_charge_returns_the_first_one(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        first, created = await charge(db, "order-1")
        assert created is True and first["status"] == PaymentStatus.SUCCEEDED

        # Same order and amount, even with another card: the first charge stands, nothing new is charged.
        again, created_again = await charge(db, "order-1", method=DECLINE)
        assert created_again is False
        assert again == first
        assert await count(db, "payments", "order-1") == 1

        # A declined charge is an answer too: repeating it does not try the card again.
        declined, _ = await charge(db, "order-2", method=DECLINE)
        repeat, created_repeat = await charge(db, "order-2", method=VISA)
        assert created_repeat is False
        assert repeat == declined and repeat["status"] == PaymentStatus.DECLINED

    with_db(metadata, scenario)


@pytest.mark.parametrize(("amount", "currency"), [(4201, "EUR"), (4200, "USD"), (0, "EUR")])
def test_a_charge_for_another_amount_is_a_mismatch(with_db: Any, amount: int, currency: str) -> None:
    async def scenario(db: Database) -> None:
        first, _ = await charge(db, "order-1", amount=4200, currency="EUR")
        with pytest.raises(ChargeMismatch):
            await charge(db, "order-1", amount=amount, currency=currency)
        assert await store.find(db, "order-1") == [first]

    with_db(metadata, scenario)


def test_concurrent_duplicate_charges_make_one_payment(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        results = await asyncio.gather(*(charge(db, "order-1") for _ in range(10)))

        assert [created for _, created in results].count(True) == 1
        assert len({payment["id"] for payment, _ in results}) == 1
        assert await count(db, "payments", "order-1") == 1

    with_db(metadata, scenario, pool_size=10)


def test_find_lists_newest_first(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        ids = []
        for i in range(4):
            payment, _ = await charge(db, f"order-{i}")
            ids.append(payment["id"])
        assert [p["id"] for p in (await store.listing(db)).items] == ids[::-1]
        first = await store.listing(db, limit=2)
        assert [p["id"] for p in first.items] == ids[:1:-1]
        assert first.next is not None
        after = store.PAYMENTS.after(first.next)
        rest = await store.listing(db, limit=2, after=after)
        assert [p["id"] for p in rest.items] == ids[1::-1]
        assert rest.next is None
        assert [p["id"] for p in (await store.listing(db, order_id="order-1")).items] == [ids[1]]
        assert await store.find(db, "order-none") == []

    with_db(metadata, scenario)


# --- void -------------------------------------------------------------------------------------


def test_a_charge_after_a_void_is_refused(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        assert await store.void(db, "order-1") is None
        assert await store.void(db, "order-1") is None  # idempotent
        assert await voids(db, "order-1") == 1

        with pytest.raises(OrderVoided):
            await charge(db, "order-1")
        assert await store.find(db, "order-1") == []

        # Other orders are not affected.
        _, created = await charge(db, "order-2")
        assert created is True

    with_db(metadata, scenario)


def test_void_of_a_charged_order_returns_its_payment(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        payment, _ = await charge(db, "order-1", method=DECLINE)
        assert await store.void(db, "order-1") == payment
        assert await voids(db, "order-1") == 0

        # The order was not voided: a repeated charge still answers with its payment.
        again, created = await charge(db, "order-1")
        assert created is False and again == payment

    with_db(metadata, scenario)


def test_a_void_racing_a_charge_settles_one_outcome(with_db: Any) -> None:
    """A charge delayed in the network may arrive while the caller voids the order: either the charge
    happened and the void returns it, or the void holds and the charge is refused. Never both a
    payment and a void that said none would ever land."""

    async def scenario(db: Database) -> None:
        async def charge_outcome(order_id: str) -> str:
            try:
                await charge(db, order_id)
            except OrderVoided:
                return "refused"
            return "charged"

        orders = [f"order-{i}" for i in range(20)]
        outcomes = await asyncio.gather(*(op for o in orders for op in (charge_outcome(o), store.void(db, o))))

        broken = []
        for i, order_id in enumerate(orders):
            charged, voided = outcomes[2 * i], outcomes[2 * i + 1]
            payments = await store.find(db, order_id)
            if voided is None:
                if charged != "refused" or payments:
                    broken.append(order_id)
            else:
                assert charged == "charged"
                assert payments == [voided]
                assert await voids(db, order_id) == 0
        assert broken == [], f"voided (no charge will ever land), yet charged: {broken}"

    with_db(metadata, scenario, pool_size=40)


# --- refund -----------------------------------------------------------------------------------


def test_refund_of_a_successful_charge_is_idempotent(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        payment, _ = await charge(db, "order-1")

        refunded, created = await store.refund(db, "order-1")
        assert created is True
        assert refunded == {**payment, "status": PaymentStatus.REFUNDED}

        again, created_again = await store.refund(db, "order-1")
        assert created_again is False
        assert again == refunded
        assert await store.find(db, "order-1") == [refunded]

        # A repeated charge answers with the (now refunded) payment and charges nothing.
        repeat, created_repeat = await charge(db, "order-1")
        assert created_repeat is False and repeat["status"] == PaymentStatus.REFUNDED

    with_db(metadata, scenario)


def test_concurrent_duplicate_refunds_refund_once(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await charge(db, "order-1")

        results = await asyncio.gather(*(store.refund(db, "order-1") for _ in range(10)))

        assert [created for _, created in results].count(True) == 1
        assert all(payment["status"] == PaymentStatus.REFUNDED for payment, _ in results)

    with_db(metadata, scenario, pool_size=10)


def test_a_declined_charge_is_not_refundable(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        declined, _ = await charge(db, "order-1", method=DECLINE)
        with pytest.raises(NotRefundable):
            await store.refund(db, "order-1")
        assert await store.find(db, "order-1") == [declined]

    with_db(metadata, scenario)


def test_refund_without_a_payment(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        with pytest.raises(NoPayment):
            await store.refund(db, "order-1")
        await store.void(db, "order-2")
        with pytest.raises(NoPayment):
            await store.refund(db, "order-2")

    with_db(metadata, scenario)
