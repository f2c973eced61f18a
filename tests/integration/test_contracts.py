"""The fakes of tests/fakes.py held to the real things: the same cases run against each fake and
against its real implementation on SQLite and on PostgreSQL, and hypothesis runs any sequence of
calls against a fake and the real one side by side, answer for answer.

- ``FakeInventory``: ``InventoryClient``, calling InventoryService (its app, in this process, on
  its own database) as OrderService does.
- ``FakePayments``: ``PaymentClient``, calling PaymentService the same way.
- ``FakeCatalog``: ``SqlCatalog``, on OrderService's database.
- ``MemoryLog``: ``OrderRepository`` as the saga log (behind ``OrderLog``), read back as the
  order's saga rows.
- ``MemoryOrders``: ``OrderRepository`` as the order store, with ``FakeCatalog`` as the catalog it
  shares a database with.

The real services are reached over ASGI instead of a socket: what is held to the fake is what the
service answers and how the client reads it; the transport's failures are the fakes' injected
errors, tested with the clients on their own (tests/unit/test_clients.py).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import FakeCatalog, FakeInventory, FakePayments, MemoryLog, MemoryOrders
from oms.auth.keys import load_key
from oms.auth.tokens import SERVICE_SUBJECT, admin_token, mint
from oms.config import Settings
from oms.db import Database, IntegrityError, open_database
from oms.orders.clients import Downstream, InventoryClient, PaymentClient
from oms.orders.ports import ORDERS as ORDER_PAGES
from oms.orders.ports import (
    CatalogPort,
    InventoryPort,
    Item,
    NoAnswer,
    OrderStore,
    Payment,
    PaymentPort,
    Refused,
)
from oms.orders.repository import OrderRepository, SqlCatalog
from oms.orders.saga import OrderContext, OrderStatus, order_state
from oms.orders.saga_log import OrderLog
from oms.orders.schema import metadata as orders_metadata
from oms.resilience.breaker import BreakerConfig, CircuitBreaker
from oms.saga.engine import Kind, LogEntry, SagaEnd, SagaLog, SagaStatus
from oms.saga.policies import WaitingPolicy
from oms.serve import create_app
from oms.utc import utc_after, utc_now

T = TypeVar("T")
P = TypeVar("P")

BACKENDS = ["fake", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
REAL = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# -- the real services, in this process ------------------------------------------------------------


class InProcess(Downstream):
    """A downstream reached over ASGI: the client's requests go to the service's app as they are."""

    def __init__(self, name: str, http: httpx.AsyncClient) -> None:
        super().__init__(name, "http://in-process", timeout=10.0, breaker=CircuitBreaker(name, BreakerConfig()))
        self.client = http

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        answer = await self.client.request(
            method,
            path,
            content=orjson.dumps(body) if body is not None else None,
            headers={"content-type": "application/json"},
        )
        if answer.status_code >= 500:
            raise NoAnswer(self.name, f"http_{answer.status_code}", answer.text)
        return answer.status_code, (orjson.loads(answer.content) if answer.content else None)


@asynccontextmanager
async def service(name: str, url: str, directory: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The service's app on the database at ``url``, started as a server starts it (migrations
    included): an HTTP client with OrderService's token, and an admin's headers."""
    settings = Settings.model_validate(
        {"database_url": url, "data_dir": directory, "audit_log": "off", "gc_threshold": 0}
    )
    gate = create_app(name, settings)
    app = gate.app.app  # the Gate, in front of Front, in front of FastAPI
    async with app.router.lifespan_context(app):
        key = load_key(settings.key_file())
        token = mint(key, sub=SERVICE_SUBJECT, scope="service", ttl=3600)
        transport = httpx.ASGITransport(app=gate)
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}", headers=headers) as http:
            yield http, {"authorization": f"Bearer {admin_token(key)}"}
        await settled(app.state.db)


async def settled(db: Database) -> None:
    """Wait for SQLite's group commit in flight, if any, before the database is closed: a
    transaction that raised (a refused reservation) answers before its batch is committed, and
    ``close`` does not wait for that commit (closing the connection under it crashes the process)."""
    async with db.transaction():
        pass


@dataclass
class Inventory:
    port: InventoryPort
    put: Callable[[Item], Awaitable[None]]
    """Create or replace an item in the catalog (PUT /items/{sku})."""


@asynccontextmanager
async def inventory_of(url: str | None, directory: Path) -> AsyncIterator[Inventory]:
    if url is None:
        fake = FakeInventory()

        async def put_fake(item: Item) -> None:
            fake.put(item)

        yield Inventory(fake, put_fake)
        return
    async with service("inventory", url, directory) as (http, admin):

        async def put(item: Item) -> None:
            body = {"name": item.name, "unit_price": item.unit_price, "currency": item.currency}
            answer = await http.put(f"/items/{item.sku}", json={**body, "available": item.available}, headers=admin)
            assert answer.status_code in (200, 201), answer.text

        yield Inventory(InventoryClient(InProcess("inventory", http)), put)


@asynccontextmanager
async def payments_of(url: str | None, directory: Path) -> AsyncIterator[PaymentPort]:
    if url is None:
        yield FakePayments()
        return
    async with service("payment", url, directory) as (http, _):
        yield PaymentClient(InProcess("payment", http))


@dataclass
class Catalog:
    port: CatalogPort
    remember: Callable[[list[Item]], Awaitable[None]]
    """Take items as last known (the catalog's sync from InventoryService)."""


@asynccontextmanager
async def catalog_of(url: str | None) -> AsyncIterator[Catalog]:
    if url is None:
        fake = FakeCatalog()

        async def remember(items: list[Item]) -> None:
            await fake.remember(items)

        yield Catalog(fake, remember)
        return
    db = await open_database(url, orders_metadata)
    try:
        catalog = SqlCatalog(db)
        yield Catalog(catalog, catalog.remember)
    finally:
        await settled(db)
        await db.close()


