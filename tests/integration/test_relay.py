"""The relay (``oms.events.relay``) on SQLite and PostgreSQL, to a real receiver over HTTP (an aiohttp
server on 127.0.0.1, verifying each delivery with the Standard Webhooks library) and a real
``nats-server``: every event delivered, each order's in order; failed tries retried on the schedule
(a short one) with the order's later events behind them; 410 disables the endpoint; NATS away, the
events wait and go when it is back, each stored once; one relay at a time drives a way."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook

import natsserver
from oms.db import Database
from oms.events.metrics import RelayMetrics
from oms.events.nats import EventStream
from oms.events.relay import LEASE_TTL, Relay, body_of
from oms.events.schedule import WebhookPolicy
from oms.events.sender import new_pool
from oms.events.signing import new_secret
from oms.events.ways import Ways
from oms.orders.events import cloud_event, new_event_id
from oms.orders.repository import OrderRepository
from oms.orders.schema import metadata
from oms.utc import utc_now

SECRET = new_secret()
QUICK = WebhookPolicy(timeout=2.0, concurrency=8, retry_initial=0.05, retry_max=0.2, give_up_after=60)


@dataclass
class Receiver:
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    answer: Callable[[dict[str, Any], int], int] = lambda event, tries: 200
    """The status to answer an event's ``tries``-th delivery with."""
    tries: dict[str, int] = field(default_factory=dict)
    bad_signatures: int = 0
    gate: asyncio.Event | None = None
    """Set: each delivery waits for it before it is answered."""
    waiting: int = 0

    def delivered(self) -> list[dict[str, Any]]:
        return [r["event"] for r in self.received if r["status"] < 300]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            Webhook(SECRET).verify(body, dict(request.headers))
        except Exception:
            state.bad_signatures += 1
        event = orjson.loads(body)
        if state.gate is not None:
            state.waiting += 1
            await state.gate.wait()
        tries = state.tries[event["id"]] = state.tries.get(event["id"], 0) + 1
        status = state.answer(event, tries)
        state.received.append({"event": event, "status": status})
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield state
    finally:
        await runner.cleanup()


async def orders_with_events(db: Database, count: int, events_each: int = 3) -> list[str]:
    """``count`` orders, each with ``events_each`` events (created, then more numbered 2, 3, ...)."""
    repo = OrderRepository(db)
    ids = []
    for n in range(count):
        order_id = f"ord_{n:04d}"
        await repo.create(
            order_id=order_id, idempotency_key=None, request_hash="h", customer_id="cus_1",
            payment_method="pm_card_visa", lines=[("A", 1)],
        )  # fmt: skip
        ids.append(order_id)
    for sequence in range(2, events_each + 1):
        for order_id in ids:
            await db.execute_one(
                "INSERT INTO events (id, order_id, sequence, type, time, data) VALUES (?, ?, ?, ?, ?, ?)",
                new_event_id(), order_id, sequence, "oms.order.placed", utc_now(), '{"status":"PLACED"}',
            )  # fmt: skip
    return ids


async def add_endpoint(db: Database, url: str, events: list[str] | None = None) -> str:
    endpoint_id = "we_test" + new_event_id()[4:]
    await db.execute_one(
        "INSERT INTO webhooks (id, url, events, description, status, secrets, created_at, updated_at) "
        "VALUES (?, ?, ?, '', 'enabled', ?, ?, ?)",
        endpoint_id, url, orjson.dumps(events or ["*"]).decode(),
        orjson.dumps([{"secret": SECRET, "retired_at": None}]).decode(), utc_now(), utc_now(),
    )  # fmt: skip
    await db.execute_one("INSERT INTO relay_ways (way, tx, position) VALUES (?, 0, 0)", f"webhook:{endpoint_id}")
    return endpoint_id


@asynccontextmanager
async def running(
    db: Database, owner: str = "test/1", nats_url: str | None = None, clock: Callable[[], float] = time.time
) -> AsyncIterator[Relay]:
    session = new_pool()
    relay = Relay(
        Ways(db), owner=owner, delivery=QUICK, metrics=RelayMetrics(CollectorRegistry()), session=session,
        stream=(lambda: EventStream(nats_url, retention=3600)) if nats_url else None, clock=clock,
    )  # fmt: skip
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        relay.stop()
        await task
        await session.close()


