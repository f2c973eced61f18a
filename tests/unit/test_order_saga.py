"""The order saga's decisions, with fake participants: which status each answer leads to."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from oms.orders.ports import CheckAnswer, FallbackAnswer, Item, Lines, NoAnswer, Payment, Refused, Unavailable
from oms.orders.saga import OrderContext, order_saga, status_for
from oms.saga.engine import LogEntry, Logged, SagaDefinition, SagaEnd, SagaEngine

WIDGET = Item("W", "Widget", 250, "USD", 10)


class FakeInventory:
    def __init__(self) -> None:
        self.check_error: Exception | None = None
        self.reserve_error: Exception | None = None
        self.release_failures = 0
        self.stock = {"W": WIDGET}
        self.reserved: dict[str, Lines] = {}
        self.calls: list[str] = []

    async def check(self, lines: Lines) -> CheckAnswer:
        self.calls.append("check")
        if self.check_error:
            raise self.check_error
        return CheckAnswer(
            [self.stock[s] for s, _ in lines if s in self.stock], [s for s, _ in lines if s not in self.stock]
        )

    async def reserve(self, order_id: str, lines: Lines) -> list[Item]:
        self.calls.append("reserve")
        if self.reserve_error:
            raise self.reserve_error
        self.reserved[order_id] = lines
        return [self.stock[s] for s, _ in lines]

    async def release(self, order_id: str) -> None:
        self.calls.append("release")
        if self.release_failures:
            self.release_failures -= 1
            raise Unavailable("inventory", "circuit_open")
        self.reserved.pop(order_id, None)

    async def reservation(self, order_id: str) -> str | None:
        self.calls.append("reservation")
        if self.check_error:
            raise self.check_error
        return "RESERVED" if order_id in self.reserved else None

    async def get_item(self, sku: str) -> Item | None:
        return self.stock.get(sku)

    async def list_items(self, cursor: str | None = None, *, limit: int = 1000) -> tuple[list[Item], str | None]:
        skus = sorted(sku for sku in self.stock if cursor is None or sku > cursor)
        return [self.stock[sku] for sku in skus[:limit]], (skus[limit - 1] if len(skus) > limit else None)


class FakePayments:
    def __init__(self) -> None:
        self.charge_error: Exception | None = None
        self.find_error: Exception | None = None
        self.landed: Payment | None = None  # a charge that landed although its answer was lost
        self.status = "SUCCEEDED"
        self.voided: list[str] = []
        self.calls: list[str] = []

    async def charge(self, order_id: str, amount: int, currency: str, payment_method: str) -> Payment:
        self.calls.append("charge")
        if self.charge_error:
            raise self.charge_error
        return Payment("pay_1", self.status, None if self.status == "SUCCEEDED" else "card_declined", amount, currency)

    async def find(self, order_id: str) -> Payment | None:
        self.calls.append("find")
        if self.find_error:
            raise self.find_error
        return self.landed

    async def void(self, order_id: str) -> Payment | None:
        self.calls.append("void")
        if self.landed is None:
            self.voided.append(order_id)
        return self.landed

    async def refund(self, order_id: str) -> Payment:
        raise AssertionError("no refund in these flows")


class FakeCatalog:
    def __init__(self, items: dict[str, Item]) -> None:
        self.items = items
        self.holds: dict[str, Lines] = {}

    async def hold(self, order_id: str, lines: Lines) -> FallbackAnswer:
        missing = [s for s, _ in lines if s not in self.items]
        short = [s for s, q in lines if s in self.items and self.items[s].available < q]
        if not missing and not short:
            self.holds[order_id] = lines
        return FallbackAnswer([self.items[s] for s, _ in lines if s in self.items], missing, short)

    async def unhold(self, order_id: str) -> None:
        self.holds.pop(order_id, None)

    async def held(self, skus: Sequence[str] | None = None) -> dict[str, int]:
        owed: dict[str, int] = {}
        for lines in self.holds.values():
            for sku, quantity in lines:
                if skus is None or sku in skus:
                    owed[sku] = owed.get(sku, 0) + quantity
        return owed


class Log:
    def __init__(self) -> None:
        self.entries: list[LogEntry] = []
        self.end: SagaEnd | None = None
        self.context: dict[str, Any] = {}

    async def record(
        self,
        saga_id: str,
        entry: LogEntry | None,
        context: Mapping[str, Any],
        end: SagaEnd | None,
        *,
        earlier: Sequence[LogEntry] = (),
    ) -> None:
        self.entries.extend(earlier)
        if entry:
            self.entries.append(entry)
        self.end = end or self.end
        self.context = dict(context)


class World:
    def __init__(self) -> None:
        self.inventory = FakeInventory()
        self.payments = FakePayments()
        self.catalog = FakeCatalog({"W": WIDGET})
        self.log = Log()

    def run(self, quantity: int = 2) -> str:
        async def sleep(_: float) -> None:
            return None

        engine = SagaEngine(self.log, sleep=sleep)
        saga = order_saga(self.inventory, self.payments, self.catalog)
        context = OrderContext(saga="order", order_id="o1", lines=[("W", quantity)], payment_method="pm_card_visa")
        asyncio.run(engine.run(saga, "o1", context))
        return status_for(self.log.end)

    def steps(self) -> list[tuple[str, str, str | None]]:
        return [(e.name, e.outcome, e.reason) for e in self.log.entries]


def test_happy_path_prices_the_order_and_reserves() -> None:
    w = World()
    assert w.run(2) == "PLACED"
    assert w.log.context["total_amount"] == 500 and w.log.context["inventory_check"] == "live"
    assert w.inventory.reserved == {"o1": [("W", 2)]}


def test_decline_releases_and_fails_with_the_decline_code() -> None:
    w = World()
    w.payments.status = "DECLINED"
    assert w.run() == "PAYMENT_FAILED"
    assert w.log.end is not None and w.log.end.reason == "card_declined"
    assert w.inventory.reserved == {}
    assert w.steps()[-1] == ("release_inventory", "done", None)


def test_release_keeps_trying_until_inventory_answers() -> None:
    w = World()
    w.payments.status = "DECLINED"
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
    assert w.catalog.holds == {"o1": [("W", 2)]}
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
    w.payments.status = "DECLINED"
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
    w.payments.charge_error = NoAnswer("payment", "timeout")
    w.payments.landed = Payment("pay_9", "SUCCEEDED", None, 500, "USD")
    assert w.run() == "PLACED"
    assert w.payments.calls == ["charge", "find"]
    assert w.log.context["payment_id"] == "pay_9"


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
    w.catalog.holds = {"paid-on-fallback": [("W", 9)]}
    assert w.run(2) == "OUT_OF_STOCK"  # 10 in stock, 9 owed: 1 is left for new orders
    assert w.payments.calls == []
    w2 = World()
    w2.catalog.holds = {"paid-on-fallback": [("W", 8)]}
    assert w2.run(2) == "PLACED"


class Crash(Exception):
    pass


class CrashOnFirstWrite(Log):
    """The process dies at its first log write: nothing of this run is durable."""

    def __init__(self) -> None:
        super().__init__()
        self.crashed = False

    async def record(
        self,
        saga_id: str,
        entry: LogEntry | None,
        context: Mapping[str, Any],
        end: SagaEnd | None,
        *,
        earlier: Sequence[LogEntry] = (),
    ) -> None:
        if not self.crashed:
            self.crashed = True
            raise Crash
        await super().record(saga_id, entry, context, end, earlier=earlier)


def test_recovery_after_a_crash_keeps_the_reservation_that_took_the_last_units() -> None:
    """The reservation's row waits for the payment's: a crash before that write leaves the order
    holding stock with no row saying so. Recovery checks again, sees the stock gone (this order
    holds it), and leaves that to the reservation, which answers the same hold: PLACED."""
    w = World()
    log = CrashOnFirstWrite()
    saga = order_saga(w.inventory, w.payments, w.catalog)
    took_the_last = Item("W", "Widget", 250, "USD", 0)

    async def reserve(order_id: str, lines: Lines) -> list[Item]:
        w.inventory.calls.append("reserve")
        w.inventory.reserved[order_id] = lines
        w.inventory.stock["W"] = took_the_last
        return [took_the_last]

    w.inventory.reserve = reserve  # type: ignore[method-assign]

    async def sleep(_: float) -> None:
        return None

    engine = SagaEngine(log, sleep=sleep)
    context = OrderContext(saga="order", order_id="o1", lines=[("W", 10)], payment_method="pm_card_visa")
    with pytest.raises(Crash):
        asyncio.run(engine.run(saga, "o1", context.copy()))
    assert log.entries == [] and w.inventory.reserved == {"o1": [("W", 10)]}

    result = asyncio.run(engine.resume(saga, "o1", context.copy(), []))
    assert status_for(log.end) == "PLACED", result
    assert w.inventory.reserved == {"o1": [("W", 10)]}
    assert w.payments.calls == ["charge", "find", "charge"]  # asked first; the fake keeps no charge
    check = log.entries[0]
    assert (check.name, check.outcome) == ("check_inventory", "done")
    assert (check.detail["refused"], check.detail["reservation"]) == ("out_of_stock", "RESERVED")


def _crashed_after_the_charge(
    w: World,
) -> tuple[CrashOnFirstWrite, SagaEngine, SagaDefinition[OrderContext], OrderContext]:
    """A run that reserved and charged, then died before its first log write."""
    log = CrashOnFirstWrite()
    saga = order_saga(w.inventory, w.payments, w.catalog)

    async def sleep(_: float) -> None:
        return None

    engine = SagaEngine(log, sleep=sleep)
    context = OrderContext(saga="order", order_id="o1", lines=[("W", 5)], payment_method="pm_card_visa")
    with pytest.raises(Crash):
        asyncio.run(engine.run(saga, "o1", context.copy()))
    assert log.entries == [] and w.payments.calls == ["charge"] and w.inventory.reserved == {"o1": [("W", 5)]}
    w.payments.landed = Payment("pay_1", "SUCCEEDED", None, 1250, "USD")
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

    w.inventory.check_error = None
    w.inventory.stock["W"] = Item("W", "Widget", 250, "USD", 0)  # this order holds the last units
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

    log = Log()
    context = OrderContext(saga="order", order_id="o1", lines=[("W", 5)], payment_method="pm_card_visa")
    asyncio.run(SagaEngine(log, sleep=sleep).resume(saga, "o1", context, []))
    assert status_for(log.end) == "OUT_OF_STOCK"
    assert w.payments.calls == [] and w.inventory.reserved == {}


def test_recovery_takes_the_amount_that_was_charged() -> None:
    w = World()
    log, engine, saga, context = _crashed_after_the_charge(w)
    w.payments.landed = Payment("pay_1", "SUCCEEDED", None, 1000, "USD")  # charged before a price change
    asyncio.run(engine.resume(saga, "o1", context.copy(), []))
    assert status_for(log.end) == "PLACED"
    assert (log.context["total_amount"], log.context["currency"]) == (1000, "USD")
