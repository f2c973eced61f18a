"""Upgrades keep everything (issue #16 item 6), on SQLite and PostgreSQL: a database built at each
earlier schema revision of each service, with the rows that revision's release wrote (orders placed
and in flight, their saga logs, fallback holds, idempotency keys as that release stored them,
reservations, payments), upgraded as a service's start upgrades it (``migrate``), answers as before
through today's code. And a release does not run on a database a newer release has upgraded."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import sqlalchemy as sa
from alembic import command

from fakes import FakeInventory, FakePayments
from oms import db
from oms.cli.supervisor import free_ports
from oms.db import Database
from oms.inventory import store as inventory_store
from oms.inventory.store import ReservationStatus
from oms.migrations import NewerDatabase, config, migrate
from oms.orders.api import scoped_key
from oms.orders.ports import Item
from oms.orders.repository import OrderRepository, SqlCatalog
from oms.orders.saga import order_sagas
from oms.orders.saga_log import OrderLog
from oms.orders.service import OrderService, PlaceOrder
from oms.payments import store as payment_store
from oms.saga.engine import SagaEngine
from oms.utc import utc_after, utc_now

T = TypeVar("T")

ORDER_REVISIONS = ["none", "0001", "0002", "0003", "0004"]
"""Every revision of the order service's schema before today's newest; ``none``: the tables of an
``oms`` from before migrations (29beb82: 0001's tables, without ``alembic_version``), adopted."""

RAW_KEY_REVISIONS = {"none", "0001", "0002"}
"""The revisions whose releases stored idempotency keys as the client sent them (up to c3be3a7);
the releases of 0003 and 0004 stored ``scoped_key`` digests, and left the older rows raw."""

ALPHA = Item("A", "Alpha", 500, "USD", 10)
BETA = Item("B", "Beta", 250, "USD", 10)


def fingerprint(customer_id: str, payment_method: str, lines: list[tuple[str, int]]) -> str:
    """A request's hash as every release so far stored it (``PlaceOrder.fingerprint``, written out)."""
    canonical = orjson.dumps({"customer_id": customer_id, "payment_method": payment_method, "lines": lines})
    return hashlib.sha256(canonical).hexdigest()


def run_sync(url: str, work: Callable[[sa.Connection], T]) -> T:
    result: T = asyncio.run(db.run_sync(url, work))
    return result


def insert(connection: sa.Connection, table: str, rows: Iterable[dict[str, Any]]) -> None:
    """Rows into ``table`` as it is at this revision (its columns read from the database)."""
    connection.execute(sa.Table(table, sa.MetaData(), autoload_with=connection).insert(), list(rows))


async def with_database(url: str, work: Callable[[Database], Awaitable[T]]) -> T:
    database = await db.connect(url)
    try:
        return await work(database)
    finally:
        await database.close()


# -- the order service ------------------------------------------------------------------------------


@dataclass
class Placed:
    """An order as its release stored it, and what a replay of its request sends today."""

    id: str
    customer_id: str
    key: str | None
    lines: list[tuple[str, int]]
    status: str
    saga_name: str
    saga_status: str
    reservation: str
    log: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    """(kind, name, outcome, reason) of its saga log rows."""
    payment_method: str = "pm_card_visa"
    stored_key: str | None = None
    """The key as the release stored it (the raw key, or its digest); None: as ``key``."""

    def request(self) -> PlaceOrder:
        return PlaceOrder(self.customer_id, self.payment_method, list(self.lines))


def order_row(order: Placed, **changes: Any) -> dict[str, Any]:
    now = utc_now()
    items: list[dict[str, Any]] = [
        {"sku": sku, "name": item.name, "quantity": quantity, "unit_price": item.unit_price,
         "amount": item.unit_price * quantity}
        for sku, quantity in order.lines
        for item in (ALPHA, BETA) if item.sku == sku
    ]  # fmt: skip
    row = {
        "id": order.id,
        "idempotency_key": order.stored_key if order.stored_key is not None else order.key,
        "request_hash": fingerprint(order.customer_id, order.payment_method, order.lines),
        "customer_id": order.customer_id,
        "payment_method": order.payment_method,
        "lines": orjson.dumps([list(line) for line in order.lines]).decode(),
        "items": orjson.dumps(items).decode(),
        "status": order.status,
        "saga_name": order.saga_name,
        "saga_status": order.saga_status,
        "inventory_check": "live",
        "reservation": order.reservation,
        "total_amount": sum(item["amount"] for item in items),
        "currency": "USD",
        "payment_id": None,
        "failure_reason": None,
        "pending_reason": None,
        "created_at": now,
        "updated_at": now,
        "lease_owner": None,
        "lease_until": None,
    }
    row.update(changes)
    return row


def log_rows(order: Placed) -> list[dict[str, Any]]:
    now = utc_now()
    return [
        {"order_id": order.id, "saga": "order", "kind": kind, "name": name, "outcome": outcome, "reason": reason,
         "detail": "{}", "attempt": 1, "started_at": now, "ended_at": now, "duration_ms": 1.5}
        for kind, name, outcome, reason in order.log
    ]  # fmt: skip


CHECKED = ("step", "check_inventory", "done", None)
RESERVED = ("step", "reserve_inventory", "done", None)
PAID = ("step", "process_payment", "done", None)


@dataclass
class OrderData:
    orders: list[Placed]
    replays: dict[tuple[str, str], str]
    """(customer, key) -> the order a replay of it answers."""
    in_flight: set[str]
    cleared: set[str]
    """Orders whose key names another order after the upgrade (a retry's second order took it)."""


def order_data(revision: str) -> OrderData:
    """The rows a database at ``revision`` holds: what its release wrote, and, at 0003 and 0004,
    what the release of 0002 (c3be3a7) wrote before it was upgraded."""
    raw = revision in RAW_KEY_REVISIONS
    # Written by a release storing raw keys (c3be3a7, or one of 0001), whatever the revision now.
    placed = Placed("ord_0000000000010000000000a1", "c1", "retry-me-1", [("A", 2)], "PLACED", "order",
                    "completed", "held", [CHECKED, RESERVED, PAID])  # fmt: skip
    running = Placed("ord_0000000000020000000000a2", "c1", "k running", [("A", 1), ("B", 3)], "PENDING", "order",
                     "running", "held", [CHECKED, RESERVED])  # fmt: skip
    deferred = Placed("ord_0000000000030000000000a3", "c2", None, [("A", 2)], "PLACED", "reconcile", "waiting",
                      "deferred", [("step", "check_inventory", "done", "fallback:unavailable"),
                                   ("step", "reserve_inventory", "skipped", "reservation_deferred"), PAID])  # fmt: skip
    first = Placed("ord_0000000000040000000000a4", "c1", "k-dup", [("B", 1)], "PLACED", "order", "completed", "held",
                   [CHECKED, RESERVED, PAID])  # fmt: skip
    # A client's key may look like a digest: 64 lowercase hex digits.
    hexlike = "0123456789abcdef" * 4
    waiting = Placed("ord_0000000000050000000000a5", "c2", hexlike if raw else "k-waiting", [("B", 2)], "PENDING",
                     "order", "waiting", "held",
                     [CHECKED, RESERVED, ("step", "process_payment", "unknown", "payment_timeout")])  # fmt: skip
    orders = [placed, running, deferred, first, waiting]
    replays = {(o.customer_id, o.key): o.id for o in orders if o.key is not None}
    cleared: set[str] = set()
    if not raw:
        # Written by the release of this revision: digests.
        waiting.stored_key = scoped_key(waiting.customer_id, "k-waiting")
        # The issue's case: a client retried a key of c3be3a7's after the upgrade to 0003/0004, which
        # had not converted it, and got a second order. The key names that one since.
        second = Placed("ord_0000000000060000000000a6", "c1", "k-dup", [("B", 1)], "PLACED", "order", "completed",
                        "held", [CHECKED, RESERVED, PAID], stored_key=scoped_key("c1", "k-dup"))  # fmt: skip
        orders.append(second)
        replays[("c1", "k-dup")] = second.id
        cleared.add(first.id)
    return OrderData(orders, replays, {running.id, waiting.id, deferred.id}, cleared)


def build_order_database(url: str, revision: str, data: OrderData) -> None:
    def build(connection: sa.Connection) -> None:
        command.upgrade(config("order", connection), "0001" if revision == "none" else revision)
        insert(connection, "catalog", [
            {"sku": i.sku, "name": i.name, "unit_price": i.unit_price, "currency": i.currency,
             "available": i.available, "synced_at": utc_now()}
            for i in (ALPHA, BETA)
        ])  # fmt: skip
        if revision not in ("none", "0001"):  # catalog.held came with 0002, kept with the holds
            connection.execute(sa.text("UPDATE catalog SET held = 2 WHERE sku = 'A'"))
        rows = []
        for order in data.orders:
            changes: dict[str, Any] = {}
            if order.status == "PLACED":
                changes["payment_id"] = f"pay_{order.id[-2:]}"
            if order.saga_status == "running":
                # Its process stopped for the upgrade: the lease has lapsed.
                changes.update(lease_owner="old-host:8000/41:abcdef", lease_until=utc_after(-60))
            if order.saga_status == "waiting" and order.saga_name == "order":
                changes.update(pending_reason="payment_outcome_unknown", lease_owner="old-host:8000/41:abcdef",
                               lease_until=utc_after(-1))  # fmt: skip
            if order.reservation == "deferred":
                changes.update(inventory_check="fallback", pending_reason="reservation_deferred")
            rows.append(order_row(order, **changes))
        insert(connection, "orders", rows)
        insert(connection, "saga_log", [row for order in data.orders for row in log_rows(order)])
        deferred = next(o for o in data.orders if o.reservation == "deferred")
        insert(connection, "fallback_holds", [{"order_id": deferred.id, "sku": "A", "quantity": 2}])
        if revision == "none":
            connection.execute(sa.text("DROP TABLE alembic_version"))

    run_sync(url, build)


@pytest.mark.parametrize("revision", ORDER_REVISIONS)
def test_orders_keys_and_sagas_in_flight_come_through_an_upgrade(
    database_url: str, revision: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = order_data(revision)
    build_order_database(url=database_url, revision=revision, data=data)
    asyncio.run(migrate(database_url, "order"))
    # The orders a retry made twice are named, for the operator to refund one.
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "oms.migrations"]
    assert len(warned) == len(data.cleared)
    for first in data.cleared:
        second = data.replays["c1", "k-dup"]
        assert any(first in line and second in line for line in warned)
    by_id = {order.id: order for order in data.orders}

    async def check(database: Database) -> None:
        repository = OrderRepository(database)
        catalog = SqlCatalog(database)
        inventory, payments = FakeInventory([ALPHA, BETA]), FakePayments()
        service = OrderService(
            orders=repository,
            catalog=catalog,
            engine=SagaEngine(OrderLog(repository)),
            sagas=order_sagas(inventory, payments, catalog),
            inventory=inventory,
            wait=5.0,
            lease_ttl=15.0,
            max_in_flight=1000,
            key_ttl=86400.0,
            instance="new-host:8000",
        )
        await service.start()

        # Statuses and saga logs as they were.
        for order in data.orders:
            view = await repository.get(order.id)
            assert view is not None
            assert (view["status"], view["saga_status"], view["reservation"]) == (
                order.status, order.saga_status, order.reservation,
            )  # fmt: skip
            assert [(s["kind"], s["name"], s["outcome"], s["reason"]) for s in view["saga"]] == order.log

        # A client retrying with a key taken before the upgrade gets its order again: no second one.
        for (customer, key), order_id in data.replays.items():
            found = await repository.by_key(scoped_key(customer, key))
            assert found is not None, f"the key {key!r} of {customer} names no order after the upgrade"
            assert found["id"] == order_id
            answer, created = await service.place(by_id[order_id].request(), scoped_key(customer, key))
            assert (answer["id"], created) == (order_id, False)
        for order_id in data.cleared:
            assert (await repository.get(order_id)) is not None  # the first order stays, its key cleared

        # The sagas in flight are recovery's work, and load as they were left.
        assert set(await repository.unfinished(now=utc_now())) == data.in_flight
        for order_id in data.in_flight:
            loaded = await repository.load_saga(order_id)
            assert loaded is not None
            context, logged = loaded
            assert context["saga"] == by_id[order_id].saga_name
            assert context["reservation"] == by_id[order_id].reservation
            # The rows of the saga in charge now (a reconcile saga has written none yet).
            own = by_id[order_id].log if by_id[order_id].saga_name == "order" else []
            assert [(entry.kind, entry.name, entry.outcome, entry.reason) for entry in logged] == own
        assert await catalog.held() == {"A": 2}

        # ...and today's recovery drives them to their end: charged once, the deferred stock reserved.
        assert await service.recover() == len(data.in_flight)
        await asyncio.gather(*service.running.values())
        for order_id in data.in_flight:
            view = await repository.get(order_id)
            assert view is not None
            assert (view["status"], view["saga_status"]) == ("PLACED", "completed")
        assert sorted(payments.payments) == sorted(o for o in data.in_flight if by_id[o].saga_name == "order")
        assert list(inventory.reservations) == [o for o in data.in_flight if by_id[o].saga_name == "reconcile"]
        assert await catalog.held() == {}
        total = await database.fetch_one("SELECT count(*) AS n FROM orders")
        assert total is not None and total["n"] == len(data.orders)

    asyncio.run(with_database(database_url, check))


def test_a_release_still_running_on_an_older_revision_cannot_store_a_raw_key(database_url: str) -> None:
    """After the conversion the database takes digests only: a replica of a release before it that
    is still running (a rolling deploy) fails to store a keyed order instead of storing a raw key
    that no replica of the new release would find."""
    asyncio.run(migrate(database_url, "order"))
    order = Placed("ord_0000000000070000000000a7", "c1", "late key", [("A", 1)], "PENDING", "order", "running", "none")

    def old_release_insert(connection: sa.Connection) -> None:
        insert(connection, "orders", [order_row(order)])

    with pytest.raises(sa.exc.IntegrityError):
        run_sync(database_url, old_release_insert)
    order.stored_key = scoped_key("c1", "late key")
    run_sync(database_url, old_release_insert)  # today's release: the digest is taken


# -- inventory and payment -----------------------------------------------------------------------------


def build_at_0001(url: str, service: str, tables: dict[str, list[dict[str, Any]]]) -> None:
    def build(connection: sa.Connection) -> None:
        command.upgrade(config(service, connection), "0001")
        for table, rows in tables.items():
            insert(connection, table, rows)

    run_sync(url, build)


def test_reservations_come_through_an_upgrade(database_url: str) -> None:
    """InventoryService's only revision before today's newest is 0001 (its newest too): the upgrade
    is one a release of it runs at every start, and changes nothing."""
    now = utc_now()
    build_at_0001(database_url, "inventory", {
        "items": [{"sku": "A", "name": "Alpha", "unit_price": 500, "currency": "USD", "available": 7,
                   "reserved": 3, "updated_at": now}],
        "reservations": [
            {"order_id": "ord_held", "status": "RESERVED", "lines": '[{"sku":"A","quantity":3}]',
             "created_at": now, "updated_at": now},
            {"order_id": "ord_gone", "status": "RELEASED", "lines": '[{"sku":"A","quantity":1}]',
             "created_at": now, "updated_at": now},
        ],
    })  # fmt: skip
    asyncio.run(migrate(database_url, "inventory"))

    async def check(database: Database) -> None:
        held = await inventory_store.get_reservation(database, "ord_held")
        assert held is not None and held.status is ReservationStatus.RESERVED
        assert held.lines == [{"sku": "A", "quantity": 3}]
        # A repeated reservation answers the one made before the upgrade, and takes no more stock.
        again, new, _ = await inventory_store.reserve(database, "ord_held", [("A", 3)])
        assert (again.status, new) == (ReservationStatus.RESERVED, False)
        gone = await inventory_store.get_reservation(database, "ord_gone")
        assert gone is not None and gone.status is ReservationStatus.RELEASED
        item = await inventory_store.get_item(database, "A")
        assert item is not None and (item["available"], item["reserved"]) == (7, 3)
        released, freed = await inventory_store.release(database, "ord_held")
        assert (released.status, freed) == (ReservationStatus.RELEASED, True)
        item = await inventory_store.get_item(database, "A")
        assert item is not None and (item["available"], item["reserved"]) == (10, 0)

    asyncio.run(with_database(database_url, check))


def test_payments_come_through_an_upgrade(database_url: str) -> None:
    """PaymentService's only revision before today's newest is 0001 (its newest too)."""
    now = utc_now()
    payment = {"amount": 1000, "currency": "USD", "payment_method": "pm_card_visa", "decline_code": None,
               "created_at": now, "updated_at": now}  # fmt: skip
    build_at_0001(database_url, "payment", {
        "payments": [
            {**payment, "id": "pay_charged", "order_id": "ord_paid", "status": "SUCCEEDED"},
            {**payment, "id": "pay_refunded", "order_id": "ord_refunded", "status": "REFUNDED"},
            {**payment, "id": "void_1", "order_id": "ord_voided", "status": "VOIDED", "amount": 0,
             "currency": "XXX", "payment_method": ""},
        ],
    })  # fmt: skip
    asyncio.run(migrate(database_url, "payment"))

    async def check(database: Database) -> None:
        # A repeated charge answers the charge made before the upgrade: the customer pays once.
        charged, new = await payment_store.charge(
            database, order_id="ord_paid", amount=1000, currency="USD", payment_method="pm_card_visa"
        )
        assert (charged["id"], charged["status"], new) == ("pay_charged", "SUCCEEDED", False)
        assert [p["id"] for p in await payment_store.find(database, "ord_refunded")] == ["pay_refunded"]
        # An order voided before the upgrade is never charged after it.
        assert await payment_store.void(database, "ord_voided") is None
        assert await payment_store.find(database, "ord_voided") == []
        refunded, flipped = await payment_store.refund(database, "ord_paid")
        assert (refunded["status"], flipped) == ("REFUNDED", True)

    asyncio.run(with_database(database_url, check))


# -- a database a newer release has upgraded --------------------------------------------------------


def newer_release_upgraded(url: str, service: str) -> None:
    """The database as a release with a revision after this one's newest leaves it."""
    asyncio.run(migrate(url, service))
    run_sync(url, lambda c: c.execute(sa.text("UPDATE alembic_version SET version_num = '9999'")))


@pytest.mark.parametrize("service", ["order", "inventory", "payment"])
def test_a_database_a_newer_release_has_upgraded_is_refused(database_url: str, service: str) -> None:
    newer_release_upgraded(database_url, service)
    with pytest.raises(NewerDatabase, match=f"The {service} database is at revision 9999, which this release"):
        asyncio.run(migrate(database_url, service))
    version = run_sync(database_url, lambda c: c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar())
    assert version == "9999"


def test_a_service_does_not_start_on_a_database_a_newer_release_has_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/order.db"
    newer_release_upgraded(url, "order")
    (port,) = free_ports(1)
    command_line = [sys.executable, "-m", "oms", "serve", "order", "--port", str(port), "--database-url", url,
                    "--data-dir", str(tmp_path / "data")]  # fmt: skip
    done = subprocess.run(command_line, capture_output=True, text=True, timeout=60, env={**os.environ})
    assert done.returncode != 0
    assert "The order database is at revision 9999, which this release of oms does not know" in done.stderr
