"""One webhook delivery over real HTTP, to a receiver on 127.0.0.1 (an aiohttp server on a port the
system chose) that verifies every request with the Standard Webhooks reference library and reads the
event with the CloudEvents SDK: 2xx, 500, 410, a redirect (not followed), a connection dropped without
an answer, no answer in time, nobody listening."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cloudevents.http import from_http
from standardwebhooks import Webhook

from oms.events.sender import Attempt, deliver, new_pool
from oms.events.signing import SigningSecret, new_secret, rotate, sign

SECRET = new_secret()
EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "evt_01JTESTSENDER",
    "source": "oms/order-service",
    "type": "oms.order.placed",
    "subject": "ord_1",
    "time": "2026-12-06T05:00:00Z",
    "datacontenttype": "application/json",
    "sequence": 2,
    "data": {"id": "ord_1", "status": "PLACED", "total": "12.50"},
}
BODY = json.dumps(EVENT).encode()


@dataclass
class Receiver:
    base: str
    received: list[dict[str, Any]] = field(default_factory=list)
    """Each request that reached a handler: its path, whether the signature verified, the event read."""
    release: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver("")

    async def note(request: web.Request) -> None:
        body = await request.read()
        try:
            Webhook(SECRET).verify(body, dict(request.headers))
            verified = True
        except Exception:
            verified = False
        event = from_http(dict(request.headers), body)  # structured mode: the attributes are in the body
        state.received.append(
            {"path": request.path, "verified": verified, "headers": dict(request.headers), "event": event}
        )

    def answering(status: int) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            await note(request)
            return web.Response(status=status, text="noted")

        return handle

    async def redirect(request: web.Request) -> web.StreamResponse:
        await note(request)
        raise web.HTTPTemporaryRedirect("/ok")

    async def stall(request: web.Request) -> web.StreamResponse:
        await note(request)
        await state.release.wait()  # released when the test ends: the sender's time limit is what ends the try
        return web.Response(status=200)

    async def drop(request: web.Request) -> web.StreamResponse:
        await note(request)
        assert request.transport is not None
        request.transport.close()  # gone without a word
        return web.Response(status=200)

    app = web.Application()
    for path, status in [("/ok", 200), ("/accepted", 202), ("/no-content", 204), ("/fail", 500), ("/gone", 410)]:
        app.router.add_post(path, answering(status))
    app.router.add_post("/redirect", redirect)
    app.router.add_post("/stall", stall)
    app.router.add_post("/drop", drop)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.base = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


def run(path: str, time_limit: float = 10.0) -> tuple[Attempt, list[dict[str, Any]]]:
    async def scenario() -> tuple[Attempt, list[dict[str, Any]]]:
        async with receiver() as where, new_pool() as session:
            attempt = await deliver(
                session, where.base + path, EVENT["id"], BODY, [SigningSecret(SECRET)], time_limit=time_limit
            )
            return attempt, where.received

    return asyncio.run(scenario())


def test_a_2xx_is_delivered_signed_and_read_as_a_structured_cloudevent() -> None:
    for path, status in [("/ok", 200), ("/accepted", 202), ("/no-content", 204)]:
        attempt, received = run(path)
        assert (attempt.status, attempt.error, attempt.delivered) == (status, None, True)
        assert attempt.duration > 0
        [request] = received
        assert request["verified"]
        assert request["headers"]["webhook-id"] == EVENT["id"]
        assert request["headers"]["Content-Type"] == "application/cloudevents+json; charset=utf-8"
        event = request["event"]
        assert (event["id"], event["type"], event["subject"], event["sequence"]) == (
            EVENT["id"], "oms.order.placed", "ord_1", 2
        )  # fmt: skip
        assert event.data == EVENT["data"]


def test_a_500_and_a_410_are_answers_but_not_deliveries() -> None:
    for path, status in [("/fail", 500), ("/gone", 410)]:
        attempt, received = run(path)
        assert (attempt.status, attempt.error, attempt.delivered) == (status, None, False)
        assert [r["verified"] for r in received] == [True]


def test_a_redirect_is_not_followed_and_is_no_delivery() -> None:
    attempt, received = run("/redirect")
    assert (attempt.status, attempt.delivered) == (307, False)
    assert [r["path"] for r in received] == ["/redirect"]  # /ok never reached


def test_a_connection_dropped_without_an_answer_is_an_error() -> None:
    attempt, received = run("/drop")
    assert (attempt.status, attempt.delivered) == (None, False)
    assert attempt.error == "connection closed without an answer"
    assert [r["verified"] for r in received] == [True]


def test_no_answer_within_the_time_limit_is_an_error() -> None:
    attempt, received = run("/stall", time_limit=0.3)
    assert (attempt.status, attempt.error, attempt.delivered) == (None, "no answer within 0.3 s", False)
    assert attempt.duration >= 0.3
    assert len(received) == 1


def test_nobody_listening_is_an_error() -> None:
    async def scenario() -> Attempt:
        async with receiver() as where:
            gone = where.base
        async with new_pool() as session:  # the receiver's port is closed now
            return await deliver(session, gone + "/ok", "evt_1", BODY, [SigningSecret(SECRET)], time_limit=5)

    attempt = asyncio.run(scenario())
    assert attempt.status is None and attempt.error is not None and attempt.error.startswith("cannot connect")


def test_each_try_is_signed_afresh() -> None:
    clock = iter([1_000.0, 2_000.0])  # two tries' clocks; the receiver's check needs a real one, so read below

    async def scenario() -> list[dict[str, Any]]:
        async with receiver() as where, new_pool() as session:
            for _ in range(2):
                at = next(clock)
                await deliver(
                    session, where.base + "/fail", EVENT["id"], BODY, [SigningSecret(SECRET)],
                    time_limit=5, clock=lambda at=at: at,  # type: ignore[misc]
                )  # fmt: skip
            return where.received

    first, second = (r["headers"] for r in asyncio.run(scenario()))
    assert (first["webhook-timestamp"], second["webhook-timestamp"]) == ("1000", "2000")
    assert first["webhook-id"] == second["webhook-id"] == EVENT["id"]
    assert first["webhook-signature"] != second["webhook-signature"]


def test_after_a_rotation_a_receiver_with_either_secret_verifies_for_24_hours() -> None:
    new, secrets = rotate([SigningSecret(SECRET)], time.time() - 23 * 3600)  # rotated 23 hours ago

    async def scenario() -> dict[str, str]:
        async with receiver() as where, new_pool() as session:  # the receiver verifies with the old SECRET
            attempt = await deliver(session, where.base + "/ok", "evt_r", BODY, secrets, time_limit=5)
            assert attempt.delivered
            [request] = where.received
            assert request["verified"]
            return dict(request["headers"])

    headers = asyncio.run(scenario())
    Webhook(new).verify(BODY, headers)  # and a receiver already on the new secret verifies it too
    assert len(headers["webhook-signature"].split(" ")) == 2


def test_cost_of_signing_and_sending_one_delivery() -> None:
    """Prints what one delivery costs (signing included) over keep-alive to a receiver on this machine."""
    rounds = 500

    async def scenario() -> tuple[float, float]:
        async with receiver() as where, new_pool() as session:
            await deliver(session, where.base + "/ok", "evt_w", BODY, [SigningSecret(SECRET)], time_limit=5)
            started = time.perf_counter()
            for n in range(rounds):
                attempt = await deliver(
                    session, where.base + "/no-content", f"evt_{n}", BODY, [SigningSecret(SECRET)], time_limit=5
                )
                assert attempt.delivered
            sent = time.perf_counter() - started
            started = time.perf_counter()
            for n in range(rounds):
                sign(f"evt_{n}", BODY, [SigningSecret(SECRET)], time.time())
            return sent, time.perf_counter() - started

    sent, signed = asyncio.run(scenario())
    print(f"\nwebhook delivery: {sent / rounds * 1e6:.0f} µs each (receiver verifying in the same process), "
          f"of which signing {signed / rounds * 1e6:.1f} µs; body {len(BODY)} bytes, {rounds} rounds")  # fmt: skip