Row = tuple[str, str, str, str, str | None, int]
"""A saga log row as read back: (saga, kind, name, outcome, reason, attempt)."""


@dataclass
class Log:
    port: SagaLog[Any]
    begin: Callable[[str], Awaitable[None]]
    """Store an order, so its saga has somewhere to be written."""
    read: Callable[[str], Awaitable[tuple[list[Row], str]]]
    """The order's saga rows, and its saga status."""


@dataclass
class Orders:
    port: OrderStore
    catalog: CatalogPort
    """The fallback catalog in the store's database, where its saga writes put the stock they learnt."""


@asynccontextmanager
async def orders_of(url: str | None) -> AsyncIterator[Orders]:
    if url is None:
        catalog = FakeCatalog()
        yield Orders(MemoryOrders(catalog, waiting=WaitingPolicy(10, 25)), catalog)
        return
    db: Database = await open_database(url, orders_metadata)
    try:
        yield Orders(OrderRepository(db, waiting=WaitingPolicy(10, 25)), SqlCatalog(db))
    finally:
        await settled(db)
        await db.close()


@asynccontextmanager
async def log_of(url: str | None) -> AsyncIterator[Log]:
    if url is None:
        fake = MemoryLog()

        async def nothing(order_id: str) -> None:
            return None

        async def read_fake(order_id: str) -> tuple[list[Row], str]:
            rows = fake.rows.get(order_id, [])
            status = fake.status.get(order_id, "running")
            return [(s, e.kind, e.name, e.outcome, e.reason, e.attempt) for s, e in rows], status

        yield Log(fake, nothing, read_fake)
        return
    db: Database = await open_database(url, orders_metadata)
    try:
        repository = OrderRepository(db)

        async def begin(order_id: str) -> None:
            await repository.create(
                order_id=order_id, idempotency_key=None, request_hash="h", customer_id="c",
                payment_method="pm_card_visa", lines=[("W", 1)],
            )  # fmt: skip

        async def read(order_id: str) -> tuple[list[Row], str]:
            order = await repository.get(order_id)
            assert order is not None
            rows = [(r["saga"], r["kind"], r["name"], r["outcome"], r["reason"], r["attempt"]) for r in order["saga"]]
            return rows, str(order["saga_status"])

        yield Log(OrderLog(repository), begin, read)
    finally:
        await settled(db)
        await db.close()


class Where(Generic[P]):
    """Runs a contract case against one implementation: ``where.run(case)``."""

    def __init__(self, backend: str, url: str | None, opened: Callable[[str | None], Any]) -> None:
        self.backend = backend
        self.url = url
        self.opened = opened

    def run(self, case: Callable[[P], Awaitable[T]]) -> T:
        async def main() -> T:
            async with self.opened(self.url) as port:
                return await case(port)

        return asyncio.run(main())


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, new_database: Callable[[str], str]) -> str | None:
    """None for the fake; else an empty database's URL."""
    return None if request.param == "fake" else new_database(request.param)


@pytest.fixture
def inventory(url: str | None, tmp_path: Path) -> Where[Inventory]:
    return Where("inventory", url, lambda u: inventory_of(u, tmp_path))


@pytest.fixture
def payments(url: str | None, tmp_path: Path) -> Where[PaymentPort]:
    return Where("payments", url, lambda u: payments_of(u, tmp_path))


@pytest.fixture
def catalog(url: str | None) -> Where[Catalog]:
    return Where("catalog", url, catalog_of)


@pytest.fixture
def log(url: str | None) -> Where[Log]:
    return Where("log", url, log_of)


@pytest.fixture
def orders(url: str | None) -> Where[Orders]:
    return Where("orders", url, orders_of)


def refusal(call: Awaitable[Any]) -> Awaitable[tuple[int, str]]:
    async def refused() -> tuple[int, str]:
        with pytest.raises(Refused) as raised:
            await call
        return raised.value.status, raised.value.code

    return refused()


def item(sku: str, available: int, unit_price: int = 250) -> Item:
    return Item(sku, f"Item {sku}", unit_price, "USD", available)


# -- InventoryPort: FakeInventory and InventoryService ----------------------------------------------


def test_inventory_reserve_takes_the_stock_once_however_often_it_is_asked(inventory: Where[Inventory]) -> None:
    async def case(i: Inventory) -> None:
        await i.put(item("A", 10))
        await i.put(item("B", 3))
        assert await i.port.reserve("o1", [("B", 3), ("A", 4)]) == [item("A", 6), item("B", 0)]
        assert await i.port.reserve("o1", [("A", 4), ("B", 3)]) == [item("A", 6), item("B", 0)]
        assert await i.port.reservation("o1") == "RESERVED"
        assert await i.port.get_item("A") == item("A", 6)

    inventory.run(case)


def test_inventory_reserve_beyond_the_stock_is_refused_and_holds_nothing(inventory: Where[Inventory]) -> None:
    async def case(i: Inventory) -> None:
        await i.put(item("A", 10))
        await i.put(item("B", 3))
        with pytest.raises(Refused) as raised:
            await i.port.reserve("o1", [("A", 2), ("B", 4)])
        assert (raised.value.status, raised.value.code) == (409, "out-of-stock")
        assert raised.value.body["shortages"] == [{"sku": "B", "requested": 4, "available": 3}]
        assert (await i.port.check([("A", 1), ("B", 1)])).items == [item("A", 10), item("B", 3)]
        assert await i.port.reservation("o1") is None

    inventory.run(case)


def test_inventory_unknown_skus_are_refused(inventory: Where[Inventory]) -> None:
    async def case(i: Inventory) -> None:
        await i.put(item("A", 10))
        with pytest.raises(Refused) as raised:
            await i.port.reserve("o1", [("A", 1), ("NOPE", 1)])
        assert (raised.value.status, raised.value.code, raised.value.body["skus"]) == (422, "unknown-sku", ["NOPE"])
        assert (await i.port.get_item("A"), await i.port.get_item("NOPE")) == (item("A", 10), None)

    inventory.run(case)


