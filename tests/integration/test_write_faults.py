"""No saga left behind when a write fails: the order, cancel and reconcile sagas driven by the real
OrderService over a real database (SQLite and PostgreSQL), whose N-th write fails, for every N.

``FaultyDatabase`` wraps the port and fails one write, as a database that went away would: either
before it (nothing of it stands) or after it (it committed, and its answer was lost on the way
back). Then the database answers again, and the client does what a storefront does: a POST that
failed is sent again with its Idempotency-Key, a cancel again if the order is still PLACED. The
property, for every N and both ways of failing: every order ends (no saga running or waiting is
left), the client's key names one order, and the order's effects are those of its status (placed:
stock reserved and one charge; payment failed: the reservation released; out of stock: nothing
taken or charged; cancelled: refunded and released; no fallback units held after reconcile). And
the outbox: the order's events match the status history the database itself kept (a trigger notes
every status an order's row takes, in the transaction that writes it): one event per status, in
order, numbered 1..n, ``created`` first, none missing and none extra, so the event and the change
of status are written in one transaction whatever write fails, and however.

The participants are the fakes the contract tests hold to the real services (tests/fakes.py): what
is tried here is OrderService and its store, the part that writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from fakes import FakeInventory, FakePayments
from oms.db import Database, Row, Statement, Tx, Unavailable
from oms.db.port import Observer
from oms.orders.errors import Busy, NotCancellable
from oms.orders.events import EVENTS, event_type
from oms.orders.ports import Item
from oms.orders.ports import Unavailable as Unreachable
from oms.orders.repository import OrderRepository, SqlCatalog
from oms.orders.saga import order_sagas
from oms.orders.saga_log import OrderLog
from oms.orders.schema import metadata
from oms.orders.service import OrderService, PlaceOrder
from oms.saga.engine import SagaEngine
from oms.saga.policies import WaitingPolicy

WIDGET = Item("W", "Widget", 250, "USD", 5)
GADGET = Item("G", "Gadget", 1000, "USD", 1)
_WRITES = ("INSERT", "UPDATE", "DELETE", "WITH")


OUTAGE = 6
"""Writes an ``outage`` fails, from the ``at``-th on: the database stays away for a while."""


@dataclass
class Fault:
    """Fail the ``at``-th write (1-based): ``before`` it reaches the database, ``after`` it committed
    (its answer lost), or in an ``outage`` (before it, and the next writes too); 0: none (count them)."""

    at: int = 0
    when: str = "before"
    writes: int = 0
    fired: bool = False
    armed: bool = False
    """Counting writes: not while the shop is set up."""

    def hit(self) -> bool:
        if not self.armed:
            return False
        self.writes += 1
        last = self.at + (OUTAGE - 1 if self.when == "outage" else 0)
        if self.at and self.at <= self.writes <= last:
            self.fired = True
            return True
        return False

    @property
    def after(self) -> bool:
        return self.when == "after"

    def error(self) -> Unavailable:
        return Unavailable("unreachable", f"injected: write {self.writes} failed ({self.when}, from write {self.at})")


class _FaultyTx:
    def __init__(self, tx: Tx, fault: Fault) -> None:
        self._tx, self._fault = tx, fault
        self.wrote = False
        self.fail_after = False

    def _write(self, sql: str) -> None:
        if self.wrote or not sql.lstrip().upper().startswith(_WRITES):
            return
        self.wrote = True
        if self._fault.hit():
            if not self._fault.after:
                raise self._fault.error()
            self.fail_after = True

    async def execute(self, sql: str, *params: Any) -> int:
        self._write(sql)
        return await self._tx.execute(sql, *params)

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        self._write(sql)
        return await self._tx.fetchone(sql, *params)

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        self._write(sql)
        return await self._tx.fetchall(sql, *params)


class FaultyDatabase:
    """The ``Database`` port over a real one, failing the write ``fault`` names: a transaction with
    a write statement, or a write on its own, counts as one write."""

    def __init__(self, db: Database, fault: Fault) -> None:
        self.db, self.fault = db, fault
        self.writes_in_one_statement = db.writes_in_one_statement
        self.refusals = db.refusals
        self.observer: Observer | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.db.transaction() as tx:
            faulty = _FaultyTx(tx, self.fault)
            yield faulty
        if faulty.fail_after:
            raise self.fault.error()

    async def _write(self, call: Callable[[], Awaitable[Any]]) -> Any:
        if not self.fault.hit():
            return await call()
        if not self.fault.after:
            raise self.fault.error()
        await call()
        raise self.fault.error()

    async def fetch_all(self, sql: str, *params: Any) -> list[Row]:
        return await self.db.fetch_all(sql, *params)

    async def fetch_one(self, sql: str, *params: Any) -> Row | None:
        return await self.db.fetch_one(sql, *params)

    async def execute_one(self, sql: str, *params: Any) -> int:
        changed: int = await self._write(lambda: self.db.execute_one(sql, *params))
        return changed

    async def write_returning(self, sql: str, *params: Any) -> list[Row]:
        rows: list[Row] = await self._write(lambda: self.db.write_returning(sql, *params))
        return rows

    async def write_all(self, statements: Sequence[Statement]) -> None:
        await self._write(lambda: self.db.write_all(statements))

    async def ping(self, *, write: bool = False) -> None:
        await self.db.ping(write=write)

    def locked(self, sql: str, *, skip_locked: bool = False) -> str:
        return self.db.locked(sql, skip_locked=skip_locked)

    async def close(self) -> None:
        await self.db.close()


@dataclass
class Shop:
    """OrderService on a faulty database, with the participants' fakes, and a client's retries."""

    db: Database
    fault: Fault
    inventory: FakeInventory = field(default_factory=lambda: FakeInventory([WIDGET, GADGET]))
    payments: FakePayments = field(default_factory=FakePayments)

    def __post_init__(self) -> None:
        faulty = FaultyDatabase(self.db, self.fault)
        self.repository = OrderRepository(faulty, waiting=WaitingPolicy(0.001, 0.001))
        self.catalog = SqlCatalog(faulty)
        self.service = OrderService(
            orders=self.repository,
            catalog=self.catalog,
            engine=SagaEngine(OrderLog(self.repository)),
            sagas=order_sagas(self.inventory, self.payments, self.catalog),
            inventory=self.inventory,
            wait=5.0,
            lease_ttl=15.0,
            max_in_flight=1000,
            key_ttl=86400.0,
            instance="test:8000",
            release_waits=(0.001, 0.002),
        )

    async def place(self, *lines: tuple[str, int], method: str = "pm_card_visa") -> str:
        """The order's id, placed with an Idempotency-Key and sent again while the answer is 503."""
        for _ in range(OUTAGE + 2):
            try:
                order, _created = await self.service.place(PlaceOrder("c1", method, list(lines)), "key-1")
                return str(order["id"])
            except Unavailable:
                pass  # 503: the database answers again, and the storefront retries with its key
        raise AssertionError("every try with the key failed")

    async def cancel(self, order_id: str) -> None:
        for _ in range(OUTAGE + 2):
            try:
                await self.service.cancel(order_id)
            except (Unavailable, Busy):
                await self.settle()
            except NotCancellable:
                return  # cancelled already: the 503's cancel went on
            order = await self.service.get(order_id)
            assert order is not None
            if order["status"] != "PLACED":
                return
        raise AssertionError("the order is still PLACED after every cancel")

    async def settle(self) -> None:
        """Drive every saga to its end, as the recovery loop does: each pass waits for the sagas this
        process drives and the leases it lets go of, then resumes what the log says is unfinished."""
        for _ in range(500):
            await asyncio.gather(
                *self.service.running.values(), *self.service.releasing.values(), return_exceptions=True
            )
            unfinished = await self.db.fetch_all("SELECT id FROM orders WHERE saga_status IN ('running', 'waiting')")
            if not unfinished and not self.service.running:
                return
            try:
                resumed = await self.service.recover()
            except Unavailable:
                resumed = 0  # a recovery pass whose claim failed: the next pass tries again
            if not resumed:
                await asyncio.sleep(0.002)  # a waiting saga's lease lapses after retry_initial (1 ms)
        raise AssertionError(f"sagas still unfinished: {unfinished}")