async def until(condition: Callable[[], Any], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


def in_order(events: list[dict[str, Any]], *, again: bool = False) -> bool:
    """Each order's events in increasing sequence (``again``: or the same one again, a retry)."""
    last: dict[str, int] = {}
    for event in events:
        if event["sequence"] < last.get(event["subject"], 0) + (0 if again else 1):
            return False
        last[event["subject"]] = event["sequence"]
    return True


def test_the_body_is_the_cloud_event(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await orders_with_events(db, 2)
        rows = await Ways(db).events_after((0, 0), 10)
        assert rows
        for row in rows:
            assert orjson.loads(body_of(dict(row))) == cloud_event(row)

    with_db(metadata, scenario)


def test_every_event_reaches_the_endpoint_once_each_order_in_order(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        orders = await orders_with_events(db, 40)
        async with receiver() as hook:
            endpoint = await add_endpoint(db, hook.url)
            async with running(db):
                await until(lambda: len(hook.received) >= 120, "120 deliveries")
                await until(lambda: _cursor_at_head(db, f"webhook:{endpoint}"), "the cursor at the outbox's head")
        assert hook.bad_signatures == 0
        delivered = hook.delivered()
        assert sorted(e["id"] for e in delivered) == sorted(r["id"] for r in await Ways(db).events_after((0, 0), 500))
        assert in_order(delivered)
        assert {e["subject"] for e in delivered} == set(orders)
        attempts = await db.fetch_all("SELECT outcome, COUNT(*) AS n FROM webhook_attempts GROUP BY outcome")
        assert {r["outcome"]: r["n"] for r in attempts} == {"delivered": 120}
        endpoint_row = await db.fetch_one("SELECT last_success_at, failing_since FROM webhooks")
        assert endpoint_row is not None and endpoint_row["last_success_at"] and endpoint_row["failing_since"] is None

    with_db(metadata, scenario)


async def _cursor_at_head(db: Database, way: str) -> bool:
    ways = Ways(db)
    row = await db.fetch_one("SELECT tx, position FROM relay_ways WHERE way = ?", way)
    return row is not None and (int(row["tx"]), int(row["position"])) == await ways.head()


def test_failed_tries_are_retried_with_the_orders_later_events_behind_them(with_db: Any) -> None:
    """The first try of every event of even-numbered orders answers 500: each is tried again, and
    none of the order's later events reaches the receiver before it."""

    async def scenario(db: Database) -> None:
        await orders_with_events(db, 20)
        async with receiver() as hook:
            hook.answer = lambda event, tries: 500 if int(event["subject"][-1]) % 2 == 0 and tries == 1 else 200
            await add_endpoint(db, hook.url)
            async with running(db):
                await until(lambda: len(hook.delivered()) >= 60, "60 events delivered")
                await until(
                    lambda: _count(db, "SELECT COUNT(*) AS n FROM webhook_deliveries", 0), "no delivery waiting"
                )
        delivered = hook.delivered()
        assert len(delivered) == 60 and len({e["id"] for e in delivered}) == 60
        assert in_order(delivered)
        assert in_order([r["event"] for r in hook.received], again=True)  # no try out of order either
        outcomes = await db.fetch_all(
            'SELECT outcome, "try", COUNT(*) AS n FROM webhook_attempts GROUP BY outcome, "try"'
        )
        by = {(r["outcome"], r["try"]): r["n"] for r in outcomes}
        assert by[("retry", 1)] == 30 and by[("delivered", 2)] == 30 and by[("delivered", 1)] == 30

    with_db(metadata, scenario)


async def _count(db: Database, sql: str, expected: int) -> bool:
    row = await db.fetch_one(sql)
    return row is not None and int(row["n"]) == expected


def test_410_gone_disables_the_endpoint(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await orders_with_events(db, 3)
        async with receiver() as hook:
            hook.answer = lambda event, tries: 410
            endpoint = await add_endpoint(db, hook.url)
            async with running(db):
                await until(
                    lambda: _count(db, "SELECT COUNT(*) AS n FROM webhooks WHERE status = 'disabled'", 1),
                    "the endpoint disabled",
                )
            row = await db.fetch_one("SELECT disabled_reason FROM webhooks WHERE id = ?", endpoint)
            assert row is not None and "410" in row["disabled_reason"]
            tried = len(hook.received)
            async with running(db) as relay:  # a disabled endpoint is not driven: it gets nothing more
                await until(lambda: relay.looks > 0, "the relay's first look")
                assert f"webhook:{endpoint}" not in relay.running
            assert len(hook.received) == tried

    with_db(metadata, scenario)


def test_nats_gets_every_event_once_and_waits_while_it_is_away(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        server = natsserver.start()
        try:
            await orders_with_events(db, 10)
            async with running(db, nats_url=server.url) as relay:
                await until(lambda: _count(db, _WAY_AT_HEAD, 1), "nats published everything")
                server.stop_process()
                await orders_with_events_more(db, 10)
                way = relay.running["nats"][0]
                await until(lambda: getattr(way, "failures", 0) > 0, "a publish failed while NATS was away")
                server.start_again()
                await until(lambda: _count(db, _WAY_AT_HEAD, 1), "nats published the rest", within=60)
            messages = [m["body"] for m in await natsserver.stream_messages(server.url)]
        finally:
            server.stop()
        ids = [m["id"] for m in messages]
        assert len(ids) == 60 and len(set(ids)) == 60
        assert in_order(messages)

    with_db(metadata, scenario)


_WAY_AT_HEAD = (
    "SELECT COUNT(*) AS n FROM relay_ways w WHERE w.way = 'nats' AND NOT EXISTS "
    "(SELECT 1 FROM events e WHERE e.tx > w.tx OR (e.tx = w.tx AND e.position > w.position))"
)


async def orders_with_events_more(db: Database, count: int) -> None:
    repo = OrderRepository(db)
    for n in range(count):
        await repo.create(
            order_id=f"ord_more_{n:04d}", idempotency_key=None, request_hash="h", customer_id="cus_1",
            payment_method="pm_card_visa", lines=[("A", 1)],
        )  # fmt: skip
        for sequence in (2, 3):
            await db.execute_one(
                "INSERT INTO events (id, order_id, sequence, type, time, data) VALUES (?, ?, ?, ?, ?, ?)",
                new_event_id(), f"ord_more_{n:04d}", sequence, "oms.order.placed", utc_now(), "{}",
            )  # fmt: skip


@pytest.mark.parametrize("relays", [2])
def test_one_relay_at_a_time_drives_a_way(with_db: Any, relays: int) -> None:
    async def scenario(db: Database) -> None:
        await orders_with_events(db, 30)
        async with receiver() as hook:
            await add_endpoint(db, hook.url)
            async with running(db, owner="a/1"), running(db, owner="b/1"):
                await until(lambda: len(hook.delivered()) >= 90, "90 deliveries")
                owners = await db.fetch_all("SELECT way, owner FROM relay_ways")
        assert len(hook.delivered()) == 90 and len({e["id"] for e in hook.delivered()}) == 90
        assert all(r["owner"] in ("a/1", "b/1") for r in owners)

    with_db(metadata, scenario)


def test_a_relay_letting_go_of_a_re_enabled_endpoint_cannot_write_its_older_cursor_back(with_db: Any) -> None:
    """Disabled then enabled while a relay still drove it: the endpoint's cursor moved to the head and
    its lease was freed, so the relay's last write-back (an older cursor) is refused, not stored."""
    from oms.events.store import WebhookStore
    from oms.events.ways import Flush, LostLease

    async def scenario(db: Database) -> None:
        store = WebhookStore(db)
        endpoint, _ = await store.create(url="http://127.0.0.1:9/hook", events=["*"])
        ways = Ways(db)
        way = f"webhook:{endpoint['id']}"
        assert await ways.claim(way, "a/1", now=time.time(), ttl=10) == (0, 0)
        await orders_with_events(db, 2)
        await store.update(endpoint["id"], status="disabled")
        await store.update(endpoint["id"], status="enabled")
        with pytest.raises(LostLease):
            await ways.write(way, "a/1", (0, 0), time.time() + 10, Flush(), endpoint["id"])
        row = await db.fetch_one("SELECT tx, position FROM relay_ways WHERE way = ?", way)
        assert row is not None and (int(row["tx"]), int(row["position"])) == await ways.head() != (0, 0)

    with_db(metadata, scenario)


def test_events_held_back_while_the_lease_may_have_lapsed_go_once_it_is_renewed(with_db: Any) -> None:
    """Sends that end after the lease may have lapsed (the database away for longer than it lasts;
    here the relay's clock jumps past it while each order's first event is being delivered): the
    orders' next events are not sent then, and go once a write-back has renewed the lease."""

    async def scenario(db: Database) -> None:
        await orders_with_events(db, 5)
        skew = [0.0]
        async with receiver() as hook:
            hook.gate = asyncio.Event()
            await add_endpoint(db, hook.url)
            async with running(db, clock=lambda: time.time() + skew[0]):
                await until(lambda: hook.waiting >= 5, "each order's first event under way")
                skew[0] = LEASE_TTL + 1
                hook.gate.set()
                await until(lambda: len(hook.delivered()) >= 15, "every event delivered")
        assert len(hook.delivered()) == 15 and in_order(hook.delivered())

    with_db(metadata, scenario)
