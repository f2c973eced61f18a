"""Events to NATS JetStream, on a real ``nats-server`` (tests/natsserver.py): the stream made when
missing, a repeated publish stored once, messages read back with nats-py, and NATS going away and
coming back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig

import natsserver
from natsserver import stream_messages
from oms.events.nats import STREAM, EventStream, NatsUnavailable

RETENTION = 30 * 86400.0


def event(n: int, kind: str = "placed") -> tuple[str, str, bytes]:
    body = {"specversion": "1.0", "id": f"evt_{n}", "source": "oms/order-service", "type": f"oms.order.{kind}",
            "subject": f"ord_{n}", "sequence": 1, "datacontenttype": "application/json", "data": {"n": n}}  # fmt: skip
    return str(body["id"]), str(body["type"]), json.dumps(body).encode()


@pytest.fixture
def nats_server() -> Iterator[natsserver.NatsServer]:
    server = natsserver.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_stream_is_created_when_missing_with_its_subjects_and_retention(nats_server: natsserver.NatsServer) -> None:
    async def scenario() -> tuple[StreamConfig, StreamConfig]:
        stream = EventStream(nats_server.url, retention=RETENTION)
        await stream.open()
        await stream.close()
        client = await nats.connect(nats_server.url)
        try:
            created = (await client.jetstream().stream_info(STREAM)).config
        finally:
            await client.close()
        shorter = EventStream(nats_server.url, retention=86400.0)  # the stream exists: only its age changes
        await shorter.open()
        await shorter.close()
        client = await nats.connect(nats_server.url)
        try:
            return created, (await client.jetstream().stream_info(STREAM)).config
        finally:
            await client.close()

    created, kept = asyncio.run(scenario())
    assert (created.subjects, created.max_age, created.duplicate_window) == (["oms.>"], RETENTION, 120.0)
    assert (kept.subjects, kept.max_age) == (["oms.>"], 86400.0)


def test_a_publish_repeated_lands_once_on_the_subject_of_its_type(nats_server: natsserver.NatsServer) -> None:
    async def scenario() -> list[Any]:
        stream = EventStream(nats_server.url, retention=RETENTION)
        await stream.open()
        try:
            first = await stream.publish(*event(1))
            again = await stream.publish(*event(1))  # a relay that crashed before noting the first
            other = await stream.publish(*event(2, "payment_failed"))
            return [first, again, other, await stream_messages(nats_server.url)]
        finally:
            await stream.close()

    first, again, other, messages = asyncio.run(scenario())
    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again.sequence == first.sequence
    assert [(m["subject"], m["headers"]["Nats-Msg-Id"], m["body"]["id"]) for m in messages] == [
        ("oms.order.placed", "evt_1", "evt_1"),
        ("oms.order.payment_failed", "evt_2", "evt_2"),
    ]
    assert messages[0]["body"]["data"] == {"n": 1}


def test_nats_down_is_an_error_to_try_later_and_publishing_works_once_it_is_back(
    nats_server: natsserver.NatsServer,
) -> None:
    async def scenario() -> tuple[list[str], list[dict[str, Any]]]:
        stream = EventStream(nats_server.url, retention=RETENTION, publish_timeout=1.0)
        await stream.open()
        errors: list[str] = []
        try:
            await stream.publish(*event(1))
            nats_server.stop_process()
            with pytest.raises(NatsUnavailable) as down:
                await stream.publish(*event(2))  # the relay keeps evt_2 in the outbox...
            errors.append(str(down.value))
            nats_server.start_again()
            deadline = time.monotonic() + 60
            while True:  # ... and tries again until NATS takes it (the client reconnects by itself)
                try:
                    await stream.publish(*event(2))
                    break
                except NatsUnavailable as exc:
                    if time.monotonic() > deadline:
                        raise
                    errors.append(str(exc))
                    await asyncio.sleep(0.1)
            await stream.publish(*event(3))
            return errors, await stream_messages(nats_server.url)
        finally:
            await stream.close()

    errors, messages = asyncio.run(scenario())
    assert "not acknowledged" in errors[0]
    # evt_2's first try may have left in the client's buffer and reached the server on reconnecting: its
    # id made the later tries land on it. Each event is in the stream once.
    assert [m["body"]["id"] for m in messages] == ["evt_1", "evt_2", "evt_3"]


def test_nats_unreachable_at_start_is_an_error_to_try_later(nats_server: natsserver.NatsServer) -> None:
    url = nats_server.url
    nats_server.stop_process()

    async def scenario() -> None:
        stream = EventStream(url, retention=RETENTION, connect_timeout=1.0)
        try:
            await stream.open()
        finally:
            await stream.close()

    with pytest.raises(NatsUnavailable, match="cannot connect to NATS"):
        asyncio.run(scenario())


def test_a_cluster_is_given_as_its_servers_comma_separated(nats_server: natsserver.NatsServer) -> None:
    gone = natsserver.start()
    gone.stop()  # nothing listens on its port now: the client moves on to the next server

    async def scenario() -> bool:
        stream = EventStream(f"{gone.url}, {nats_server.url}", retention=RETENTION, connect_timeout=1.0)
        await stream.open()
        try:
            return (await stream.publish(*event(1))).duplicate
        finally:
            await stream.close()

    assert asyncio.run(scenario()) is False
    assert [m["body"]["id"] for m in asyncio.run(stream_messages(nats_server.url))] == ["evt_1"]


def test_cost_of_publishing_one_event(nats_server: natsserver.NatsServer) -> None:
    """Prints what one acknowledged publish costs, one at a time as the relay publishes, to a local server."""
    rounds = 500

    async def scenario() -> float:
        stream = EventStream(nats_server.url, retention=RETENTION)
        await stream.open()
        try:
            started = time.perf_counter()
            for n in range(rounds):
                await stream.publish(*event(n))
            return time.perf_counter() - started
        finally:
            await stream.close()

    took = asyncio.run(scenario())
    print(f"\nnats publish (acknowledged, file storage): {took / rounds * 1e6:.0f} µs each, {rounds} rounds")