def test_inventory_an_order_holds_one_reservation(inventory: Where[Inventory]) -> None:
    async def case(i: Inventory) -> None:
        await i.put(item("A", 10))
        await i.port.reserve("o1", [("A", 2)])
        assert await refusal(i.port.reserve("o1", [("A", 3)])) == (409, "reservation-mismatch")
        assert await i.port.get_item("A") == item("A", 8)

    inventory.run(case)


def test_inventory_release_gives_the_units_back_once(inventory: Where[Inventory]) -> None:
    async def case(i: Inventory) -> None:
        await i.put(item("A", 10))
        await i.port.reserve("o1", [("A", 4)])
        await i.port.release("o1")
        await i.port.release("o1")
        assert await i.port.get_item("A") == item("A", 10)
        assert await i.port.reservation("o1") == "RELEASED"
        assert await refusal(i.port.reserve("o1", [("A", 4)])) == (409, "reservation-released")
        assert await i.port.get_item("A") == item("A", 10)

    inventory.run(case)


def test_inventory_a_release_before_the_reservation_refuses_it(inventory: Where[Inventory]) -> None:
    async def case(i: Inventory) -> None:
        await i.put(item("A", 10))
        await i.port.release("o1")
        assert await i.port.reservation("o1") == "RELEASED"
        assert await refusal(i.port.reserve("o1", [("A", 1)])) == (409, "reservation-released")
        assert await i.port.get_item("A") == item("A", 10)

    inventory.run(case)


def test_inventory_check_answers_the_stock_and_the_unknown(inventory: Where[Inventory]) -> None:
    async def case(i: Inventory) -> None:
        await i.put(item("B", 1))
        await i.put(item("A", 5, unit_price=999))
        answer = await i.port.check([("B", 3), ("X", 1), ("A", 1)])
        assert (answer.items, answer.unknown) == ([item("B", 1), item("A", 5, 999)], ["X"])
        await i.put(item("A", 7, unit_price=100))  # replaced: the new stock and price
        assert (await i.port.check([("A", 1)])).items == [item("A", 7, 100)]

    inventory.run(case)


def test_inventory_items_are_listed_by_sku_page_after_page(inventory: Where[Inventory]) -> None:
    async def case(i: Inventory) -> None:
        for sku in ["C", "A", "E", "B", "D"]:
            await i.put(item(sku, 1))
        pages, cursor = [], None
        while True:
            page, cursor = await i.port.list_items(cursor, limit=2)
            pages.append([it.sku for it in page])
            if cursor is None:
                break
        assert pages == [["A", "B"], ["C", "D"], ["E"]]

    inventory.run(case)


# -- PaymentPort: FakePayments and PaymentService ----------------------------------------------------


def test_payments_a_charge_is_made_once_and_found(payments: Where[PaymentPort]) -> None:
    async def case(p: PaymentPort) -> None:
        first = await p.charge("o1", 500, "USD", "pm_card_visa")
        assert (first.status, first.decline_code, first.amount, first.currency) == ("SUCCEEDED", None, 500, "USD")
        assert await p.charge("o1", 500, "USD", "pm_card_visa") == first
        assert await p.charge("o1", 500, "USD", "pm_card_chargeDeclined") == first  # the first charge stands
        assert await p.find("o1") == first
        assert await p.find("o2") is None

    payments.run(case)


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("pm_card_chargeDeclined", "card_declined"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_bogus", "invalid_payment_method"),
    ],
)
def test_payments_declines_by_payment_method(payments: Where[PaymentPort], method: str, code: str) -> None:
    async def case(p: PaymentPort) -> None:
        declined = await p.charge("o1", 500, "USD", method)
        assert (declined.status, declined.decline_code) == ("DECLINED", code)
        assert await p.find("o1") == declined
        assert await refusal(p.refund("o1")) == (409, "not-refundable")

    payments.run(case)


def test_payments_another_amount_for_a_charged_order_is_refused(payments: Where[PaymentPort]) -> None:
    async def case(p: PaymentPort) -> None:
        first = await p.charge("o1", 500, "USD", "pm_card_visa")
        assert await refusal(p.charge("o1", 501, "USD", "pm_card_visa")) == (409, "charge-mismatch")
        assert await refusal(p.charge("o1", 500, "EUR", "pm_card_visa")) == (409, "charge-mismatch")
        assert await p.find("o1") == first

    payments.run(case)


def test_payments_a_void_before_the_charge_stops_it_for_good(payments: Where[PaymentPort]) -> None:
    async def case(p: PaymentPort) -> None:
        assert await p.void("o1") is None
        assert await p.void("o1") is None
        assert await refusal(p.charge("o1", 500, "USD", "pm_card_visa")) == (409, "order-voided")
        assert await p.find("o1") is None
        assert await refusal(p.refund("o1")) == (404, "about:blank")

    payments.run(case)


def test_payments_a_void_after_the_charge_answers_it(payments: Where[PaymentPort]) -> None:
    async def case(p: PaymentPort) -> None:
        charged = await p.charge("o1", 500, "USD", "pm_card_visa")
        assert await p.void("o1") == charged
        assert await p.find("o1") == charged

    payments.run(case)


def test_payments_refund_once_and_for_good(payments: Where[PaymentPort]) -> None:
    async def case(p: PaymentPort) -> None:
        assert await refusal(p.refund("o1")) == (404, "about:blank")
        charged = await p.charge("o1", 500, "USD", "pm_card_visa")
        refunded = await p.refund("o1")
        assert (refunded.id, refunded.status, refunded.amount) == (charged.id, "REFUNDED", 500)
        assert await p.refund("o1") == refunded
        assert await p.find("o1") == refunded
        assert await p.charge("o1", 500, "USD", "pm_card_visa") == refunded

    payments.run(case)


# -- CatalogPort: FakeCatalog and SqlCatalog -------------------------------------------------------


