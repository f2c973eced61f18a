"""``oms bench --webhook``'s webhook receiver: a process of its own that takes every delivery, checks it,
and times it: from the event's ``time`` (written in the transaction that changed the order's status)
to the moment the whole request has arrived here, both on this machine's UTC wall clock.

Why not aiohttp's server: the receiver shares the machine's cores with the system it measures, so
every microsecond it spends is taken from the relay it times. It is a bare HTTP/1.1 keep-alive server
on uvloop that reads only what it needs (the request head's ``content-length`` and the three
``webhook-*`` headers, then the body) and answers ``200`` with an empty body; its CPU shows apart in
the bench's report because it runs as a process of its own.

What it checks, each delivery: the Standard Webhooks signature (``oms.events.signing``; one that does
not verify is counted as invalid), a ``webhook-id`` seen before (a duplicate: at least once allows
it, the bench reports it), and per order, an event whose ``sequence`` is lower than one already
received for that order (out of order: the relay promises it never happens).

The bench talks to it over its standard input and output (:class:`ReceiverProcess`), one JSON object a
line each way: it first prints ``{"url"}`` once it listens; then answers each command: ``{"secret": S}`` (the endpoint's
secret, known only once the endpoint is registered: deliveries that came before are checked then),
``{"expect": [event ids]}`` (the events that must come, and that the figures are about: not those of
the order the bench primes the relay with), ``{"progress": true}`` (how many have, and
how many of the expected are missing) and ``{"report": true}`` (the figures). End of input ends it.

Run by hand: ``python -m oms.cli.receiver [--host H] [--port P]``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import orjson

from oms.events.signing import SecretError, secret_key, signature

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
MAX_HEAD = 16 * 1024
MAX_BODY = 4 * 1024 * 1024
COMMAND_LIMIT = 256 * 1024 * 1024
"""Bytes of one command line at most: ``expect`` lists every event of the measured orders (about 40
bytes each)."""
WANTED = (b"content-length", b"webhook-id", b"webhook-timestamp", b"webhook-signature", b"connection")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def figures(seconds: list[float]) -> dict[str, float]:
    """p50, p95, p99 and the maximum of ``seconds``, in milliseconds."""
    return {
        name: round(percentile(seconds, q) * 1000, 2)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
    }


@dataclass
class Delivery:
    """What one request brought: the three headers, the body, when it had all arrived."""

    msg_id: str
    timestamp: str
    signatures: str
    body: bytes
    arrived: float


@dataclass(frozen=True)
class Arrival:
    """An event's first delivery: when, seconds after the event's ``time``, its type and order."""

    at: float
    latency: float
    kind: str
    order: str


@dataclass
class Tally:
    """Everything received, counted."""

    key: bytes | None = None
    """The endpoint secret's HMAC key; None until the bench tells the secret."""
    unchecked: list[Delivery] = field(default_factory=list)
    """Deliveries that came before the secret was told."""
    requests: int = 0
    seen: dict[str, Arrival] = field(default_factory=dict)
    """Each event received (by ``webhook-id``): its first arrival."""
    duplicates: int = 0
    out_of_order: int = 0
    invalid_signatures: int = 0
    malformed: int = 0
    """Requests that were not a webhook delivery at all: no ``webhook-id``, a body that is not an event."""
    highest: dict[str, int] = field(default_factory=dict)
    """Each order's highest ``sequence`` received so far."""
    expected: set[str] = field(default_factory=set)
    """The events the figures are about (the measured orders'); until told, every one received."""

    def take(self, delivery: Delivery) -> None:
        self.requests += 1
        if self.key is None:
            self.unchecked.append(delivery)
        else:
            self.check(delivery)

    def check(self, delivery: Delivery) -> None:
        assert self.key is not None
        try:
            timestamp = int(delivery.timestamp)
        except ValueError:
            self.invalid_signatures += 1
            return
        ours = signature(self.key, delivery.msg_id, timestamp, delivery.body)
        if ours not in delivery.signatures.split(" "):
            self.invalid_signatures += 1
            return
        try:
            event = orjson.loads(delivery.body)
            order, sequence, kind = str(event["subject"]), int(event["sequence"]), str(event["type"])
            written = datetime.fromisoformat(event["time"]).timestamp()
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.malformed += 1
            return
        if delivery.msg_id in self.seen:
            self.duplicates += 1  # a repeat is not judged for order: at least once allows it
            return
        self.seen[delivery.msg_id] = Arrival(delivery.arrived, delivery.arrived - written, kind, order)
        if sequence < self.highest.get(order, 0):
            self.out_of_order += 1
        else:
            self.highest[order] = sequence

    def set_secret(self, secret: str) -> None:
        self.key = secret_key(secret)
        waiting, self.unchecked = self.unchecked, []
        for delivery in waiting:
            self.check(delivery)

    def counted(self) -> list[Arrival]:
        """The arrivals the figures are about: the expected events', once told."""
        if not self.expected:
            return list(self.seen.values())
        return [arrival for msg_id, arrival in self.seen.items() if msg_id in self.expected]

    def progress(self) -> dict[str, Any]:
        return {
            "received": len(self.seen),
            "missing": len(self.expected.difference(self.seen)),
            "unchecked": len(self.unchecked),
        }

    def report(self) -> dict[str, Any]:
        counted = self.counted()
        by_type: dict[str, list[float]] = {}
        for arrival in counted:
            by_type.setdefault(arrival.kind, []).append(arrival.latency)
        return {
            "requests": self.requests,
            "received": len(counted),
            "others": len(self.seen) - len(counted),
            "expected": len(self.expected),
            "missing": len(self.expected.difference(self.seen)),
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "invalid_signatures": self.invalid_signatures,
            "malformed": self.malformed,
            "unchecked": len(self.unchecked),
            "orders": len({arrival.order for arrival in counted}),
            "latency_ms": figures([arrival.latency for arrival in counted]),
            "latency_ms_by_type": {kind: figures(seconds) for kind, seconds in sorted(by_type.items())},
            "last_arrival": max((arrival.at for arrival in counted), default=0.0),
        }


