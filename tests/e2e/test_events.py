"""The events feed against the three services as real processes: each order's changes of status
as CloudEvents (read with the CloudEvents SDK), numbered 1..n, ``created`` first and the final
status last; an admin reads every order's, a customer its own only; a long poll answers once an
order is placed meanwhile; and the refusals."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx
from cloudevents.http import from_json
from hooks import receiver
from system import System

from oms.auth.tokens import mint

TYPES = ("oms.order.created", "oms.order.placed", "oms.order.payment_failed", "oms.order.out_of_stock")


def sku() -> str:
    return "SKU-" + uuid.uuid4().hex[:8].upper()


def place(customer: httpx.Client, url: str, item: str, quantity: int, method: str = "pm_card_visa") -> str:
    body = {"items": [{"sku": item, "quantity": quantity}], "payment_method": method}
    answer = customer.post(f"{url}/orders", json=body, timeout=30)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def feed(client: httpx.Client, url: str, **params: Any) -> list[dict[str, Any]]:
    """Every event the caller may read (with ``params``), following ``next`` to the end."""
    events: list[dict[str, Any]] = []
    while True:
        answer = client.get(f"{url}/events", params={"limit": 5, **params})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        events += page["items"]
        if not page["items"]:
            return events
        params["next"] = page["next"]


def check_envelope(raw: dict[str, Any]) -> None:
    """The event as the CloudEvents SDK reads it, with every attribute the feed promises."""
    assert set(raw) == {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "sequence", "data"}
    event = from_json(httpx.Response(200, json=raw).content)
    assert event["specversion"] == "1.0"
    assert event["id"].startswith("evt_")
    assert event["source"] == "oms/order-service"
    assert event["datacontenttype"] == "application/json"
    assert event["time"] == raw["time"] and raw["time"].endswith("Z")
    assert event["subject"] == event.data["id"]
    assert isinstance(event["sequence"], int)
    assert event["type"] == "oms.order." + ("created" if event["sequence"] == 1 else event.data["status"].lower())
    assert "payment_method" not in event.data and "saga" not in event.data


def test_the_feed_shows_each_orders_changes_in_order_to_its_readers(shared_system: System) -> None:
    s = shared_system
    url = s.url("order")
    plenty, scarce = sku(), sku()
    s.put_item(plenty, available=100)
    s.put_item(scarce, available=1)
    mine, theirs = f"cust-{uuid.uuid4().hex[:8]}", f"cust-{uuid.uuid4().hex[:8]}"
    customer, other = s.customer(mine), s.customer(theirs)
    placed = place(customer, url, plenty, 1)
    declined = place(customer, url, plenty, 1, method="pm_card_chargeDeclined")
    short = place(customer, url, scarce, 2)
    elsewhere = place(other, url, plenty, 1)
    expected = {
        placed: ["oms.order.created", "oms.order.placed"],
        declined: ["oms.order.created", "oms.order.payment_failed"],
        short: ["oms.order.created", "oms.order.out_of_stock"],
        elsewhere: ["oms.order.created", "oms.order.placed"],
    }

    every = feed(s.http, url)
    for raw in every:
        check_envelope(raw)
    assert len({e["id"] for e in every}) == len(every)
    for order_id, types in expected.items():
        events = [e for e in every if e["subject"] == order_id]
        assert [e["type"] for e in events] == types, events
        assert [e["sequence"] for e in events] == [1, 2]
        assert events[-1]["data"] == {k: v for k, v in s.order(order_id).items() if k not in ("payment_method", "saga")}

    own = feed(customer, url)
    assert {e["subject"] for e in own} == {placed, declined, short}
    assert [e["id"] for e in own] == [e["id"] for e in every if e["subject"] in (placed, declined, short)]
    assert {e["subject"] for e in feed(other, url)} == {elsewhere}
    # A customer asking for another's order is shown nothing of it.
    assert feed(other, url, subject=placed) == []
    assert [e["type"] for e in feed(s.http, url, subject=declined)] == expected[declined]
    by_type = feed(s.http, url, type="oms.order.out_of_stock")
    assert short in {e["subject"] for e in by_type} and {e["type"] for e in by_type} == {"oms.order.out_of_stock"}


def test_a_long_poll_answers_when_an_order_is_placed_meanwhile(shared_system: System) -> None:
    s = shared_system
    url = s.url("order")
    item = sku()
    s.put_item(item, available=10)
    customer = s.customer(f"cust-{uuid.uuid4().hex[:8]}")
    first = place(customer, url, item, 1)
    page = customer.get(f"{url}/events").json()
    assert [e["subject"] for e in page["items"]] == [first, first]
    cursor = page["next"]
    assert customer.get(f"{url}/events", params={"next": cursor}).json() == {"items": [], "next": cursor}

    answers: list[httpx.Response] = []
    poll = threading.Thread(
        target=lambda: answers.append(customer.get(f"{url}/events", params={"next": cursor, "wait": 30}, timeout=60))
    )
    poll.start()
    second = place(customer, url, item, 1)
    poll.join(timeout=60)
    assert answers and answers[0].status_code == 200, answers
    woken = answers[0].json()
    assert woken["items"] and {e["subject"] for e in woken["items"]} == {second}
    assert woken["items"][0]["type"] == "oms.order.created"


def test_the_feed_refuses_who_may_not_read_it_and_what_it_does_not_know(shared_system: System) -> None:
    s = shared_system
    url = f"{s.url('order')}/events"
    assert httpx.get(url).status_code == 401
    nobody = mint(s.key, sub="nobody", scope="", ttl=3600)
    assert httpx.get(url, headers={"authorization": f"Bearer {nobody}"}).status_code == 403
    for params in ({"type": "oms.order.shipped"}, {"wait": "31"}, {"limit": "0"}, {"next": "garbage!"}):
        answer = s.http.get(url, params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")


def oms(s: System, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "oms", *args, "--url", s.url("order"), "--token", s.token]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_oms_events_prints_the_feed_and_follows_it(shared_system: System) -> None:
    s = shared_system
    url = s.url("order")
    item = sku()
    s.put_item(item, available=10)
    customer = s.customer(f"cust-{uuid.uuid4().hex[:8]}")
    first = place(customer, url, item, 1)

    listed = oms(s, "events", "--order", first, "--json")
    assert listed.returncode == 0, listed.stderr
    events = [from_json(line.encode()) for line in listed.stdout.splitlines()]
    assert [(e["type"], e["subject"], e["sequence"]) for e in events] == [
        ("oms.order.created", first, 1),
        ("oms.order.placed", first, 2),
    ]
    shown = oms(s, "events", "--order", first, "--type", "oms.order.placed")
    assert shown.returncode == 0, shown.stderr
    assert "oms.order.placed" in shown.stdout and first in shown.stdout and "PLACED" in shown.stdout
    assert "oms.order.created" not in shown.stdout

    command = [sys.executable, "-m", "oms", "events", "--follow", "--json", "--type", "oms.order.placed"]
    follower = subprocess.Popen(
        [*command, "--url", url, "--token", s.token], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in follower.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        second = place(customer, url, item, 1)
        while True:  # the history first, then the new order's (a line within the deadline, or queue.Empty)
            event = from_json(lines.get(timeout=30).encode())
            if event["subject"] == second:
                break
        assert event["type"] == "oms.order.placed"
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 0


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one sample of ``name`` (with exactly ``labels``, as written: ``type="..."``), else 0."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def test_the_relay_delivers_to_an_endpoint_and_counts_on_orderservices_metrics(shared_system: System) -> None:
    """A webhook registered on the running system gets the orders' events, signed; OrderService's
    /metrics shows the relay's counters (its own process) and the way's backlog at 0 once done."""
    s = shared_system
    url = s.url("order")
    with receiver() as hook:
        made = s.http.post(f"{url}/webhooks", json={"url": hook.url, "events": ["oms.order.placed"]})
        assert made.status_code == 201, made.text
        hook.secret, endpoint = made.json()["secret"], made.json()["id"]
        try:
            item = sku()
            s.put_item(item, available=10)
            customer = s.customer(f"cust-{uuid.uuid4().hex[:8]}")
            orders = [place(customer, url, item, 1) for _ in range(3)]
            deadline = time.monotonic() + 30
            while {e["subject"] for e in hook.delivered().values()} != set(orders) and time.monotonic() < deadline:
                time.sleep(0.1)
            delivered = list(hook.delivered().values())
            assert sorted(e["subject"] for e in delivered) == sorted(orders)
            assert {e["type"] for e in delivered} == {"oms.order.placed"}
            assert all(t["valid"] for t in hook.tries)
            while time.monotonic() < deadline:
                text = s.http.get(f"{url}/metrics").text
                counted = metric(text, "oms_events_total", 'type="oms.order.placed"')  # counted once a second
                if metric(text, "oms_webhook_deliveries_total", 'outcome="delivered"') >= 3 and counted >= 3:
                    break
                time.sleep(0.2)
            assert metric(text, "oms_webhook_deliveries_total", 'outcome="delivered"') >= 3
            assert metric(text, "oms_events_total", 'type="oms.order.placed"') >= 3
            assert metric(text, "oms_webhook_delivery_seconds_count") >= 3
            assert f'oms_outbox_oldest_seconds{{way="webhook:{endpoint}"}}' in text
            while True:  # each try is written with the relay's next write-back
                tries = s.http.get(f"{url}/webhooks/{endpoint}/deliveries").json()["items"]
                recorded = {t["order_id"] for t in tries if t["outcome"] == "delivered"}
                if recorded == set(orders) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert recorded == set(orders)
        finally:
            s.http.delete(f"{url}/webhooks/{endpoint}")