def test_catalog_holds_count_against_the_last_known_stock(catalog: Where[Catalog]) -> None:
    async def case(c: Catalog) -> None:
        await c.remember([item("A", 5), item("B", 2)])
        first = await c.port.hold("o1", [("A", 3), ("B", 1)])
        assert (first.items, first.missing, first.short) == ([item("A", 5), item("B", 2)], [], [])
        second = await c.port.hold("o2", [("A", 3)])
        assert (second.items, second.short) == ([item("A", 2)], ["A"])  # 3 of the 5 held by o1
        assert await c.port.held() == {"A": 3, "B": 1}
        assert await c.port.held(["B"]) == {"B": 1}
        assert await c.port.held([]) == {"A": 3, "B": 1}  # no SKUs: every SKU, as with None

    catalog.run(case)


def test_catalog_a_hold_is_made_once_per_order(catalog: Where[Catalog]) -> None:
    async def case(c: Catalog) -> None:
        await c.remember([item("A", 5)])
        await c.port.hold("o1", [("A", 3)])
        again = await c.port.hold("o1", [("A", 3)])
        assert (again.items, again.short) == ([item("A", 5)], [])  # what the order holds is its own
        assert await c.port.held() == {"A": 3}
        await c.port.hold("o1", [("A", 4)])  # already held: it stays as it was
        assert await c.port.held() == {"A": 3}

    catalog.run(case)


def test_catalog_missing_or_short_holds_nothing(catalog: Where[Catalog]) -> None:
    async def case(c: Catalog) -> None:
        await c.remember([item("A", 5)])
        missing = await c.port.hold("o1", [("A", 1), ("X", 1)])
        assert (missing.items, missing.missing, missing.short) == ([item("A", 5)], ["X"], [])
        short = await c.port.hold("o2", [("A", 6)])
        assert (short.missing, short.short) == ([], ["A"])
        assert await c.port.held() == {}

    catalog.run(case)


def test_catalog_unhold_gives_the_units_back_once(catalog: Where[Catalog]) -> None:
    async def case(c: Catalog) -> None:
        await c.remember([item("A", 5)])
        await c.port.hold("o1", [("A", 5)])
        await c.port.unhold("o1")
        await c.port.unhold("o1")
        assert await c.port.held() == {}
        assert (await c.port.hold("o2", [("A", 5)])).short == []
        await c.remember([item("A", 9)])  # a sync: the new stock, the holds still counted
        assert (await c.port.hold("o3", [("A", 5)])).short == ["A"]
        assert (await c.port.hold("o3", [("A", 4)])).items == [item("A", 4)]

    catalog.run(case)


# -- SagaLog: MemoryLog and OrderRepository --------------------------------------------------------

AT = datetime(2026, 1, 1, tzinfo=UTC)


def row(name: str, outcome: str, reason: str | None = None, *, kind: Kind = "step", attempt: int = 1) -> LogEntry:
    return LogEntry(kind, name, outcome, reason, {}, AT, AT, 1.0, attempt)


def test_log_rows_are_kept_in_the_order_written(log: Where[Log]) -> None:
    async def case(g: Log) -> tuple[list[Row], str]:
        await g.begin("o1")
        context = {"order_id": "o1"}
        await g.port.record("o1", row("check_inventory", "done"), context, None)
        running = await g.read("o1")
        assert running[1] == "running"
        await g.port.record("o1", row("process_payment", "failed", "card_declined"), context, None,
                            earlier=[row("reserve_inventory", "done")])  # fmt: skip
        end = SagaEnd(SagaStatus.COMPENSATED, "process_payment", "card_declined")
        await g.port.record("o1", row("release_inventory", "done", kind="compensation"), context, end)
        return await g.read("o1")

    assert log.run(case) == (
        [
            ("order", "step", "check_inventory", "done", None, 1),
            ("order", "step", "reserve_inventory", "done", None, 1),
            ("order", "step", "process_payment", "failed", "card_declined", 1),
            ("order", "compensation", "release_inventory", "done", None, 1),
        ],
        "compensated",
    )


def test_log_an_unknown_outcome_asked_again_is_counted_on_its_row(log: Where[Log]) -> None:
    async def case(g: Log) -> tuple[list[Row], str]:
        await g.begin("o1")
        context = {"order_id": "o1"}
        waiting = SagaEnd(SagaStatus.WAITING, "process_payment", "payment_outcome_unknown")
        await g.port.record("o1", row("check_inventory", "done"), context, None)
        for _ in range(3):
            await g.port.record("o1", row("process_payment", "unknown", "payment_outcome_unknown"), context, waiting)
        await g.port.record("o1", row("process_payment", "unknown", "timeout"), context, waiting)  # another reason
        await g.port.record("o1", row("process_payment", "done"), context, SagaEnd(SagaStatus.COMPLETED))
        return await g.read("o1")

    assert log.run(case) == (
        [
            ("order", "step", "check_inventory", "done", None, 1),
            ("order", "step", "process_payment", "unknown", "payment_outcome_unknown", 3),
            ("order", "step", "process_payment", "unknown", "timeout", 1),
            ("order", "step", "process_payment", "done", None, 1),
        ],
        "completed",
    )


def test_log_a_saga_asked_on_is_running_again(log: Where[Log]) -> None:
    async def case(g: Log) -> list[str]:
        await g.begin("o1")
        waiting = SagaEnd(SagaStatus.WAITING, "process_payment", "payment_outcome_unknown")
        await g.port.record("o1", row("process_payment", "unknown", "timeout"), {}, waiting)
        statuses = [(await g.read("o1"))[1]]
        await g.port.record("o1", row("process_payment", "done"), {}, None)
        return [*statuses, (await g.read("o1"))[1]]

    assert log.run(case) == ["waiting", "running"]


