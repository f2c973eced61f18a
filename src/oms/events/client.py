"""The HTTP/1.1 client of webhook deliveries: kept-alive connections to each receiver (http, or https
through the standard library's TLS), answers parsed by httptools (the parser uvicorn serves with).

Why not aiohttp, which the services use between themselves: the relay shares the machine with the
services whose orders make its events, and every microsecond it spends is taken from them. Measured
with a minimal server in the same process, 16 POSTs in flight (the server's share included): 72 to
83 µs of CPU a POST through aiohttp, 27 µs through this one; under ``oms bench --webhook`` aiohttp's
POSTs were the relay's largest cost (BENCHMARKS.md, "Webhooks and NATS"). It does only what a
delivery needs: POST a body with its headers, learn the status, read and drop up to 64 KiB of the
answer. No redirects (a 3xx is
an answer like any other), no cookies, no proxies, no compression.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

import httptools

from oms.errors import OmsError

URL_SAFE = "/?&=%:@!$'()*+,;~-._#[]"
"""What a request target keeps as it is; anything else (a space, a non-ASCII letter) is percent-encoded."""

ANSWER_READ_LIMIT = 64 * 1024
"""Bytes of an answer's body read (then dropped) before the connection is closed instead."""


class DeliveryError(OmsError):
    """No status came: the reason, as shown in a delivery's ``error``."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[int] | None = None
        self.status: int | None = None
        self.read = 0
        self.keep = True
        self.interim = False
        self.closed = False
        self.heard = False
        """Any byte of an answer to the request under way came (a reused connection that closes
        without a byte was closed by its server while idle: the request may go again on a new one)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, answer: asyncio.Future[int]) -> None:
        assert self.transport is not None
        self.answer, self.status, self.read, self.heard = answer, None, 0, False
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.heard = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._end(DeliveryError(f"not an HTTP answer: {exc}"))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        # An interim answer (100 Continue, 103 Early Hints...) is not the answer: the final one follows.
        self.interim = 100 <= status < 200 and status != 101
        if not self.interim:
            self.status = status
            self.keep = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.read += len(body)
        if self.read > ANSWER_READ_LIMIT:  # the status stands; the rest is not worth reading
            self.keep = False
            self._end(None)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self._end(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end(None if self.status is not None else DeliveryError("connection closed without an answer"))

    def _end(self, error: Exception | None) -> None:
        answer, self.answer = self.answer, None
        if answer is not None and not answer.done():
            if error is None and self.status is not None:
                answer.set_result(self.status)
            else:
                answer.set_exception(error or DeliveryError("connection closed without an answer"))
        if not self.keep or error is not None:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    @property
    def usable(self) -> bool:
        return (
            not self.closed and self.answer is None and self.transport is not None and not self.transport.is_closing()
        )


def _expire(answer: asyncio.Future[int], late: Exception) -> None:
    if not answer.done():
        answer.set_exception(late)


class Pool:
    """Kept-alive connections to each receiver (``idle_per_host`` kept at most); as many requests at
    once as its callers make (the relay holds each endpoint to ``webhook.concurrency``)."""

    def __init__(self, idle_per_host: int = 16, tls: ssl.SSLContext | None = None) -> None:
        self.idle_per_host = idle_per_host
        self.tls = tls or ssl.create_default_context()
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, *, time_limit: float) -> int:
        """POST ``body`` to ``url``: the answer's status, within ``time_limit`` seconds (connecting
        included), else ``DeliveryError`` saying why not."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DeliveryError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        if parts.port is not None:
            host += f":{parts.port}"
        # An IRI's path and query as ASCII (percent-encoded UTF-8); what is encoded already stays.
        target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=URL_SAFE)
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {target} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n{lines}\r\n".encode("latin-1")
            + body
        )
        key = (parts.scheme, parts.hostname, port)
        late = DeliveryError(f"no answer within {time_limit:g} s")
        deadline = asyncio.get_running_loop().time() + time_limit
        connection, reused = await self._connection(key, deadline, late)
        try:
            return await self._exchange(connection, request, key, deadline, late)
        except DeliveryError as exc:
            if exc is late or not reused or connection.heard:
                raise
        # A kept-alive connection its server had closed while idle: once more, on a new one.
        connection, _ = await self._connection(key, deadline, late, fresh=True)
        return await self._exchange(connection, request, key, deadline, late)

    async def _exchange(
        self, connection: _Connection, request: bytes, key: tuple[str, str, int], deadline: float, late: Exception
    ) -> int:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[int] = loop.create_future()
        # A timer on the answer rather than asyncio.timeout: a third of the cost, on every delivery.
        timer = loop.call_at(deadline, _expire, answer, late)
        connection.send(request, answer)
        try:
            status = await answer
        except BaseException:
            connection.close()
            raise
        finally:
            timer.cancel()
        if connection.usable:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.idle_per_host:
                idle.append(connection)
            else:
                connection.close()
        return status

    async def _connection(
        self, key: tuple[str, str, int], deadline: float, late: Exception, *, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        idle = self._idle.get(key, [])
        while idle and not fresh:
            connection = idle.pop()
            if connection.usable:
                return connection, True
        scheme, hostname, port = key
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                _, connection = await loop.create_connection(
                    _Connection, hostname, port, ssl=self.tls if scheme == "https" else None
                )
        except TimeoutError:
            raise late from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"TLS failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise DeliveryError(f"cannot connect: {exc.strerror or exc!r}") from None
        return connection, False

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