class Connection(asyncio.Protocol):
    """One keep-alive connection from the relay: requests read one after another (pipelined ones too),
    each answered ``200`` once its body is in."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: dict[bytes, bytes] | None = None
        """The current request's wanted headers, once its head is in."""
        self.length = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's, which is not asyncio.Transport's subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        arrived = time.time()
        while self.transport is not None:
            if self.head is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > MAX_HEAD:
                        self.refuse()
                    return
                head = self.parse_head(bytes(self.buffer[:end]))
                del self.buffer[: end + 4]
                if head is None:
                    self.refuse()
                    return
                self.head = head
            if len(self.buffer) < self.length:
                return
            body = bytes(self.buffer[: self.length])
            del self.buffer[: self.length]
            head, self.head = self.head, None
            if b"webhook-id" in head:
                self.tally.take(
                    Delivery(
                        head[b"webhook-id"].decode("latin-1"),
                        head.get(b"webhook-timestamp", b"").decode("latin-1"),
                        head.get(b"webhook-signature", b"").decode("latin-1"),
                        body,
                        arrived,
                    )
                )
            else:
                self.tally.malformed += 1
            self.transport.write(OK)
            if head.get(b"connection", b"").lower() == b"close":
                self.transport.close()

    def parse_head(self, head: bytes) -> dict[bytes, bytes] | None:
        """The wanted headers, names in lower case; None for a head this server does not take (not
        HTTP/1.1, a chunked body, a body too large)."""
        lines = head.split(b"\r\n")
        if not lines[0].endswith(b" HTTP/1.1"):
            return None
        found: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name in WANTED:
                found[name] = value.strip()
            elif name == b"transfer-encoding":
                return None
        try:
            self.length = int(found.get(b"content-length", b"0"))
        except ValueError:
            return None
        if not 0 <= self.length <= MAX_BODY:
            return None
        return found

    def refuse(self) -> None:
        self.tally.malformed += 1
        if self.transport is not None:
            self.transport.write(BAD)
            self.transport.close()


async def serve(host: str, port: int) -> None:
    """Listen, say where, then answer the bench's commands until its end of input."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    server = await loop.create_server(lambda: Connection(tally), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()
    say({"url": f"http://{bound[0]}:{bound[1]}/webhook"})
    commands = asyncio.StreamReader(limit=COMMAND_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    try:
        while line := await commands.readline():
            say(obey(tally, orjson.loads(line)))
    finally:
        server.close()


def obey(tally: Tally, command: dict[str, Any]) -> dict[str, Any]:
    if "secret" in command:
        try:
            tally.set_secret(command["secret"])
        except SecretError as exc:
            return {"error": str(exc)}
        return {"ok": True}
    if "expect" in command:
        tally.expected = set(command["expect"])
        return {"ok": True}
    if "progress" in command:
        return tally.progress()
    if "report" in command:
        return tally.report()
    return {"error": f"unknown command {sorted(command)}"}


def say(answer: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(answer) + b"\n")
    sys.stdout.buffer.flush()


class ReceiverProcess:
    """The receiver run as ``python -m oms.cli.receiver`` beside the bench, and the bench's end of the
    conversation with it. ``pid``: its process, whose CPU the bench reads."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oms.cli.receiver", "--host", host], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.pid = self.process.pid
        try:
            self.url: str = self._read()["url"]
        except BaseException:
            self.close()
            raise

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command; its answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps(command) + b"\n")
        self.process.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(f"the webhook receiver refused {sorted(command)}: {answer['error']}")
        return answer

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the webhook receiver exited ({self.process.wait()})")
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    def close(self) -> None:
        """End of input ends it; killed if it has not ended within 10 s."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> ReceiverProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A webhook receiver that counts, checks and times deliveries.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: one the system picks)")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
