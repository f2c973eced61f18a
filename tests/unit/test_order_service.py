"""OrderService on fakes (tests/fakes.py): placing, cancelling, retrying and recovering orders, each
seen from what the participants were asked and what the store holds. No database, no HTTP: the
same service the API drives, with its ports filled by the fakes the contract tests hold to the real
implementations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest

from fakes import FakeCatalog, FakeInventory, FakePayments, MemoryOrders
from oms.orders.errors import KeyReused, NotCancellable, NothingToRetry, Overloaded, UnknownSkus
from oms.orders.ports import Item, Unavailable
from oms.orders.saga import OrderState, order_sagas
from oms.orders.saga_log import OrderLog
from oms.orders.service import OrderService, PlaceOrder
from oms.saga.engine import LogEntry, SagaEngine
from oms.saga.policies import CompensationPolicy
from oms.utc import utc_after

T = TypeVar("T")

WIDGET = Item("W", "Widget", 250, "USD", 5)
GADGET = Item("G", "Gadget", 1000, "USD", 1)


async def no_sleep(seconds: float) -> None:
    return None


class CrashingOrders(MemoryOrders):
    """Dies at its first saga write, as a process killed there would: nothing of it is written."""

    def __init__(self, catalog: FakeCatalog) -> None:
        super().__init__(catalog)
        self.crash = True

    async def record(
        self,
        order_id: str,
        saga: str,
        entry: LogEntry | None,
        state: OrderState,
        *,
        earlier: Sequence[LogEntry] = (),
        catalog: Sequence[Item] = (),
    ) -> None:
        if self.crash:
            self.crash = False
            raise ConnectionError("the database went away")
        await super().record(order_id, saga, entry, state, earlier=earlier, catalog=catalog)


class World:
    """OrderService with fakes for every port; the catalog knows what the inventory has."""

    def __init__(self, *, crash: bool = False, give_up_after: float | None = None) -> None:
        self.inventory = FakeInventory([WIDGET, GADGET])
        self.payments = FakePayments()
        self.catalog = FakeCatalog([WIDGET, GADGET])
        self.orders = CrashingOrders(self.catalog) if crash else MemoryOrders(self.catalog)
        policy = CompensationPolicy(give_up_after=give_up_after)
        engine = SagaEngine(OrderLog(self.orders), sleep=no_sleep, compensation=policy)
        self.service = OrderService(
            orders=self.orders,
            catalog=self.catalog,
            engine=engine,
            sagas=order_sagas(self.inventory, self.payments, self.catalog),
            inventory=self.inventory,
            wait=5.0,
            lease_ttl=15.0,
            max_in_flight=1000,
            key_ttl=86400.0,
            instance="test:8000",
        )

    async def place(
        self, *lines: tuple[str, int], method: str = "pm_card_visa", key: str | None = None, customer: str = "c1"
    ) -> dict[str, Any]:
        order, _ = await self.service.place(PlaceOrder(customer, method, list(lines)), key)
        return order

    async def settled(self) -> None:
        """Every saga this process drives has stopped, and the leases of those that stopped on a
        failed write are let go."""
        await asyncio.gather(*self.service.running.values())
        await asyncio.gather(*self.service.releasing.values())

    def charges(self) -> int:
        return self.payments.calls.count("charge")


def run(case: Callable[[World], Awaitable[T]], **world: Any) -> T:
    async def main() -> T:
        w = World(**world)
        await w.service.start()
        return await case(w)

    return asyncio.run(main())


# -- place ------------------------------------------------------------------------------------------


def test_place_takes_the_stock_charges_the_card_and_places_the_order() -> None:
    async def case(w: World) -> None:
        order = await w.place(("W", 2))
        assert (order["status"], order["reservation"], order["inventory_check"]) == ("PLACED", "held", "live")
        assert w.inventory.reserved == {order["id"]: [("W", 2)]}
        assert w.inventory.stock["W"].available == 3
        payment = w.payments.payments[order["id"]]
        assert (payment.status, payment.amount, payment.currency) == ("SUCCEEDED", 500, "USD")
        assert order["payment_id"] == payment.id and order["total_amount"] == 500
        assert [s["name"] for s in order["saga"]] == ["check_inventory", "reserve_inventory", "process_payment"]
        assert w.orders.writes == 1  # the two repeatable steps' rows went with the payment's

    run(case)


def test_a_declined_card_fails_the_order_and_releases_its_reservation() -> None:
    async def case(w: World) -> None:
        order = await w.place(("W", 2), method="pm_card_chargeDeclined")
        assert (order["status"], order["failure_reason"], order["reservation"]) == (
            "PAYMENT_FAILED",
            "card_declined",
            "released",
        )
        assert w.inventory.reservations[order["id"]][0] == "RELEASED"
        assert w.inventory.stock["W"].available == 5  # every unit back
        assert w.payments.payments[order["id"]].status == "DECLINED"

    run(case)


def test_an_order_beyond_the_stock_is_out_of_stock_and_nothing_is_taken_or_charged() -> None:
    async def case(w: World) -> None:
        order = await w.place(("G", 2))
        assert (order["status"], order["failure_reason"]) == ("OUT_OF_STOCK", "out_of_stock")
        assert w.inventory.reservations == {}
        assert w.payments.calls == []

    run(case)


def test_an_unknown_sku_is_refused_before_anything_is_stored() -> None:
    async def case(w: World) -> None:
        with pytest.raises(UnknownSkus):
            await w.place(("W", 1), ("NOPE", 1))
        assert w.orders.rows == {}

    run(case)


def test_with_inventory_out_of_reach_the_order_is_placed_on_fallback_data_and_reconciled_later() -> None:
    async def case(w: World) -> None:
        w.inventory.check_error = Unavailable("inventory", "circuit_open", sent=0)
        order = await w.place(("W", 2))
        assert (order["status"], order["inventory_check"], order["reservation"]) == ("PLACED", "fallback", "deferred")
        assert w.charges() == 1 and w.inventory.reservations == {}
        assert w.catalog.holds == {order["id"]: {"W": 2}}  # the last known stock, held for it
        # Handed to the reconcile saga: waiting, its lease free for recovery at once.
        row = w.orders.rows[order["id"]]
        assert (row["saga_name"], row["saga_status"], row["lease_until"]) == ("reconcile", "waiting", None)
        assert order["pending_reason"] == "reservation_deferred"

        w.inventory.check_error = None  # InventoryService is back: recovery makes the reservation
        assert await w.service.recover() == 1
        await w.settled()
        reconciled = await w.service.get(order["id"])
        assert reconciled is not None
        assert (reconciled["status"], reconciled["reservation"], reconciled["saga_status"]) == (
            "PLACED",
            "held",
            "completed",
        )
        assert w.inventory.reserved == {order["id"]: [("W", 2)]}
        assert w.catalog.holds == {} and w.charges() == 1

    run(case)


def test_a_replayed_key_answers_the_same_order_and_another_body_with_it_is_refused() -> None:
    async def case(w: World) -> None:
        first, created = await w.service.place(PlaceOrder("c1", "pm_card_visa", [("W", 1)]), "k1")
        again, created_again = await w.service.place(PlaceOrder("c1", "pm_card_visa", [("W", 1)]), "k1")
        assert (created, created_again) == (True, False)
        assert again["id"] == first["id"] and again["status"] == "PLACED"
        assert w.charges() == 1 and len(w.orders.rows) == 1
        with pytest.raises(KeyReused):
            await w.service.place(PlaceOrder("c1", "pm_card_visa", [("W", 2)]), "k1")
        assert w.charges() == 1 and len(w.orders.rows) == 1

    run(case)


def test_a_key_taken_while_the_order_was_checked_answers_the_order_that_took_it() -> None:
    """Two requests with one key at once: the second finds the key free, then taken when it stores
    its order (the store says so); it answers the first one's order, and charges nothing."""

    async def case(w: World) -> None:
        first_check = w.service._refuse_unknown_skus
        racing: dict[str, Any] = {}

        async def check_then_lose_the_race(skus: Sequence[str]) -> None:
            await first_check(skus)
            if not racing:  # the other request, placed meanwhile (its own check does not race)
                racing["first"] = None
                racing["first"] = await w.place(("W", 1), key="k1")

        w.service._refuse_unknown_skus = check_then_lose_the_race  # type: ignore[method-assign]
        order, created = await w.service.place(PlaceOrder("c1", "pm_card_visa", [("W", 1)]), "k1")
        assert created is False and order["id"] == racing["first"]["id"]
        assert w.charges() == 1 and len(w.orders.rows) == 1

    run(case)


