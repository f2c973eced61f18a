"""The order saga's decisions, with fake participants: which status each answer leads to."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from fakes import Crash, CrashingLog, FakeCatalog, FakeInventory, FakePayments, MemoryLog
from oms.orders.ports import Item, NoAnswer, Payment, Refused, Unavailable
from oms.orders.saga import OrderContext, order_saga, status_for
from oms.saga.engine import Logged, SagaDefinition, SagaEngine

WIDGET = Item("W", "Widget", 250, "USD", 10)


class World:
    def __init__(self) -> None:
        self.inventory = FakeInventory([WIDGET])
        self.payments = FakePayments()
        self.catalog = FakeCatalog([WIDGET])
        self.log = MemoryLog()
        self.payment_method = "pm_card_visa"

    def run(self, quantity: int = 2) -> str:
        async def sleep(_: float) -> None:
            return None

        engine = SagaEngine(self.log, sleep=sleep)
        saga = order_saga(self.inventory, self.payments, self.catalog)
        context = OrderContext(saga="order", order_id="o1", lines=[("W", quantity)], payment_method=self.payment_method)
        asyncio.run(engine.run(saga, "o1", context))
        return status_for(self.log.end)

    def steps(self) -> list[tuple[str, str, str | None]]:
        return [(e.name, e.outcome, e.reason) for e in self.log.entries]


def test_happy_path_prices_the_order_and_reserves() -> None:
    w = World()
    assert w.run(2) == "PLACED"
    assert w.log.context["total_amount"] == 500 and w.log.context["inventory_check"] == "live"
    assert w.inventory.reserved == {"o1": [("W", 2)]}
    assert w.inventory.stock["W"].available == 8


def test_decline_releases_and_fails_with_the_decline_code() -> None:
    w = World()
    w.payment_method = "pm_card_chargeDeclined"
    assert w.run() == "PAYMENT_FAILED"
    assert w.log.end is not None and w.log.end.reason == "card_declined"
    assert w.inventory.reserved == {}
    assert w.steps()[-1] == ("release_inventory", "done", None)


def test_release_keeps_trying_until_inventory_answers() -> None:
    w = World()
    w.payment_method = "pm_card_chargeDeclined"
    w.inventory.release_failures = 3
    assert w.run() == "PAYMENT_FAILED"
    assert w.inventory.calls.count("release") == 4
    assert w.inventory.reserved == {}


def test_check_short_is_out_of_stock_without_payment() -> None:
    w = World()
    assert w.run(11) == "OUT_OF_STOCK"
    assert w.payments.calls == [] and "reserve" not in w.inventory.calls


def test_reserve_lost_race_is_out_of_stock() -> None:
    w = World()
    w.inventory.reserve_error = Refused(409, "out-of-stock")
    assert w.run() == "OUT_OF_STOCK"
    assert w.payments.calls == []


def test_reserve_without_answer_is_undone_to_be_safe() -> None:
    w = World()
    w.inventory.reserve_error = NoAnswer("inventory", "timeout")
    assert w.run() == "REJECTED"
    assert "release" in w.inventory.calls
    assert w.payments.calls == []


@pytest.mark.parametrize("error", [Unavailable("inventory", "circuit_open"), NoAnswer("inventory", "timeout")])
def test_check_out_of_reach_uses_fallback_and_defers_the_reservation(error: Exception) -> None:
    w = World()
    w.inventory.check_error = error
    assert w.run() == "PLACED"
    assert w.log.context["inventory_check"] == "fallback"
    assert w.log.context["reservation"] == "deferred"
    assert "reserve" not in w.inventory.calls
    assert w.catalog.holds == {"o1": {"W": 2}}
    assert w.steps()[0] == ("check_inventory", "done", f"fallback:{error.reason}")  # type: ignore[attr-defined]


def test_fallback_without_data_or_stock_is_rejected_and_never_charged() -> None:
    w = World()
    w.inventory.check_error = Unavailable("inventory", "circuit_open")
    w.catalog.items = {}
    assert w.run() == "REJECTED"
    assert w.log.end is not None and w.log.end.reason == "no_fallback_data"
    w2 = World()
    w2.inventory.check_error = Unavailable("inventory", "circuit_open")
    assert w2.run(11) == "REJECTED"
    assert w2.log.end is not None and w2.log.end.reason == "insufficient_fallback_stock"
    assert w.payments.calls == w2.payments.calls == []


def test_fallback_order_whose_payment_fails_gives_the_held_units_back() -> None:
    w = World()
    w.inventory.check_error = Unavailable("inventory", "circuit_open")
    w.payment_method = "pm_card_chargeDeclined"
    assert w.run() == "PAYMENT_FAILED"
    assert w.catalog.holds == {}
    assert w.log.context["reservation"] == "none"


def test_payment_never_delivered_releases_stock() -> None:
    w = World()
    w.payments.charge_error = Unavailable("payment", "connection_refused")
    assert w.run() == "PAYMENT_FAILED"
    assert w.log.end is not None and w.log.end.reason == "payment_unavailable"
    assert w.inventory.reserved == {}


def test_payment_timeout_then_found_succeeded_is_placed() -> None:
    w = World()
    w.payments.answer_lost = NoAnswer("payment", "timeout")  # charged, but the answer never came back
    assert w.run() == "PLACED"
    assert w.payments.calls == ["charge", "find"]
    assert w.log.context["payment_id"] == w.payments.payments["o1"].id


def test_payment_timeout_with_no_charge_is_voided_then_failed() -> None:
    w = World()
    w.payments.charge_error = NoAnswer("payment", "timeout")
    assert w.run() == "PAYMENT_FAILED"
    assert w.payments.calls == ["charge", "find", "void"]
    assert w.payments.voided == ["o1"]
    assert w.inventory.reserved == {}
    assert w.log.end is not None and w.log.end.reason == "payment_timeout"


def test_payment_outcome_that_cannot_be_learnt_leaves_the_order_pending() -> None:
    w = World()
    w.payments.charge_error = NoAnswer("payment", "timeout")
    w.payments.find_error = NoAnswer("payment", "timeout")
    assert w.run() == "PENDING"
    assert w.log.end is not None and w.log.end.reason == "payment_outcome_unknown"
    assert w.inventory.reserved == {"o1": [("W", 2)]}  # never compensated on a guess
    assert "release" not in w.inventory.calls


def test_live_check_leaves_the_units_owed_to_fallback_orders_alone() -> None:
    w = World()
    asyncio.run(w.catalog.hold("paid-on-fallback", [("W", 9)]))
    assert w.run(2) == "OUT_OF_STOCK"  # 10 in stock, 9 owed: 1 is left for new orders
    assert w.payments.calls == []
    w2 = World()
    asyncio.run(w2.catalog.hold("paid-on-fallback", [("W", 8)]))
    assert w2.run(2) == "PLACED"


def test_recovery_after_a_crash_keeps_the_reservation_that_took_the_last_units() -> None:
    """The reservation's row waits for the payment's: a crash before that write leaves the order
    holding stock with no row saying so. Recovery checks again, sees the stock gone (this order
    holds it), and leaves that to the reservation, which answers the same hold: PLACED."""
    w = World()
    log = CrashingLog(0)
    saga = order_saga(w.inventory, w.payments, w.catalog)

    async def sleep(_: float) -> None:
        return None

    engine = SagaEngine(log, sleep=sleep)
    context = OrderContext(saga="order", order_id="o1", lines=[("W", 10)], payment_method="pm_card_visa")
    with pytest.raises(Crash):
        asyncio.run(engine.run(saga, "o1", context.copy()))
    assert log.entries == [] and w.inventory.reserved == {"o1": [("W", 10)]}

    result = asyncio.run(engine.resume(saga, "o1", context.copy(), []))
    assert status_for(log.end) == "PLACED", result
    assert w.inventory.reserved == {"o1": [("W", 10)]} and w.inventory.stock["W"].available == 0
    assert w.payments.calls == ["charge", "find"]  # asked first: the charge made before the crash stands
    check = log.entries[0]
    assert (check.name, check.outcome) == ("check_inventory", "done")
    assert (check.detail["refused"], check.detail["reservation"]) == ("out_of_stock", "RESERVED")


def _crashed_after_the_charge(
    w: World,
) -> tuple[CrashingLog, SagaEngine, SagaDefinition[OrderContext], OrderContext]:
    """A run that reserved the last units and charged, then died before its first log write."""
    w.inventory.stock["W"] = replace(WIDGET, available=5)
    log = CrashingLog(0)
    saga = order_saga(w.inventory, w.payments, w.catalog)

    async def sleep(_: float) -> None:
        return None

    engine = SagaEngine(log, sleep=sleep)
    context = OrderContext(saga="order", order_id="o1", lines=[("W", 5)], payment_method="pm_card_visa")
    with pytest.raises(Crash):
        asyncio.run(engine.run(saga, "o1", context.copy()))
    assert log.entries == [] and w.payments.calls == ["charge"] and w.inventory.reserved == {"o1": [("W", 5)]}
    assert w.inventory.stock["W"].available == 0 and w.payments.payments["o1"].status == "SUCCEEDED"
    return log, engine, saga, context


@pytest.mark.parametrize("catalog", ["short", "missing"])
def test_recovery_with_inventory_out_of_reach_waits_instead_of_falling_back(catalog: str) -> None:
    """The charge and the reservation are in place but no row says so: a fallback check now could
    refuse the order and undo nothing. Recovery waits for a live answer instead, then places it."""
    w = World()
    log, engine, saga, context = _crashed_after_the_charge(w)
    w.inventory.check_error = Unavailable("inventory", "circuit_open")
    w.catalog.items = {"W": Item("W", "Widget", 250, "USD", 3)} if catalog == "short" else {}

    waiting = asyncio.run(engine.resume(saga, "o1", context.copy(), []))
    assert waiting.status.value == "waiting" and status_for(log.end) == "PENDING"
    assert w.inventory.reserved == {"o1": [("W", 5)]} and "refund" not in w.payments.calls
    assert w.catalog.holds == {}

    w.inventory.check_error = None  # and the check finds no stock: this order holds the last units
    logged = [Logged(e.kind, e.name, e.outcome, e.reason) for e in log.entries]
    asyncio.run(engine.resume(saga, "o1", context.copy(), logged))
    assert status_for(log.end) == "PLACED"
    assert w.payments.calls.count("charge") == 1 and w.inventory.reserved == {"o1": [("W", 5)]}


def test_recovery_refusal_stands_when_the_order_holds_no_reservation() -> None:
    """Died before reserving: the check may refuse now, and there is nothing to undo or refund."""
    w = World()
    w.inventory.stock["W"] = Item("W", "Widget", 250, "USD", 1)
    saga = order_saga(w.inventory, w.payments, w.catalog)

    async def sleep(_: float) -> None:
        return None

    log = MemoryLog()
    context = OrderContext(saga="order", order_id="o1", lines=[("W", 5)], payment_method="pm_card_visa")
    asyncio.run(SagaEngine(log, sleep=sleep).resume(saga, "o1", context, []))
    assert status_for(log.end) == "OUT_OF_STOCK"
    assert w.payments.calls == [] and w.inventory.reserved == {}


def test_recovery_takes_the_amount_that_was_charged() -> None:
    w = World()
    log, engine, saga, context = _crashed_after_the_charge(w)
    w.payments.payments["o1"] = Payment("pay_1", "SUCCEEDED", None, 1000, "USD")  # charged before a price change
    asyncio.run(engine.resume(saga, "o1", context.copy(), []))
    assert status_for(log.end) == "PLACED"
    assert (log.context["total_amount"], log.context["currency"]) == (1000, "USD")
