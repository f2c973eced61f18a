"""The load generator's HTTP client: one keep-alive HTTP/1.1 connection per simulated client, its
answers parsed by httptools (the parser uvicorn serves with).

Why not aiohttp, which the services use between themselves: the load generator shares the machine
with the services it measures, so every microsecond it spends is taken from them. Measured on two
cores under ``oms bench``: aiohttp's client cost 170 to 210 µs of CPU an order, this one about
50 µs. It does only what the benchmark needs: POST a JSON body, read the status and the body.

And the slow clients of ``oms bench --flood``: :class:`Flood` keeps many connections open to a
service from one address, each sending the start of a request and never the rest, as a slowloris
attack does; :class:`FloodProcess` runs one in a process of its own, so that its work is not done
on the event loop whose latencies the benchmark measures.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httptools


class Connection(asyncio.Protocol):
    """One client's connection; reopened when the server closes it."""

    def __init__(self, url: str, source: str | None = None) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.source = source
        """The local address to connect from (None: the one the route gives)."""
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._chunks: list[bytes] = []

    async def post(self, path: str, body: bytes, extra_headers: str = "") -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``path``; the answer's status and body."""
        if self._transport is None or self._transport.is_closing():
            await self._open()
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        self._chunks = []
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra_headers}\r\n"
        )
        self._transport.write(head.encode() + body)
        return await self._answer

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        local = (self.source, 0) if self.source is not None else None
        await loop.create_connection(lambda: self, self.host, self.port, local_addr=local)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(ConnectionError("the server closed the connection"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_result((self._parser.get_status_code(), b"".join(self._chunks)))
        if not self._parser.should_keep_alive():
            self.close()

    def _fail(self, exc: Exception) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(exc)


# -- slow clients -------------------------------------------------------------------------------------

FLOOD_SOURCE = "127.0.0.2"
"""Where ``oms bench --flood`` connects from: Linux routes all of 127.0.0.0/8 to the loopback
interface, so a process may bind any of its addresses without setup, and the flood is one address
apart from the benchmark's clients on 127.0.0.1."""

DRIP_SECONDS = 2.0
"""How often a slow client sends one more header line, never the blank line that would end its head."""

RECONNECT_PAUSE = 1.0
"""Seconds a slow client waits before connecting again after its connection was refused (the
``Retry-After`` it was given) or could not be made; one closed after being held reconnects at once."""


@dataclass
class FloodFigures:
    connections: int
    """Slow connections the flood keeps trying to hold."""
    source: str
    opened: int = 0
    """Connections made (the server's kernel accepted them)."""
    refused: int = 0
    """Answered ``503`` as they opened: past the service's per-address or total cap."""
    timed_out: int = 0
    """Answered ``408``: held until their head was late."""
    closed: int = 0
    """Closed by the server with no answer, or reset."""
    failed: int = 0
    """Connection attempts that failed (refused, no port, backlog full)."""
    held_peak: int = 0
    """Most connections open at once that the server had answered nothing on (sampled every 0.2 s):
    those it holds, and those its kernel accepted that it has not taken yet."""


class _SlowClient(asyncio.Protocol):
    def __init__(self, head: bytes) -> None:
        self.head = head
        self.transport: asyncio.Transport | None = None
        self.answer = b""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drip: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self.transport.write(self.head)
        self._drip = asyncio.get_running_loop().call_later(DRIP_SECONDS, self._send_more)

    def _send_more(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"x-slow: 1\r\n")
            self._drip = asyncio.get_running_loop().call_later(DRIP_SECONDS, self._send_more)

    def data_received(self, data: bytes) -> None:
        if len(self.answer) < 64:
            self.answer += data[:64]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._drip is not None:
            self._drip.cancel()
        if not self.closed.done():
            self.closed.set_result(None)


class Flood:
    """``count`` slow connections to ``url`` from ``source``, each made again when it is closed."""

    def __init__(self, url: str, count: int, source: str = FLOOD_SOURCE) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.source = source
        self.figures = FloodFigures(connections=count, source=source)
        head = f"POST /orders HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
        self._head = head.encode()
        self._clients: set[_SlowClient] = set()
        self._tried = 0
        self._all_tried = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Starts the slow clients; returns once each has tried to connect once."""
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.figures.connections)]
        self._tasks.append(asyncio.create_task(self._sample()))
        await self._all_tried.wait()

    async def stop(self) -> FloodFigures:
        self._stopping = True
        for client in list(self._clients):
            if client.transport is not None:
                client.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return self.figures

    async def _client(self) -> None:
        loop = asyncio.get_running_loop()
        figures = self.figures
        while not self._stopping:
            try:
                _, client = await loop.create_connection(
                    lambda: _SlowClient(self._head), self.host, self.port, local_addr=(self.source, 0)
                )
            except OSError:
                figures.failed += 1
                self._note_tried()
                await asyncio.sleep(RECONNECT_PAUSE)
                continue
            figures.opened += 1
            self._clients.add(client)
            self._note_tried()
            try:
                await client.closed
            finally:
                self._clients.discard(client)
            if client.answer.startswith(b"HTTP/1.1 503"):
                figures.refused += 1
                await asyncio.sleep(RECONNECT_PAUSE)
            elif client.answer.startswith(b"HTTP/1.1 408"):
                figures.timed_out += 1
            else:
                figures.closed += 1

    def _note_tried(self) -> None:
        self._tried += 1
        if self._tried >= self.figures.connections:
            self._all_tried.set()

    async def _sample(self) -> None:
        while True:
            held = sum(1 for client in self._clients if client.transport is not None and not client.answer)
            self.figures.held_peak = max(self.figures.held_peak, held)
            await asyncio.sleep(0.2)


def _flood_main(url: str, count: int, source: str) -> None:
    """A flood process's life (``python -m oms.cli.loadgen URL COUNT SOURCE``): start, say ``ready``
    on standard output, hold until standard input ends, then write its figures as one JSON line."""

    async def main() -> None:
        flood = Flood(url, count, source)
        await flood.start()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes it (or dies)
        figures = await flood.stop()
        sys.stdout.write(json.dumps(asdict(figures)) + "\n")
        sys.stdout.flush()

    try:
        import uvloop
    except ImportError:  # pragma: no cover (uvicorn[standard] brings it)
        asyncio.run(main())
    else:
        uvloop.run(main())


class FloodProcess:
    """A :class:`Flood` in a process of its own: ``with FloodProcess(url, 2000) as flood:`` holds the
    connections (each has tried once when the block begins); ``flood.figures`` after it."""

    def __init__(self, url: str, count: int, source: str = FLOOD_SOURCE, *, start_timeout: float = 60) -> None:
        self._command = [sys.executable, "-m", "oms.cli.loadgen", url, str(count), source]
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[str] | None = None
        self.figures: dict[str, Any] = {}

    def __enter__(self) -> FloodProcess:
        process = self._process = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        ready = threading.Timer(self._start_timeout, process.kill)  # a flood that never starts is stopped
        ready.start()
        try:
            line = process.stdout.readline()
        finally:
            ready.cancel()
        if line.strip() != "ready":
            process.kill()
            process.wait()
            raise RuntimeError(f"the flood did not start (exit code {process.returncode}); its output: {line!r}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        process = self._process
        assert process is not None
        try:
            out, _ = process.communicate(timeout=30)  # closes its standard input: the flood stops
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        lines = out.strip().splitlines()
        self.figures = json.loads(lines[-1]) if lines else {}


if __name__ == "__main__":
    _flood_main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