def test_log_the_same_question_in_another_saga_is_a_row_of_its_own(log: Where[Log]) -> None:
    async def case(g: Log) -> list[Row]:
        await g.begin("o1")
        await g.port.record("o1", row("refund", "unknown", "timeout"), {"saga": "reconcile"}, None)
        await g.port.record("o1", row("refund", "unknown", "timeout"), {"saga": "cancel"}, None)
        await g.port.record("o1", row("refund", "unknown", "timeout"), {"saga": "cancel"}, None)
        return (await g.read("o1"))[0]

    assert log.run(case) == [
        ("reconcile", "step", "refund", "unknown", "timeout", 1),
        ("cancel", "step", "refund", "unknown", "timeout", 2),
    ]


def test_log_a_compensation_keeps_its_attempt(log: Where[Log]) -> None:
    async def case(g: Log) -> list[Row]:
        await g.begin("o1")
        context = {"order_id": "o1", "saga": "cancel"}
        await g.port.record("o1", row("undo", "failed", "down", kind="compensation", attempt=1), context, None)
        await g.port.record("o1", row("undo", "done", kind="compensation", attempt=2), context, None)
        return (await g.read("o1"))[0]

    assert log.run(case) == [
        ("cancel", "compensation", "undo", "failed", "down", 1),
        ("cancel", "compensation", "undo", "done", None, 2),
    ]


# -- OrderStore: MemoryOrders and OrderRepository ---------------------------------------------------


async def new_order(o: Orders, order_id: str, key: str | None = None, **more: Any) -> bool:
    fields: dict[str, Any] = {
        "order_id": order_id, "idempotency_key": key, "request_hash": f"h-{order_id}", "customer_id": "c1",
        "payment_method": "pm_card_visa", "lines": [("A", 2)], **more,
    }  # fmt: skip
    return await o.port.create(**fields)


def order_context(order_id: str, saga: str = "order", **learnt: Any) -> OrderContext:
    context = {"saga": saga, "order_id": order_id, "lines": [("A", 2)], "payment_method": "pm_card_visa"}
    return cast(OrderContext, {**context, **learnt})


PRICED: dict[str, Any] = {
    "items": [{"sku": "A", "name": "Item A", "quantity": 2, "unit_price": 250, "amount": 500}],
    "total_amount": 500, "currency": "USD", "inventory_check": "live",
}  # fmt: skip

SHOWN = ("id", "status", "saga_status", "customer_id", "items", "total_amount", "currency", "inventory_check",
         "reservation", "payment_id", "failure_reason", "pending_reason")  # fmt: skip
"""What the contract compares of an order as shown (its times are the store's own)."""


def shown(order: dict[str, Any] | None) -> dict[str, Any] | None:
    if order is None:
        return None
    seen = {k: order[k] for k in SHOWN}
    if "saga" in order:
        seen["saga"] = [
            (r["saga"], r["kind"], r["name"], r["outcome"], r["reason"], r["attempt"]) for r in order["saga"]
        ]
    return seen


async def write(
    o: Orders, order_id: str, entry: LogEntry | None, context: OrderContext, end: SagaEnd | None, **kw: Any
) -> None:
    """A saga write as the engine makes it, through OrderLog."""
    await OrderLog(o.port).record(order_id, entry, context, end, **kw)


def test_orders_a_new_order_is_pending_and_unpriced(orders: Where[Orders]) -> None:
    async def case(o: Orders) -> tuple[Any, ...]:
        assert await new_order(o, "o1", watch=True)
        watched = shown(o.port.take_watched("o1"))
        return shown(await o.port.get("o1")), watched, o.port.take_watched("o1"), await o.port.get("nope")

    pending = {
        "id": "o1", "status": "PENDING", "saga_status": "running", "customer_id": "c1",
        "items": [{"sku": "A", "name": None, "quantity": 2, "unit_price": None, "amount": None}],
        "total_amount": None, "currency": None, "inventory_check": None, "reservation": "none",
        "payment_id": None, "failure_reason": None, "pending_reason": None, "saga": [],
    }  # fmt: skip
    assert orders.run(case) == (pending, pending, None, None)  # watched once: the second take finds none


def test_orders_an_idempotency_key_names_one_order_until_forgotten(orders: Where[Orders]) -> None:
    async def case(o: Orders) -> None:
        assert await new_order(o, "o1", "k1") is True
        assert await new_order(o, "o2", "k1") is False
        assert await o.port.get("o2") is None
        found = await o.port.by_key("k1")
        assert found is not None and (found["id"], found["request_hash"]) == ("o1", "h-o1")
        assert await o.port.by_key("k2") is None
        await o.port.forget_key("o1", "k1")
        assert await o.port.by_key("k1") is None
        assert await new_order(o, "o2", "k1") is True

    orders.run(case)


def test_orders_a_saga_write_stores_the_state_it_is_given(orders: Where[Orders]) -> None:
    async def case(o: Orders) -> tuple[Any, ...]:
        await new_order(o, "o1")
        learnt = [item("A", 7)]
        context = order_context("o1", **PRICED, reservation="held", catalog_update=learnt)
        context["payment_id"] = "p1"
        earlier = [row("check_inventory", "done")]
        await write(o, "o1", row("process_payment", "done"), context, SagaEnd(SagaStatus.COMPLETED), earlier=earlier)
        loaded = await o.port.load_saga("o1")
        assert loaded is not None
        return shown(await o.port.get("o1")), await o.catalog.prices(), loaded

    placed, prices, (context, logged) = orders.run(case)
    assert placed == {
        "id": "o1", "status": "PLACED", "saga_status": "completed", "customer_id": "c1", **PRICED,
        "reservation": "held", "payment_id": "p1", "failure_reason": None, "pending_reason": None,
        "saga": [
            ("order", "step", "check_inventory", "done", None, 1),
            ("order", "step", "process_payment", "done", None, 1),
        ],
    }  # fmt: skip
    assert prices == {"A": 250}  # the stock the write learnt, in the catalog
    assert context == {**order_context("o1", **PRICED, reservation="held"), "payment_id": "p1"}
    assert [(r.name, r.outcome) for r in logged] == [("check_inventory", "done"), ("process_payment", "done")]


