"""The outbox's ways out through crashes: OrderService SIGKILLed twice (its relay with it) while six
clients place orders of every outcome, to a webhook endpoint that answers 500 to a quarter of the
deliveries and drops some connections without answering, and to a real NATS JetStream.

Afterwards each order's events are complete (numbered 1..n, ``created`` first, the final status
last); each reached the endpoint with a valid Standard Webhooks signature, and no try of an order's
event came before the order's event before it had been delivered; the stream holds each exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import nats
import pytest
from hooks import Receiver, receiver
from system import InFlight, System

import natsserver

CLIENTS = 6
PER_PHASE = 100
"""Orders the clients place before each crash and after the last, at least: a few hundred in all."""
PACE = 0.15
"""Seconds a client waits between two orders."""
SETTLE = 120.0
STOCK = 60
KINDS = {
    0: ("EV-A", "pm_card_visa"),
    1: ("EV-A", "pm_card_chargeDeclined"),
    2: ("EV-GONE", "pm_card_visa"),
    3: ("EV-A", "pm_card_visa"),  # then cancelled
}


@pytest.fixture
def nats_server() -> Iterator[natsserver.NatsServer]:
    server = natsserver.start()
    try:
        yield server
    finally:
        server.stop()


def more_placed(placed: list[str], count: int, within: float = 120.0) -> None:
    """Wait until the shoppers have placed ``count`` more orders (or ``within`` seconds have passed)."""
    target, deadline = len(placed) + count, time.monotonic() + within
    while len(placed) < target and time.monotonic() < deadline:
        time.sleep(0.05)


def shopper(s: System, index: int, stop: threading.Event, placed: list[str], flight: InFlight) -> None:
    """Orders of every outcome, one after another: placed (and now and then cancelled), declined,
    out of stock; each retried with its key while OrderService is down."""
    n = 0
    while not stop.is_set():
        n += 1
        kind = (index + n) % 4
        sku, method = KINDS[kind]
        body = {"customer_id": f"c{index}", "items": [{"sku": sku, "quantity": 1}], "payment_method": method}
        key = f"crash-{index}-{n}"
        order = None
        give_up = time.monotonic() + 60
        while order is None and time.monotonic() < give_up:
            try:
                with flight:
                    answer = s.http.post(f"{s.url('order')}/orders", json=body, headers={"Idempotency-Key": key})
                if answer.status_code in (200, 201, 202):
                    order = answer.json()
            except httpx.HTTPError:
                pass
            if order is None:
                time.sleep(0.2)  # OrderService is down: again with the same key
        if order is None:
            return
        placed.append(order["id"])
        time.sleep(PACE)  # a shopper's pace, so that a run makes a few hundred orders, not thousands
        if kind == 3 and order["status"] == "PLACED":
            # OrderService may die under it: the order stays PLACED, which is an outcome too.
            with contextlib.suppress(httpx.HTTPError):
                s.http.post(f"{s.url('order')}/orders/{order['id']}/cancel")


def every(s: System, path: str, service: str = "order") -> list[dict[str, Any]]:
    """Every item of a list of ``service`` (an OrderService process), page after page (the feed's
    last page is the first empty one)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["next"] = cursor
        page = s.http.get(f"{s.url(service)}{path}", params=params).json()
        items += page["items"]
        if not page["items"] or not page["next"]:
            return items
        cursor = page["next"]


async def stream_count(url: str) -> int:
    client = await nats.connect(url)
    try:
        return int((await client.jetstream().stream_info("OMS_EVENTS")).state.messages)
    finally:
        await client.close()


async def stream_ids(url: str) -> list[str]:
    return [message["body"]["id"] for message in await natsserver.stream_messages(url)]


def settled(s: System) -> list[dict[str, Any]]:
    orders = every(s, "/orders")
    return [o for o in orders if o["status"] == "PENDING" or o["saga_status"] in ("running", "waiting")]


@pytest.fixture
def flaky() -> Iterator[Receiver]:
    with receiver(failing=True) as state:
        yield state


def test_every_event_reaches_the_webhook_and_the_stream_through_two_crashes(
    make_system: Callable[..., System], flaky: Receiver, nats_server: natsserver.NatsServer
) -> None:
    s = make_system({
        "OMS_NATS_URL": nats_server.url, "OMS_WEBHOOK_TIMEOUT": "2", "OMS_WEBHOOK_RETRY_INITIAL": "0.1",
        "OMS_WEBHOOK_RETRY_MAX": "0.5",
    })  # fmt: skip
    s.put_item("EV-A", available=STOCK)
    s.put_item("EV-GONE", available=0)
    hook = s.http.post(f"{s.url('order')}/webhooks", json={"url": flaky.url, "events": ["*"]})
    assert hook.status_code == 201, hook.text
    flaky.secret = hook.json()["secret"]

    placed: list[str] = []
    stop, flight = threading.Event(), InFlight()
    shoppers = [threading.Thread(target=shopper, args=(s, i, stop, placed, flight)) for i in range(CLIENTS)]
    for thread in shoppers:
        thread.start()
    under_way = []
    for _ in range(2):
        more_placed(placed, PER_PHASE)
        under_way.append(flight.wait())  # then killed while one is under way
        s.kill("order")
        s.start("order")
    more_placed(placed, PER_PHASE)
    stop.set()  # the shoppers go on until the crashes are over, however long the restarts take
    for thread in shoppers:
        thread.join()
    assert all(n > 0 for n in under_way), under_way  # each kill broke an order under way
    assert len(placed) >= 20

    deadline = time.monotonic() + SETTLE
    while settled(s) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert settled(s) == []

    events = every(s, "/events")
    orders = {o["id"]: o for o in every(s, "/orders")}
    wanted = {e["id"] for e in events}
    while not set(flaky.delivered()) >= wanted and time.monotonic() < deadline:
        time.sleep(0.2)
    while asyncio.run(stream_count(nats_server.url)) < len(events) and time.monotonic() < deadline:
        time.sleep(0.2)

    # Each order's events: 1..n, created first, its final status last.
    by_order: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_order.setdefault(event["subject"], []).append(event)
    assert set(by_order) == set(orders)
    for order_id, its in by_order.items():
        assert [e["sequence"] for e in its] == list(range(1, len(its) + 1)), order_id
        assert its[0]["type"] == "oms.order.created"
        assert its[-1]["type"] == "oms.order." + orders[order_id]["status"].lower()

    # Every event delivered, every try signed, no try of an event before its predecessor was delivered.
    delivered = flaky.delivered()
    missing = {e["id"] for e in events} - set(delivered)
    assert not missing, f"{len(missing)} of {len(events)} events never delivered"
    with flaky.lock:
        tries = list(flaky.tries)
    assert all(t["valid"] for t in tries)
    done: set[tuple[str, int]] = set()
    for t in tries:
        event = t["event"]
        if event["sequence"] > 1:
            assert (event["subject"], event["sequence"] - 1) in done, f"{event['id']} tried before its predecessor"
        if t["status"] == 200:
            done.add((event["subject"], event["sequence"]))
    assert any(t["status"] != 200 for t in tries)  # the endpoint did fail: the retries were exercised

    # The stream: each event exactly once.
    ids = asyncio.run(stream_ids(nats_server.url))
    assert sorted(ids) == sorted(e["id"] for e in events)