async def placed(shop: Shop) -> tuple[str, str]:
    return await shop.place(("W", 2)), "PLACED"


async def declined(shop: Shop) -> tuple[str, str]:
    return await shop.place(("W", 2), method="pm_card_chargeDeclined"), "PAYMENT_FAILED"


async def out_of_stock(shop: Shop) -> tuple[str, str]:
    return await shop.place(("G", 2)), "OUT_OF_STOCK"


async def on_fallback_then_reconciled(shop: Shop) -> tuple[str, str]:
    shop.inventory.check_error = Unreachable("inventory", "circuit_open")
    shop.inventory.reserve_error = Unreachable("inventory", "circuit_open")
    order_id = await shop.place(("W", 2))
    shop.inventory.check_error = shop.inventory.reserve_error = None  # back: reconcile reserves the stock
    return order_id, "PLACED"


async def cancelled(shop: Shop) -> tuple[str, str]:
    order_id = await shop.place(("W", 2))
    await shop.settle()
    await shop.cancel(order_id)
    return order_id, "CANCELLED"


FLOWS = [placed, declined, out_of_stock, on_fallback_then_reconciled, cancelled]


HISTORY_SQLITE = (
    "CREATE TABLE status_history (n INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT, status TEXT)",
    "CREATE TRIGGER history_insert AFTER INSERT ON orders BEGIN "
    "INSERT INTO status_history (order_id, status) VALUES (NEW.id, NEW.status); END",
    "CREATE TRIGGER history_update AFTER UPDATE OF status ON orders WHEN OLD.status <> NEW.status BEGIN "
    "INSERT INTO status_history (order_id, status) VALUES (NEW.id, NEW.status); END",
)
HISTORY_POSTGRES = (
    "CREATE TABLE status_history (n BIGSERIAL PRIMARY KEY, order_id TEXT, status TEXT)",
    "CREATE FUNCTION note_status() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP = 'INSERT' OR OLD.status <> NEW.status THEN "
    "INSERT INTO status_history (order_id, status) VALUES (NEW.id, NEW.status); END IF; RETURN NEW; END $$",
    "CREATE TRIGGER history AFTER INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION note_status()",
)