def test_orders_an_order_placed_on_fallback_data_is_handed_to_reconcile(orders: Where[Orders]) -> None:
    async def case(o: Orders) -> tuple[Any, ...]:
        await new_order(o, "o1", owner="me", lease_until=utc_after(60))
        context = order_context("o1", **{**PRICED, "inventory_check": "fallback"}, reservation="deferred")
        await write(o, "o1", row("process_payment", "done"), context, SagaEnd(SagaStatus.COMPLETED))
        loaded = await o.port.load_saga("o1")
        assert loaded is not None
        order = shown(await o.port.get("o1", with_saga=False))
        assert order is not None
        return (
            order["status"],
            order["saga_status"],
            order["pending_reason"],
            await o.port.unfinished(now=utc_now()),
            loaded[0]["saga"],
            loaded[1],
        )

    assert orders.run(case) == ("PLACED", "waiting", "reservation_deferred", ["o1"], "reconcile", [])


def test_orders_an_unknown_outcome_waits_longer_each_time_it_is_asked(orders: Where[Orders]) -> None:
    async def case(o: Orders) -> tuple[Any, ...]:
        await new_order(o, "o1", owner="me", lease_until=utc_after(60))
        waiting = SagaEnd(SagaStatus.WAITING, "process_payment", "payment_outcome_unknown")
        free_after = []
        for _ in range(3):
            await write(o, "o1", row("process_payment", "unknown", "timeout"), order_context("o1"), waiting)
            # Not free 9 s on; free 10 s, 20 s, then 25 s (the most) after each try.
            free_after.append([s for s in (9, 11, 21, 26) if await o.port.unfinished(now=utc_after(s))][:1])
        order = shown(await o.port.get("o1"))
        return order, free_after

    order, free_after = orders.run(case)
    assert order is not None and (order["status"], order["saga_status"], order["pending_reason"]) == (
        "PENDING", "waiting", "payment_outcome_unknown",
    )  # fmt: skip
    assert order["saga"] == [("order", "step", "process_payment", "unknown", "timeout", 3)]
    assert free_after == [[11], [21], [26]]


def test_orders_leases_are_claimed_once_renewed_and_let_go(orders: Where[Orders]) -> None:
    async def case(o: Orders) -> list[Any]:
        seen: list[Any] = []
        await new_order(o, "live", owner="host:1/a", lease_until=utc_after(60))
        await new_order(o, "lapsed", owner="host:1/a", lease_until=utc_after(-1))
        await new_order(o, "free")
        await new_order(o, "over")
        await write(o, "over", None, order_context("over"), SagaEnd(SagaStatus.COMPLETED))
        seen.append(sorted(await o.port.unfinished(now=utc_now())))
        active = ("running", "waiting")
        claims = [
            await o.port.claim("lapsed", owner=who, until=utc_after(30), now=utc_now(), statuses=active)
            for who in ("b", "c", "b")
        ]
        seen.append(claims)  # taken by b; not by c; b's own again
        seen.append(await o.port.claim("over", owner="b", until=utc_after(30), now=utc_now(), statuses=active))
        await o.port.let_go("lapsed", "c")  # not c's
        seen.append(await o.port.unfinished(now=utc_now()))
        await o.port.let_go("lapsed", "b")
        seen.append(sorted(await o.port.unfinished(now=utc_now())))
        await o.port.renew("host:1/a", utc_after(120), ["live"])
        seen.append(sorted(await o.port.unfinished(now=utc_after(90))))  # live renewed past 90 s
        seen.append(await o.port.free_leases_of("host:1/"))
        seen.append(sorted(await o.port.unfinished(now=utc_now())))
        seen.append(await o.port.unfinished(now=utc_now(), skip=["order"]))
        return seen

    assert orders.run(case) == [
        ["free", "lapsed"],
        [True, False, True],
        False,
        ["free"],
        ["free", "lapsed"],
        ["free", "lapsed"],
        1,
        ["free", "lapsed", "live"],
        [],
    ]


def test_orders_a_saga_begins_only_on_an_order_of_the_status_asked_whose_saga_is_over(orders: Where[Orders]) -> None:
    async def case(o: Orders) -> list[Any]:
        await new_order(o, "placed")
        await new_order(o, "running")
        await write(o, "placed", None, order_context("placed", **PRICED), SagaEnd(SagaStatus.COMPLETED))
        later = utc_after(30)
        began = [
            await o.port.begin("running", "cancel", status="PLACED", owner="me", until=later, now=utc_now()),
            await o.port.begin("placed", "cancel", status="PENDING", owner="me", until=later, now=utc_now()),
            await o.port.begin("placed", "cancel", status="PLACED", owner="me", until=later, now=utc_now()),
            await o.port.begin("placed", "cancel", status="PLACED", owner="me", until=later, now=utc_now()),
        ]
        loaded = await o.port.load_saga("placed")
        assert loaded is not None
        return [began, loaded[0]["saga"], await o.port.unfinished(now=utc_after(60))]

    assert orders.run(case) == [[False, False, True, False], "cancel", ["placed", "running"]]


def test_orders_recent_pages_newest_first_by_status_and_customer(orders: Where[Orders]) -> None:
    async def case(o: Orders) -> list[Any]:
        for n in range(1, 5):
            await new_order(o, f"o{n}", customer_id="c2" if n == 3 else "c1")
            await asyncio.sleep(0.002)  # creation times apart, as orders placed one after another
        await write(o, "o2", None, order_context("o2", **PRICED), SagaEnd(SagaStatus.COMPLETED))

        def ids(page: Any) -> list[str]:
            return [order["id"] for order in page.items]

        first = await o.port.recent(status=None, limit=3)
        rest = await o.port.recent(status=None, limit=3, after=ORDER_PAGES.after(first.next))
        figures = await o.port.activity(since="2000-01-01T00:00:00")
        return [
            ids(first), ids(rest), rest.next,
            ids(await o.port.recent(status=None, limit=2, offset=1)),
            ids(await o.port.recent(status=OrderStatus.PLACED, limit=10)),
            ids(await o.port.recent(status=None, limit=10, customer_id="c2")),
            all("saga" not in order for order in first.items),
            sorted((r["status"], r["orders"]) for r in figures[2]),
            sum(r["orders"] for r in figures[0]),
        ]  # fmt: skip

    assert orders.run(case) == [
        ["o4", "o3", "o2"], ["o1"], None, ["o3", "o2"], ["o2"], ["o3"], True, [("PENDING", 3), ("PLACED", 1)], 4,
    ]  # fmt: skip