# -- cancel -----------------------------------------------------------------------------------------


def test_cancel_refunds_a_placed_order_and_gives_its_stock_back() -> None:
    async def case(w: World) -> None:
        order = await w.place(("W", 2))
        cancelled = await w.service.cancel(order["id"], customer_id="c1")
        assert cancelled is not None and cancelled["status"] == "CANCELLED"
        assert w.payments.payments[order["id"]].status == "REFUNDED"
        assert w.inventory.reservations[order["id"]][0] == "RELEASED"
        assert w.inventory.stock["W"].available == 5
        assert [s["name"] for s in cancelled["saga"] if s["saga"] == "cancel"] == ["refund_payment", "release_stock"]

    run(case)


def test_another_customers_order_cannot_be_cancelled_nor_seen() -> None:
    async def case(w: World) -> None:
        order = await w.place(("W", 2))
        assert await w.service.cancel(order["id"], customer_id="c2") is None
        assert await w.service.get(order["id"], customer_id="c2") is None
        assert await w.service.cancel("ord_none") is None
        assert w.payments.calls == ["charge"] and w.inventory.reserved == {order["id"]: [("W", 2)]}

    run(case)


def test_only_a_placed_order_can_be_cancelled() -> None:
    async def case(w: World) -> None:
        order = await w.place(("W", 2), method="pm_card_chargeDeclined")
        with pytest.raises(NotCancellable):
            await w.service.cancel(order["id"])
        assert "refund" not in w.payments.calls

    run(case)


