"""The load generator's HTTP client: one keep-alive HTTP/1.1 connection per simulated client, its
answers parsed by httptools (the parser uvicorn serves with).

Why not aiohttp, which the services use between themselves: the load generator shares the machine
with the services it measures, so every microsecond it spends is taken from them. Measured on two
cores under ``oms bench``: aiohttp's client cost 170 to 210 µs of CPU an order, this one about
50 µs. It does only what the benchmark needs: POST a JSON body, read the status and the body.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httptools


class Connection(asyncio.Protocol):
    """One client's connection; reopened when the server closes it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
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
        await loop.create_connection(lambda: self, self.host, self.port)

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