def test_orders_a_write_for_an_order_never_stored_is_refused(orders: Where[Orders]) -> None:
    async def case(o: Orders) -> None:
        with pytest.raises(IntegrityError):
            await write(o, "nope", row("check_inventory", "done"), order_context("nope"), None)
        assert await o.port.get("nope") is None

    orders.run(case)


def test_order_state_is_the_domains_not_the_stores() -> None:
    """What the store writes is decided before it: the same context and end, the same state."""
    deferred = order_context("o1", **PRICED, reservation="deferred")
    assert order_state(deferred, SagaEnd(SagaStatus.COMPLETED)).saga == "reconcile"
    assert order_state(deferred, None).saga == "order"


# -- any sequence of calls: the fake answers as the real one does ----------------------------------


class Session:
    """A real implementation opened once for a hypothesis test, on one event loop: each example
    runs on names of its own (``prefix``), so examples never see each other's state."""

    def __init__(self, opened: Any) -> None:
        self.runner = asyncio.Runner()
        self.stack = AsyncExitStack()
        self.real = self.runner.run(self.stack.enter_async_context(opened))
        self.examples = itertools.count()

    def run(self, case: Callable[[Any, str], Coroutine[Any, Any, T]]) -> T:
        return self.runner.run(case(self.real, f"x{next(self.examples)}-"))

    def close(self) -> None:
        self.runner.run(self.stack.aclose())
        self.runner.close()


@pytest.fixture
def real_url(request: pytest.FixtureRequest, new_database: Callable[[str], str]) -> str:
    return new_database(request.param)


def answer_of(value: Any, ids: dict[str, int]) -> Any:
    """An answer, with payment ids replaced by the order in which they first appeared."""
    if isinstance(value, Payment):
        return (ids.setdefault(value.id, len(ids)), value.status, value.decline_code, value.amount, value.currency)
    return value


async def answered(call: Awaitable[Any], ids: dict[str, int]) -> Any:
    try:
        return answer_of(await call, ids)
    except Refused as refused:
        extra = {k: refused.body[k] for k in ("skus", "shortages") if k in refused.body}
        return ("refused", refused.status, refused.code, extra)


SKUS = st.sampled_from(["A", "B", "C"])
STOCK = st.fixed_dictionaries({sku: st.integers(0, 8) for sku in "ABC"})
"""What each example starts with: its SKUs in stock (or last known), A, B and C."""
ORDERS = st.sampled_from(["o1", "o2", "o3"])
LINES = st.dictionaries(st.one_of(SKUS, SKUS, SKUS, st.just("D")), st.integers(1, 6), min_size=1, max_size=3)
"""An order's lines: now and then an unknown SKU (D)."""
INVENTORY_CALLS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), SKUS, st.integers(0, 8)),
        st.tuples(st.just("reserve"), ORDERS, LINES),
        st.tuples(st.just("reserve"), ORDERS, LINES),
        st.tuples(st.just("release"), ORDERS),
        st.tuples(st.just("check"), LINES),
        st.tuples(st.just("reservation"), ORDERS),
        st.tuples(st.just("item"), SKUS),
    ),
    max_size=12,
)


@pytest.mark.parametrize("real_url", REAL, indirect=True)
def test_any_inventory_calls_get_the_fakes_answers(real_url: str, tmp_path: Path) -> None:
    session = Session(inventory_of(real_url, tmp_path))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(stock=STOCK, calls=INVENTORY_CALLS)
    def example(stock: dict[str, int], calls: list[tuple[Any, ...]]) -> None:
        async def case(real: Inventory, x: str) -> None:
            fake = FakeInventory()
            answers: dict[str, list[Any]] = {"fake": [], "real": []}
            for call in [*(("put", sku, n) for sku, n in stock.items()), *calls]:
                for name, port, put in (("fake", fake, _put_on(fake)), ("real", real.port, real.put)):
                    answers[name].append(await _inventory_call(port, put, call, x))
            assert answers["fake"] == answers["real"], calls

        session.run(case)

    try:
        example()
    finally:
        session.close()


def _put_on(fake: FakeInventory) -> Callable[[Item], Awaitable[None]]:
    async def put(item: Item) -> None:
        fake.put(item)

    return put


async def _inventory_call(
    port: InventoryPort, put: Callable[[Item], Awaitable[None]], call: tuple[Any, ...], x: str
) -> Any:
    """One call, on SKUs and orders named for the example (``x``), and its answer with them unnamed."""

    def lines(chosen: dict[str, int]) -> list[tuple[str, int]]:
        return [(x + sku, q) for sku, q in chosen.items()]

    def unnamed(value: Any) -> Any:
        if isinstance(value, Item):
            return (value.sku.removeprefix(x), value.unit_price, value.available)
        if isinstance(value, list | tuple):
            return [unnamed(v) for v in value]
        if isinstance(value, dict):
            return {k: unnamed(v) for k, v in value.items()}
        if isinstance(value, str):
            return value.removeprefix(x)
        return value

    match call:
        case ("put", sku, available):
            await put(item(x + sku, available))
            return None
        case ("reserve", order, chosen):
            return unnamed(await answered(port.reserve(x + order, lines(chosen)), {}))
        case ("release", order):
            return await port.release(x + order)
        case ("check", chosen):
            answer = await port.check(lines(chosen))
            return unnamed((answer.items, answer.unknown))
        case ("reservation", order):
            return await port.reservation(x + order)
        case ("item", sku):
            return unnamed(await port.get_item(x + sku))
    raise AssertionError(call)


