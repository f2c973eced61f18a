"""The ``/webhooks`` routes and ``oms webhooks`` against the three services as real processes: an admin
registers, reads, changes, rotates and removes an endpoint; ``test`` sends a signed CloudEvent at once
to a real receiver in this process, verified with the Standard Webhooks reference library; ``replay``
queues the matching events; and every refusal (a customer, no token, a URL that is not http(s), an
unknown event type, an unknown id, a bad ``since``) is a problem that changes nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from cloudevents.http import from_http
from standardwebhooks import Webhook
from system import System

PROBLEM = "application/problem+json"
NOBODY = "we_000000000000000000000000"
"""A well-formed id that names no endpoint."""


class Receiver:
    """A webhook receiver on 127.0.0.1 (port 0), on its own thread's event loop: ``/ok`` answers 200,
    ``/fail`` 500; every request it gets is kept (path, headers, body)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, dict(request.headers), await request.read()))
        return web.Response(status=200 if request.path == "/ok" else 500)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/ok", self.handle)
        app.router.add_post("/fail", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def create(s: System, url: str, events: list[str] | None = None, description: str = "") -> dict[str, Any]:
    answer = s.http.post(
        s.url("order") + "/webhooks", json={"url": url, "events": events or ["*"], "description": description}
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == f"/webhooks/{answer.json()['id']}"
    return dict(answer.json())


def closed_port_url() -> str:
    """An http URL where nothing listens (a port just let go)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def test_an_admin_registers_reads_changes_rotates_and_removes_an_endpoint(shared_system: System) -> None:
    s = shared_system
    base = s.url("order") + "/webhooks"
    made = create(s, "https://shop.example/hooks/oms", ["oms.order.placed", "oms.order.cancelled"], "fulfilment")
    assert made["secret"].startswith("whsec_")
    Webhook(made["secret"])  # a secret the reference library takes
    assert {k: made[k] for k in ("url", "events", "description", "status", "disabled_reason", "waiting")} == {
        "url": "https://shop.example/hooks/oms", "events": ["oms.order.placed", "oms.order.cancelled"],
        "description": "fulfilment", "status": "enabled", "disabled_reason": None, "waiting": 0,
    }  # fmt: skip
    endpoint_id = made["id"]
    shown = s.http.get(f"{base}/{endpoint_id}").json()
    assert shown == {k: v for k, v in made.items() if k != "secret"}

    listed, cursor = [], None
    while True:  # other tests' endpoints may be there too
        page = s.http.get(base, params={"limit": 2, **({"next": cursor} if cursor else {})}).json()
        listed += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert shown in listed and all("secret" not in w for w in listed)

    disabled = s.http.patch(f"{base}/{endpoint_id}", json={"status": "disabled"})
    assert disabled.status_code == 200, disabled.text
    assert (disabled.json()["status"], disabled.json()["disabled_reason"]) == ("disabled", "disabled by an admin")
    changed = s.http.patch(
        f"{base}/{endpoint_id}", json={"status": "enabled", "events": ["*"], "url": "http://shop.example:8080/h"}
    ).json()
    assert (changed["status"], changed["disabled_reason"], changed["events"], changed["url"]) == (
        "enabled", None, ["*"], "http://shop.example:8080/h",
    )  # fmt: skip
    assert "secret" not in changed

    rotated = s.http.post(f"{base}/{endpoint_id}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != made["secret"]

    assert s.http.delete(f"{base}/{endpoint_id}").status_code == 204
    gone = s.http.get(f"{base}/{endpoint_id}")
    assert gone.status_code == 404 and gone.headers["content-type"] == PROBLEM
    assert s.http.delete(f"{base}/{endpoint_id}").status_code == 404


def test_test_sends_one_signed_cloudevent_at_once_and_records_it(shared_system: System, receiver: Receiver) -> None:
    s = shared_system
    base = s.url("order") + "/webhooks"
    made = create(s, receiver.base + "/ok", ["oms.order.placed"])
    endpoint_id = made["id"]
    before = len(receiver.received)

    tried = s.http.post(f"{base}/{endpoint_id}/test")
    assert tried.status_code == 200, tried.text
    attempt = tried.json()
    assert (attempt["outcome"], attempt["status_code"], attempt["error"], attempt["try"]) == ("test", 200, None, 1)
    assert (attempt["event_type"], attempt["order_id"], attempt["sequence"]) == ("oms.webhook.test", None, None)
    [(path, headers, body)] = receiver.received[before:]  # sent before the answer: no wait
    assert path == "/ok" and headers["Content-Type"].startswith("application/cloudevents+json")
    verified = Webhook(made["secret"]).verify(body, headers)
    assert verified["type"] == "oms.webhook.test" and verified["data"] == {"webhook_id": endpoint_id}
    event = from_http(headers, body)  # a structured CloudEvent, as the SDK reads it
    assert event["id"] == headers["webhook-id"] == attempt["event_id"] and event["source"] == "oms/order-service"

    # Rotated: the next try is signed by both secrets, so a receiver still on the old one verifies.
    new_secret = s.http.post(f"{base}/{endpoint_id}/rotate-secret").json()["secret"]
    assert s.http.post(f"{base}/{endpoint_id}/test").json()["status_code"] == 200
    _, headers, body = receiver.received[-1]
    for secret in (made["secret"], new_secret):
        assert Webhook(secret).verify(body, headers)["data"] == {"webhook_id": endpoint_id}

    # A receiver that fails, and one that is not there: the try says so, and the call is still 200.
    assert s.http.patch(f"{base}/{endpoint_id}", json={"url": receiver.base + "/fail"}).status_code == 200
    failed = s.http.post(f"{base}/{endpoint_id}/test").json()
    assert (failed["status_code"], failed["error"]) == (500, None)
    assert s.http.patch(f"{base}/{endpoint_id}", json={"url": closed_port_url()}).status_code == 200
    refused = s.http.post(f"{base}/{endpoint_id}/test").json()
    assert refused["status_code"] is None and refused["error"].startswith("cannot connect")

    page = s.http.get(f"{base}/{endpoint_id}/deliveries", params={"limit": 3}).json()
    assert [a["id"] for a in page["items"]] == [refused["id"], failed["id"], sorted(a["id"] for a in page["items"])[0]]
    assert page["items"][2]["status_code"] == 200 and page["next"] is not None
    rest = s.http.get(f"{base}/{endpoint_id}/deliveries", params={"next": page["next"]}).json()
    assert [a["id"] for a in rest["items"]] == [attempt["id"]] and rest["next"] is None
    s.http.delete(f"{base}/{endpoint_id}")


def test_replay_queues_the_endpoints_events_since_a_time(shared_system: System) -> None:
    s = shared_system
    url = s.url("order")
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()  # +00:00, not Z: any offset is taken
    item = "SKU-" + uuid.uuid4().hex[:8].upper()
    s.put_item(item, available=10)
    for _ in range(2):
        order = s.http.post(
            f"{url}/orders",
            json={"customer_id": "c-replay", "items": [{"sku": item, "quantity": 1}], "payment_method": "pm_card_visa"},
        )
        assert order.status_code == 201 and order.json()["status"] == "PLACED", order.text
    # Nothing listens at the endpoint: what is queued stays queued, whatever a relay does with it.
    made = create(s, closed_port_url(), ["oms.order.placed"])
    placed = [
        e for e in s.http.get(f"{url}/events", params={"type": "oms.order.placed", "limit": 1000}).json()["items"]
        if datetime.fromisoformat(e["time"]) >= datetime.fromisoformat(since)
    ]  # fmt: skip
    assert len(placed) >= 2
    replayed = s.http.post(f"{url}/webhooks/{made['id']}/replay", json={"since": since})
    assert replayed.status_code == 202, replayed.text
    assert replayed.json() == {"queued": len(placed)}
    assert s.http.get(f"{url}/webhooks/{made['id']}").json()["waiting"] == len(placed)
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert s.http.post(f"{url}/webhooks/{made['id']}/replay", json={"since": later}).json() == {"queued": 0}
    s.http.delete(f"{url}/webhooks/{made['id']}")


def test_every_refusal_is_a_problem_and_changes_nothing(shared_system: System) -> None:
    s = shared_system
    base = s.url("order") + "/webhooks"
    made = create(s, "https://shop.example/kept", ["oms.order.placed"])
    endpoint_id = made["id"]
    kept = s.http.get(f"{base}/{endpoint_id}").json()
    count = len(s.http.get(base, params={"limit": 1000}).json()["items"])
    customer = s.customer("c-webhooks")
    anonymous = httpx.Client(headers={"content-type": "application/json"}, timeout=10)

    def refused(answer: httpx.Response, status: int, *words: str) -> None:
        assert answer.status_code == status, (answer.request.method, answer.request.url, answer.text)
        assert answer.headers["content-type"] == PROBLEM
        for word in words:
            assert word in answer.json()["detail"], answer.json()

    calls: list[tuple[str, str, Any]] = [
        ("POST", base, {"url": "https://evil.example/", "events": ["*"]}),
        ("GET", base, None),
        ("GET", f"{base}/deliveries?order_id=ord_x", None),
        ("GET", f"{base}/{endpoint_id}", None),
        ("PATCH", f"{base}/{endpoint_id}", {"status": "disabled"}),
        ("DELETE", f"{base}/{endpoint_id}", None),
        ("POST", f"{base}/{endpoint_id}/rotate-secret", None),
        ("GET", f"{base}/{endpoint_id}/deliveries", None),
        ("POST", f"{base}/{endpoint_id}/replay", {"since": "2020-01-01T00:00:00Z"}),
        ("POST", f"{base}/{endpoint_id}/test", None),
    ]
    for method, where, body in calls:
        refused(customer.request(method, where, json=body), 403)
        refused(anonymous.request(method, where, json=body), 401)

    for bad in ("ftp://x", "javascript:alert(1)", "https://", "http:///path", "/hooks", "shop.example/hook",
                "https://shop example/", "https://x.example/" + "a" * 2000, "http://[::1/"):  # fmt: skip
        refused(s.http.post(base, json={"url": bad, "events": ["*"]}), 422, "url")
        refused(s.http.patch(f"{base}/{endpoint_id}", json={"url": bad}), 422, "url")
    for events in (["oms.order.shipped"], ["*", "oms.order.placed"], [], "oms.order.placed"):
        answer = s.http.post(base, json={"url": "https://shop.example/", "events": events})
        refused(answer, 422, "events")
    refused(s.http.post(base, json={"url": "https://shop.example/", "events": ["oms.order.shipped"]}), 422,
            "oms.order.shipped")  # fmt: skip
    refused(s.http.patch(f"{base}/{endpoint_id}", json={"status": "paused"}), 422, "status")
    refused(s.http.patch(f"{base}/{endpoint_id}", json={"secrets": []}), 422, "secrets")
    for since in ("2026-12-06T07:00:00", "2026-12-06", "yesterday", "2026-13-01T00:00:00Z", 1700000000):
        refused(s.http.post(f"{base}/{endpoint_id}/replay", json={"since": since}), 422, "since")
    refused(s.http.get(f"{base}/deliveries"), 422, "order_id")
    refused(s.http.get(f"{base}/{endpoint_id}/deliveries", params={"next": "bad"}), 422, "next")

    for method, suffix, body in [
        ("GET", "", None), ("PATCH", "", {"status": "disabled"}), ("DELETE", "", None),
        ("POST", "/rotate-secret", None), ("GET", "/deliveries", None),
        ("POST", "/replay", {"since": "2020-01-01T00:00:00Z"}), ("POST", "/test", None),
    ]:  # fmt: skip
        refused(s.http.request(method, f"{base}/{NOBODY}{suffix}", json=body), 404, NOBODY)
        refused(s.http.request(method, f"{base}/not-an-id{suffix}", json=body), 422)

    assert s.http.get(f"{base}/{endpoint_id}").json() == kept
    assert len(s.http.get(base, params={"limit": 1000}).json()["items"]) == count
    assert s.http.get(f"{base}/{endpoint_id}/deliveries").json()["items"] == []
    s.http.delete(f"{base}/{endpoint_id}")


def test_the_deliveries_of_an_order_are_listed_for_it(shared_system: System) -> None:
    """What an order's page shows: none here (the relay writes them; tests/integration covers the list)."""
    answer = shared_system.http.get(shared_system.url("order") + "/webhooks/deliveries", params={"order_id": "ord_x"})
    assert answer.status_code == 200 and answer.json() == {"items": []}


def oms(s: System, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "oms", "webhooks", *args, "--url", s.url("order"), "--token", s.token]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_oms_webhooks_manages_endpoints_at_a_terminal(shared_system: System, receiver: Receiver) -> None:
    s = shared_system
    added = oms(s, "add", receiver.base + "/ok", "--event", "oms.order.placed", "--description", "cli", "--json")
    assert added.returncode == 0, added.stderr
    made = orjson.loads(added.stdout)
    endpoint_id, secret = made["id"], made["secret"]
    assert made["events"] == ["oms.order.placed"] and made["description"] == "cli"

    every = oms(s, "add", "https://shop.example/all")
    assert every.returncode == 0 and "whsec_" in every.stdout and "shown this once" in every.stdout
    listed = oms(s, "list")
    assert listed.returncode == 0 and endpoint_id in listed.stdout and "whsec_" not in listed.stdout
    shown = oms(s, "show", endpoint_id)
    assert shown.returncode == 0 and receiver.base in shown.stdout and "whsec_" not in shown.stdout
    assert "disabled" in oms(s, "disable", endpoint_id).stdout
    assert s.http.get(f"{s.url('order')}/webhooks/{endpoint_id}").json()["status"] == "disabled"
    assert oms(s, "enable", endpoint_id).returncode == 0
    assert s.http.get(f"{s.url('order')}/webhooks/{endpoint_id}").json()["status"] == "enabled"

    before = len(receiver.received)
    tested = oms(s, "test", endpoint_id)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "oms.webhook.test" in tested.stdout and "200" in tested.stdout
    _, headers, body = receiver.received[before]
    Webhook(secret).verify(body, headers)
    deliveries = oms(s, "deliveries", endpoint_id)
    assert deliveries.returncode == 0 and "oms.webhook.test" in deliveries.stdout
    replayed = oms(s, "replay", endpoint_id, "--since", "2999-01-01T00:00:00Z")
    assert replayed.returncode == 0 and "queued 0" in replayed.stdout
    bad = oms(s, "replay", endpoint_id, "--since", "yesterday")
    assert bad.returncode == 1 and "since" in bad.stdout + bad.stderr

    assert oms(s, "remove", endpoint_id).returncode == 0
    missing = oms(s, "show", endpoint_id)
    assert missing.returncode == 1 and "404" in missing.stdout + missing.stderr
    refused = oms(s, "add", "ftp://x")
    assert refused.returncode == 1 and "422" in refused.stdout + refused.stderr