async def keep_status_history(db: Database) -> None:
    """Every status each order's row takes, noted by the database in the transaction that writes it."""
    for sql in HISTORY_POSTGRES if db.writes_in_one_statement else HISTORY_SQLITE:
        await db.execute_one(sql)


async def run_flow(db: Database, flow: Callable[[Shop], Awaitable[tuple[str, str]]], fault: Fault) -> Shop:
    await db.execute_one("DELETE FROM status_history")
    await db.execute_one("DELETE FROM events")
    await db.execute_one("DELETE FROM saga_log")
    await db.execute_one("DELETE FROM fallback_holds")
    await db.execute_one("DELETE FROM orders")
    await db.execute_one("DELETE FROM catalog")
    shop = Shop(db, fault)
    await shop.catalog.remember([WIDGET, GADGET])
    await shop.service.start()
    fault.armed = True
    order_id, status = await flow(shop)
    await shop.settle()
    await check(shop, order_id, status)
    return shop


async def check(shop: Shop, order_id: str, status: str) -> None:
    orders = await shop.db.fetch_all("SELECT id, status, saga_status, reservation FROM orders")
    where = f"(fault at write {shop.fault.at}, {shop.fault.when})"
    assert [o["id"] for o in orders] == [order_id], f"one order for the key {where}: {orders}"
    order = orders[0]
    assert order["status"] == status, where
    assert order["saga_status"] in ("completed", "compensated"), where
    payment = shop.payments.payments.get(order_id)
    reservation = shop.inventory.reservations.get(order_id, ("NONE", []))[0]
    charged = payment.status if payment is not None else None
    expected = {
        "PLACED": ("SUCCEEDED", "RESERVED"),
        "PAYMENT_FAILED": ("DECLINED", "RELEASED"),
        "OUT_OF_STOCK": (None, "NONE"),
        "CANCELLED": ("REFUNDED", "RELEASED"),
    }[status]
    # A charge that never went out may have been voided first (a recovery that found no answer).
    assert (charged if charged != "VOIDED" else None, reservation) == expected, where
    assert shop.payments.calls.count("charge") <= 2, where  # asked again at most once: one payment
    held = await shop.db.fetch_all("SELECT sku FROM fallback_holds")
    assert held == [], where
    available = {s: i.available for s, i in shop.inventory.stock.items()}
    assert available["W"] == (3 if expected[1] == "RESERVED" else 5), where
    await check_events(shop.db, order_id, where)


async def check_events(db: Database, order_id: str, where: str) -> None:
    """The order's events are its status history: one each, in order, numbered 1..n."""
    history = [
        r["status"]
        for r in await db.fetch_all("SELECT status FROM status_history WHERE order_id = ? ORDER BY n", order_id)
    ]
    events = await db.fetch_all(
        f"SELECT sequence, type, data FROM events WHERE order_id = ? ORDER BY {', '.join(EVENTS.columns)}", order_id
    )
    assert history[0] == "PENDING", where
    assert events and events[-1]["type"] == event_type(history[-1]), where  # created first, the final status last
    assert [e["type"] for e in events] == [event_type(status) for status in history], f"{where}: {history}"
    assert [e["sequence"] for e in events] == list(range(1, len(history) + 1)), where
    assert [orjson.loads(e["data"])["status"] for e in events] == history, where
    order = await db.fetch_one("SELECT event_sequence FROM orders WHERE id = ?", order_id)
    assert order is not None and order["event_sequence"] == len(history), where


@pytest.mark.parametrize("when", ["before", "after", "outage"])
@pytest.mark.parametrize("flow", FLOWS, ids=[f.__name__ for f in FLOWS])
def test_every_write_of_every_saga_may_fail_and_the_order_still_ends(
    with_db: Any, flow: Callable[[Shop], Awaitable[tuple[str, str]]], when: str
) -> None:
    async def scenario(db: Database) -> list[int]:
        await keep_status_history(db)
        writes = (await run_flow(db, flow, Fault())).fault.writes
        tried = []
        for at in range(1, writes + 1):
            shop = await run_flow(db, flow, Fault(at, when))
            assert shop.fault.fired
            tried.append(at)
        return tried

    tried = with_db(metadata, scenario)
    assert len(tried) >= 2, tried  # every flow writes at least the order and its saga's end