METHODS = st.sampled_from(["pm_card_visa", "pm_card_chargeDeclined", "pm_card_bogus"])
PAYMENT_CALLS = st.lists(
    st.one_of(
        st.tuples(st.just("charge"), ORDERS, st.sampled_from([500, 700]), st.sampled_from(["USD", "EUR"]), METHODS),
        st.tuples(st.sampled_from(["find", "void", "refund"]), ORDERS),
    ),
    max_size=12,
)


@pytest.mark.parametrize("real_url", REAL, indirect=True)
def test_any_payment_calls_get_the_fakes_answers(real_url: str, tmp_path: Path) -> None:
    session = Session(payments_of(real_url, tmp_path))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(calls=PAYMENT_CALLS)
    def example(calls: list[tuple[Any, ...]]) -> None:
        async def case(real: PaymentPort, x: str) -> None:
            fake = FakePayments()
            answers: dict[str, list[Any]] = {"fake": [], "real": []}
            ids: dict[str, dict[str, int]] = {"fake": {}, "real": {}}
            for call in calls:
                for name, port in (("fake", fake), ("real", real)):
                    made: Awaitable[Any]
                    match call:
                        case ("charge", order, amount, currency, method):
                            made = port.charge(x + order, amount, currency, method)
                        case ("find", order):
                            made = port.find(x + order)
                        case ("void", order):
                            made = port.void(x + order)
                        case ("refund", order):
                            made = port.refund(x + order)
                    answers[name].append(await answered(made, ids[name]))
            assert answers["fake"] == answers["real"], calls

        session.run(case)

    try:
        example()
    finally:
        session.close()


CATALOG_CALLS = st.lists(
    st.one_of(
        st.tuples(st.just("remember"), SKUS, st.integers(0, 8)),
        st.tuples(st.just("hold"), ORDERS, LINES),
        st.tuples(st.just("hold"), ORDERS, LINES),
        st.tuples(st.just("unhold"), ORDERS),
        st.tuples(st.just("held"), st.lists(SKUS, max_size=2)),
    ),
    max_size=12,
)


@pytest.mark.parametrize("real_url", REAL, indirect=True)
def test_any_catalog_calls_get_the_fakes_answers(real_url: str) -> None:
    session = Session(catalog_of(real_url))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(stock=STOCK, calls=CATALOG_CALLS)
    def example(stock: dict[str, int], calls: list[tuple[Any, ...]]) -> None:
        async def case(real: Catalog, x: str) -> None:
            fake = FakeCatalog()
            answers: dict[str, list[Any]] = {"fake": [], "real": []}
            for call in [*(("remember", sku, n) for sku, n in stock.items()), *calls]:
                for name, port, remember in (("fake", fake, _remember_on(fake)), ("real", real.port, real.remember)):
                    answers[name].append(await _catalog_call(port, remember, call, x))
            assert answers["fake"] == answers["real"], calls

        session.run(case)

    try:
        example()
    finally:
        session.close()


def _remember_on(fake: FakeCatalog) -> Callable[[list[Item]], Awaitable[None]]:
    async def remember(items: list[Item]) -> None:
        await fake.remember(items)

    return remember


async def _catalog_call(
    port: CatalogPort, remember: Callable[[list[Item]], Awaitable[None]], call: tuple[Any, ...], x: str
) -> Any:
    match call:
        case ("remember", sku, available):
            await remember([item(x + sku, available)])
            return None
        case ("hold", order, chosen):
            answer = await port.hold(x + order, [(x + sku, q) for sku, q in chosen.items()])
            items = [(i.sku.removeprefix(x), i.available) for i in answer.items]
            return items, [s.removeprefix(x) for s in answer.missing], [s.removeprefix(x) for s in answer.short]
        case ("unhold", order):
            return await port.unhold(x + order)
        case ("held", skus):
            # Only this example's SKUs: the real catalog holds every example's.
            held = await port.held([x + sku for sku in skus] or [x + sku for sku in "ABCD"])
            return {sku.removeprefix(x): q for sku, q in held.items()}
    raise AssertionError(call)


ENTRIES = st.builds(
    row,
    st.sampled_from(["a", "b"]),
    st.sampled_from(["done", "failed", "unknown", "unknown"]),
    st.sampled_from([None, "r1", "r2"]),
    kind=st.sampled_from(["step", "compensation"]),
    attempt=st.integers(1, 3),
)
ENDS = st.sampled_from(
    [None, None, SagaEnd(SagaStatus.WAITING, "a", "r1"), SagaEnd(SagaStatus.COMPLETED), SagaEnd(SagaStatus.COMPENSATED)]
)
LOG_CALLS = st.lists(
    st.tuples(
        st.sampled_from(["o1", "o2"]),
        st.sampled_from(["order", "order", "reconcile"]),
        st.one_of(st.none(), ENTRIES, ENTRIES, ENTRIES),
        st.lists(ENTRIES, max_size=2),
        ENDS,
    ),
    max_size=10,
)


@pytest.mark.parametrize("real_url", REAL, indirect=True)
def test_any_log_writes_read_back_as_the_fakes(real_url: str) -> None:
    session = Session(log_of(real_url))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(calls=LOG_CALLS)
    def example(calls: list[tuple[str, str, LogEntry | None, list[LogEntry], SagaEnd | None]]) -> None:
        async def case(real: Log, x: str) -> None:
            fake = MemoryLog()
            orders = [x + "o1", x + "o2"]
            for order in orders:
                await real.begin(order)
            for order, saga, entry, earlier, end in calls:
                for port in (fake, real.port):
                    await port.record(x + order, entry, {"saga": saga}, end, earlier=earlier)
            for order in orders:
                rows = [(s, e.kind, e.name, e.outcome, e.reason, e.attempt) for s, e in fake.rows.get(order, [])]
                assert (rows, fake.status.get(order, "running")) == await real.read(order), calls

        session.run(case)

    try:
        example()
    finally:
        session.close()