# -- retry ------------------------------------------------------------------------------------------


def test_retry_runs_the_compensations_of_an_order_that_gave_up_on_them() -> None:
    async def case(w: World) -> None:
        w.inventory.release_failures = 1  # the release after the decline fails once...
        order = await w.place(("W", 2), method="pm_card_chargeDeclined")
        assert (order["status"], order["reservation"]) == ("COMPENSATION_FAILED", "held")
        assert w.inventory.stock["W"].available == 3  # ...and the saga gave up at once: stock still held

        retried = await w.service.retry(order["id"])
        assert retried is not None
        assert (retried["status"], retried["reservation"], retried["failure_reason"]) == (
            "PAYMENT_FAILED",
            "released",
            "card_declined",
        )
        assert w.inventory.stock["W"].available == 5

    run(case, give_up_after=0.0)


def test_retry_of_an_order_whose_sagas_are_over_is_refused() -> None:
    async def case(w: World) -> None:
        order = await w.place(("W", 1))
        with pytest.raises(NothingToRetry):
            await w.service.retry(order["id"])
        assert await w.service.retry("ord_none") is None
        assert w.charges() == 1

    run(case)


# -- recover ----------------------------------------------------------------------------------------


def test_recover_resumes_a_saga_its_process_left_and_never_charges_twice() -> None:
    async def case(w: World) -> None:
        # The write after the charge never lands: the saga stops, PENDING, with nothing in its log.
        order = await w.place(("W", 2))
        assert (order["status"], order["saga"]) == ("PENDING", [])
        assert w.charges() == 1 and order["id"] in w.payments.payments

        await w.settled()  # the process has let go of the stopped saga's lease
        assert await w.service.recover() == 1
        await w.settled()
        recovered = await w.service.get(order["id"])
        assert recovered is not None and recovered["status"] == "PLACED"
        assert w.charges() == 1  # found, not charged again
        assert w.inventory.reserved == {order["id"]: [("W", 2)]} and w.inventory.stock["W"].available == 3
        assert recovered["payment_id"] == w.payments.payments[order["id"]].id

    run(case, crash=True)


class LostOrders(MemoryOrders):
    """The database goes away: ``create`` stores the order, and its answer is lost (the commit's
    outcome unknown to the caller); ``let_go`` fails."""

    def __init__(self, catalog: FakeCatalog) -> None:
        super().__init__(catalog)
        self.reachable = True

    async def create(self, **order: Any) -> bool:
        created = await super().create(**order)
        if not self.reachable:
            raise ConnectionError("connection was closed in the middle of operation")
        return created

    async def let_go(self, order_id: str, owner: str) -> None:
        if not self.reachable:
            raise ConnectionError("connection refused")
        await super().let_go(order_id, owner)


def test_a_stopped_saga_whose_lease_could_not_be_let_go_at_first_is_let_go_and_recovered() -> None:
    """The saga's write failed, and so did letting go of its lease, at first: the process lets go of
    it once the store answers (it renews only the leases of the sagas it drives), and recovery takes
    the saga up."""

    async def case(w: World) -> None:
        lost = LostOrders(w.catalog)
        lost.rows, lost.logs = w.orders.rows, w.orders.logs
        w.orders.let_go = lost.let_go  # type: ignore[method-assign]
        lost.reachable = False
        order = await w.place(("W", 2))
        assert (order["status"], order["saga"]) == ("PENDING", [])
        assert order["id"] in w.service.releasing
        # Its lease lapsed meanwhile: recovery does not take it up while the process is still letting
        # it go (the late let go would free the lease of a saga driven again, for another to claim).
        w.orders.rows[order["id"]]["lease_until"] = utc_after(-1)
        assert await w.service.recover() == 0
        lost.reachable = True
        await asyncio.gather(*w.service.releasing.values())  # the lease let go once the store answers
        # As each recovery pass does first: only the sagas the process drives are renewed.
        await w.orders.renew(w.service.owner, utc_after(60), list(w.service.running))
        assert await w.service.recover() == 1
        await w.settled()
        recovered = await w.service.get(order["id"])
        assert recovered is not None and recovered["status"] == "PLACED"
        assert w.charges() == 1

    run(case, crash=True)


def test_an_order_stored_though_its_creation_failed_is_let_go_and_driven_by_recovery() -> None:
    """The order's row was committed but the answer lost: the request failed, and the row holds this
    process's lease on a running saga that nothing drives, until the process lets go of it."""

    async def case(w: World) -> None:
        lost = LostOrders(w.catalog)
        lost.rows, lost.logs, lost.watched = w.orders.rows, w.orders.logs, w.orders.watched  # one store
        w.service.orders = lost
        lost.reachable = False
        with pytest.raises(ConnectionError):
            await w.place(("W", 1), key="k1")
        (order_id,) = lost.rows
        assert lost.rows[order_id]["lease_owner"] == w.service.owner
        lost.reachable = True
        await asyncio.gather(*w.service.releasing.values())
        await lost.renew(w.service.owner, utc_after(60), list(w.service.running))
        assert await w.service.recover() == 1
        await w.settled()
        again = await w.place(("W", 1), key="k1")  # the customer's retry with its key
        assert (again["id"], again["status"]) == (order_id, "PLACED")
        assert w.charges() == 1

    run(case)


def test_recover_leaves_a_saga_another_live_process_holds() -> None:
    async def case(w: World) -> None:
        held = await w.orders.create(
            order_id="ord_theirs", idempotency_key=None, request_hash="h", customer_id="c1",
            payment_method="pm_card_visa", lines=[("W", 1)], owner="other:8000/1:aa", lease_until=utc_after(60),
        )  # fmt: skip
        assert held
        assert await w.service.recover() == 0
        assert w.payments.calls == [] and w.inventory.calls == []

    run(case)


def test_a_recovery_pass_that_meets_a_cancel_under_way_leaves_it_to_the_cancel() -> None:
    """The order was placed on fallback data: its reconcile saga waits, its lease free. A recovery
    pass listed it, and reaches it while the cancel has begun its saga (the lease now this
    process's): it must not drive the cancel saga a second time."""

    async def case(w: World) -> None:
        order = await w.place(("W", 2))
        await w.settled()
        row = w.orders.rows[order["id"]]
        row.update(saga_name="reconcile", saga_status="waiting", lease_owner=None, lease_until=None)
        begin = w.orders.begin
        resumed: list[bool] = []

        async def begin_then_recovery(*args: Any, **kwargs: Any) -> bool:
            begun = await begin(*args, **kwargs)
            resumed.append(await w.service._resume(order["id"], ("running", "waiting")))
            return begun

        w.orders.begin = begin_then_recovery  # type: ignore[method-assign]
        cancelled = await w.service.cancel(order["id"])
        await w.settled()
        assert resumed == [False]
        assert cancelled is not None and cancelled["status"] == "CANCELLED"
        assert w.payments.calls.count("refund") == 1

    run(case)


def test_the_saga_cap_holds_under_a_burst() -> None:
    """35 orders at once against a cap of 3, PaymentService not answering: 3 sagas start, 32 orders
    are refused (503 at the edge), though each waits on the store between the check and the start."""

    async def case(w: World) -> None:
        w.service.max_in_flight = 3
        create, charge = w.orders.create, w.payments.charge
        answer = asyncio.Event()

        async def slow_create(**order: Any) -> bool:
            await asyncio.sleep(0)  # a store is a round trip: other requests run meanwhile
            return await create(**order)

        async def paused_charge(*args: Any) -> Any:
            await answer.wait()
            return await charge(*args)

        w.orders.create = slow_create  # type: ignore[method-assign]
        w.payments.charge = paused_charge  # type: ignore[method-assign,assignment]
        request = PlaceOrder("c1", "pm_card_visa", [("W", 1)])
        outcomes = await asyncio.gather(
            *(w.service.place(request, None, wait=False) for _ in range(35)), return_exceptions=True
        )
        assert sum(isinstance(o, Overloaded) for o in outcomes) == 32, outcomes
        assert len(w.service.running) == 3 and w.service._starting == 0
        answer.set()
        await w.settled()
        assert w.charges() == 3
        # The slots are back: the next order is taken.
        order, _ = await w.service.place(request, None)
        assert order["status"] == "PLACED"

    run(case)
