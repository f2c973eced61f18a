"""The HTTP server's own limits (OWASP API4, unrestricted resource consumption), below the app.

uvicorn's httptools protocol reads headers of any size, waits for a request's bytes as long as the
client cares to send them, and takes as many connections from one client as it opens.
:class:`BoundedHttpToolsProtocol` adds, per connection:

- a cap on the connections one client address holds open in this process,
  ``max_connections_per_address`` (0: none). The connection past it is refused as it opens, in
  ``connection_made``, before a byte of it is read: it is answered a constant ``503`` problem+json
  with ``Retry-After: 1`` and closed at once. Why an answer, and why that one: a client whose
  connection is closed without a word cannot tell a refusal from a crash (aiohttp, which
  OrderService calls with, reports the request's outcome as unknown), while a ``503`` is a status
  every client and proxy understands, says the request was not processed, and is retried as
  transient by OrderService's clients; ``429`` would be the client's own fault to most of them,
  never retried. The bytes are one write and need no parsing (a ``503`` needs no ``Date``), and the
  connection is closed at once rather than lingering for the client to read them: a lingering
  refusal would hold a socket, the very thing the cap is there to bound (a client whose request was
  already in flight gets the answer all the same on Linux, which keeps what it received before
  the reset);
- a deadline for a request's head: a client has ``header_timeout`` seconds to send a request's
  line and headers whole, counted from when the connection opened for the first request (so that a
  connection cannot be held by sending nothing, or a byte now and then) and from its first byte for
  the next ones on a kept-alive connection (the wait between requests is uvicorn's keep-alive
  timeout's). A head late is answered ``408`` problem+json, a connection on which nothing came is
  closed without an answer;
- a bound on the request line and headers: past ``max_header_bytes`` the request is answered
  ``431`` problem+json and the connection closed, and the app is never started for it;
- a deadline for each request: a client has ``client_timeout`` seconds from a request's first byte
  (from connection open for the first request when it sends nothing) to send all of it, line,
  headers and body. A request whose headers never came whole is answered ``408`` problem+json;
  one whose body is late has its connection closed (the app, already started, sees
  ``http.disconnect``).

What it costs: a connection, a dict lookup and store when it opens and one when it closes; a
request, a few integer additions and comparisons, and one timer (armed at its first byte for the
shorter of the two deadlines, cancelled when it is complete; the first request on a connection uses
the one armed when it opened). Only a request still incomplete when that timer fires costs more: its
other deadline is worked out then, and the timer armed again for it. After a 431 or a 408 the
connection is half-closed and what the client still sends is read and dropped for a little while
(bounded in time and bytes), so that the client gets to read the answer instead of a reset.

The limits are read from a module-level holder, set from the Settings by :func:`set_limits` before
uvicorn starts (``oms.serve.serve``, and ``app_from_environment`` in each worker process). Each
process counts its own connections: with ``workers`` processes, an address may hold that many times
the cap.
"""

from __future__ import annotations

import asyncio
import http
import logging
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from oms.config import Settings


@dataclass(frozen=True, slots=True)
class Limits:
    """The server's limits, as the settings of the same names give them (their defaults and
    descriptions are there, once)."""

    max_header_bytes: int
    header_timeout: float
    client_timeout: float
    max_connections: int
    max_connections_per_address: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


_limits = Limits.of(Settings.model_construct())
"""The settings' defaults (read from no environment) until :func:`set_limits` puts the service's own."""


def set_limits(settings: Settings) -> None:
    global _limits
    _limits = Limits.of(settings)


class OpenConnections:
    """How many connections each client address holds open: one is taken when a connection opens and
    given back when it is lost. An address with none is not kept, so that the many addresses a
    long-running service sees over time do not pile up."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def take(self, address: str, cap: int) -> bool:
        """Counts one more connection from ``address``, unless it holds ``cap`` already: then nothing
        is counted, and False."""
        held = self._counts.get(address, 0)
        if held >= cap:
            return False
        self._counts[address] = held + 1
        return True

    def give(self, address: str) -> None:
        """The connection counted by a ``take`` of ``address`` that answered True is gone."""
        held = self._counts[address]
        if held > 1:
            self._counts[address] = held - 1
        else:
            del self._counts[address]

    def held(self, address: str) -> int:
        return self._counts.get(address, 0)

    def addresses(self) -> int:
        """Addresses with a connection open."""
        return len(self._counts)


open_connections = OpenConnections()
"""This process's (one event loop serves all its connections)."""


_TOO_MANY: dict[int, bytes] = {}


def _too_many_answer(cap: int) -> bytes:
    """The whole answer to a connection past ``max_connections_per_address``: it is the same for
    every such connection, so it is built once per cap."""
    answer = _TOO_MANY.get(cap)
    if answer is None:
        body = orjson.dumps(
            {
                "type": "/problems/too-many-connections", "title": "Too many connections", "status": 503,
                "detail": f"This address has {cap} connections open to this service, as many as it takes from one "
                "address; reuse them, or retry shortly.",
            }
        )  # fmt: skip
        answer = b"".join(
            [
                STATUS_LINE[503],
                b"content-type: application/problem+json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"retry-after: 1\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        _TOO_MANY[cap] = answer
    return answer


_REFUSALS_LOG_EVERY = 10.0
"""Seconds between two log lines about connections refused past the per-address cap: a flood of them
must not become a flood of log lines."""


class _Refusals:
    """Connections refused past the per-address cap since the last log line about them."""

    count = 0
    logged_at = float("-inf")


def _note_refusal(logger: logging.Logger, now: float, address: str, cap: int) -> None:
    _Refusals.count += 1
    if now - _Refusals.logged_at >= _REFUSALS_LOG_EVERY:
        logger.warning(
            "%d connection(s) refused past max_connections_per_address (%d) since the last such line, the "
            "last from %s: 503.", _Refusals.count, cap, address,
        )  # fmt: skip
        _Refusals.count = 0
        _Refusals.logged_at = now


_BUSY = orjson.dumps(
    {
        "type": "/problems/overloaded", "title": "Busy", "status": 503,
        "detail": "The service has as many connections and requests in progress as it takes; retry shortly.",
    }
)  # fmt: skip


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    """The answer past the connection cap (uvicorn's own is text/plain, without Retry-After)."""
    headers = [(b"content-type", b"application/problem+json"), (b"retry-after", b"1"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _BUSY})


# Where the connection's current request stands.
_IDLE = 0  # between requests: no byte of the next one parsed yet
_HEAD = 1  # its line and headers are arriving
_BODY = 2  # its headers are complete (the app runs), its body is arriving

_HEADER_FRAMING = 4  # ": " and CRLF around each header, so that many tiny headers count too

# After a refusal, what the client still sends is read and dropped, for this long and this much at
# most, before the connection is closed: closing a socket with unread bytes makes the kernel send a
# reset, which can reach the client before it has read the answer (RFC 9112, section 9.6).
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1 << 20


class _Refused(Exception):
    """Raised from ``on_headers_complete`` to stop httptools: ``feed_data`` then raises
    ``HttpParserCallbackError`` (with this one as its ``__context__``) and parses nothing more, so
    neither ``on_body`` nor ``on_message_complete`` is called for the refused request; and nothing is
    fed to the parser after a refusal."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a per-address connection cap, a header-size limit and
    deadlines for a request's head and for all of it."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        current = _limits
        self._max_connections = current.max_connections
        self._per_address = current.max_connections_per_address
        self._max_head = current.max_header_bytes
        self._header_timeout = current.header_timeout
        self._client_timeout = current.client_timeout
        self._first_wait = min(current.header_timeout, current.client_timeout)  # what a request's timer is armed for
        self._address: str | None = None  # counted in open_connections while this connection is open
        self._phase = _IDLE
        self._begun = 0  # requests begun on this connection
        self._chunk = 0  # bytes in the chunk being parsed
        # What the chunks received so far tell of the size of the current request's line and headers:
        self._head_whole = 0  # chunks that were all head: a lower bound, against one endless header
        self._head_touched = 0  # chunks that held some of it, the one being parsed aside: with it, an upper bound
        self._deadline: asyncio.TimerHandle | None = None
        self._opened = False  # the deadline was armed at connection open, and no byte has come since
        self._first_byte_at = 0.0  # loop.time() of the first byte on the connection
        self._refused = False  # nothing more is parsed on this connection nor given to the app
        self._dropped = 0  # bytes read and dropped since the refusal
        self._owed: bytes | None = None  # what to send, and then close, once the response in progress is out

    # -- connection ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap = self._per_address
        if cap and self.client is not None:
            address = self.client[0]
            if not open_connections.take(address, cap):
                self._refuse_connection(address, cap)
                return
            self._address = address
        self._deadline = self.loop.call_later(self._first_wait, self._timed_out)
        self._opened = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self._release_address()
        super().connection_lost(exc)

    def _refuse_connection(self, address: str, cap: int) -> None:
        """Past the per-address cap: answered and closed before anything is read (see the module's
        docstring for why this way). uvicorn's shutdown and its connection cap never see it."""
        self.connections.discard(self)
        self._refused = True
        self.transport.write(_too_many_answer(cap))
        self.transport.close()
        _note_refusal(self.logger, self.loop.time(), address, cap)

    def _release_address(self) -> None:
        address, self._address = self._address, None
        if address is not None:
            open_connections.give(address)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, but a request refused from a parser callback is not answered 400, and the size
        # of a head that spans chunks is kept track of.
        if self._refused:
            self._dropped += len(data)
            if self._dropped > _LINGER_BYTES:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self._deadline is None:  # the first byte of the next request (if only a stray CRLF)
            self._deadline = self.loop.call_later(self._first_wait, self._timed_out)
        elif self._opened:  # the first byte on the connection: its request's client_timeout counts from now
            self._opened = False
            self._first_byte_at = self.loop.time()  # (looked at when the timer fires, if it still has to)
        phase, begun = self._phase, self._begun
        self._chunk = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, _Refused):  # by on_headers_complete, which answered already
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._phase == _HEAD:  # a head goes on past this chunk (rare: most come whole in one)
            self._head_touched += len(data)
            if phase == _HEAD and self._begun == begun:
                # It began before this chunk, so all of this chunk is head: httptools keeps a header
                # until it ends, and one that never does must be stopped before on_headers_complete.
                self._head_whole += len(data)
                if self._head_whole > self._max_head:
                    self._refuse_head()

    def handle_websocket_upgrade(self) -> None:
        self._cancel_deadline()  # the connection is the WebSocket protocol's from now on
        self._release_address()  # and this protocol's connection_lost will not be called
        super().handle_websocket_upgrade()

    # -- parser callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEAD
        self._head_whole = self._head_touched = 0
        self._begun += 1
        if self._deadline is None:  # a request pipelined behind one that completed in this chunk
            self._deadline = self.loop.call_later(self._first_wait, self._timed_out)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        # The head is counted only when the chunks it came in could hold more than the limit: a
        # request that came whole in a small chunk costs one comparison.
        if self._head_touched + self._chunk > self._max_head and self._head_size() > self._max_head:
            self._refuse_head()
            raise _Refused  # the app is not started; the parser stops here, before the body
        self._phase = _BODY
        # The connection cap: uvicorn's limit_concurrency would count this connection against itself
        # and answer text/plain; past the cap, the request is given an app that answers 503 problem+json.
        if len(self.connections) > self._max_connections or len(self.tasks) >= self._max_connections:
            serving, self.app = self.app, _busy
            try:
                super().on_headers_complete()
            finally:
                self.app = serving
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._phase = _IDLE
        self._cancel_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._owed is not None and not self.pipeline:
            self.server_state.total_requests += 1
            if not self.transport.is_closing():
                self._answer_and_close(self._owed)
            return
        super().on_response_complete()

    # -- refusals -----------------------------------------------------------------------------------

    def _head_size(self) -> int:
        headers = self.headers
        return len(self.url) + sum(len(name) + len(value) for name, value in headers) + _HEADER_FRAMING * len(headers)

    def _refuse_head(self) -> None:
        """The request's line and headers are over the limit: 431."""
        self.logger.warning("%sRequest line and headers over %d bytes: 431.", self._prefix(), self._max_head)
        detail = f"The request line and headers together are over {self._max_head} bytes."
        self._refuse(self._problem(431, "/problems/headers-too-large", detail))

    def _timed_out(self) -> None:
        """The timer a request's clock started (the connection opened, for the first request; its
        first byte, for the next ones) fired, ``min(header_timeout, client_timeout)`` later."""
        fired, self._deadline = self._deadline, None
        if self._refused or self.transport.is_closing():
            return
        start = fired.when() - self._first_wait if fired is not None else self.loop.time() - self._first_wait
        self._expire(start)

    def _expire(self, start: float) -> None:
        """A deadline of the request whose clock started at ``start`` (loop.time()) may be past:
        refuse the request if one is, else arm the timer again for the next one."""
        self._deadline = None
        if self._refused or self.transport.is_closing():
            return
        if self._opened:  # nothing came on the connection: no request to answer, close it
            self.logger.debug("%sNothing received within %ss: connection closed.", self._prefix(), self._first_wait)
            self._refuse(b"")
            return
        now = self.loop.time()
        # The request's first byte: the first request's was noted when it came; the next ones' clocks
        # start with it (then the one noted is older than the start).
        first_byte = self._first_byte_at if self._first_byte_at >= start else start
        whole_due = first_byte + self._client_timeout
        head_due = start + self._header_timeout
        due = whole_due if self._phase == _BODY else min(head_due, whole_due)
        if now < due:
            self._deadline = self.loop.call_later(due - now, self._expire, start)
            return
        if self.flow.read_paused:
            # uvicorn stopped reading (a body the app has not taken yet, a pipelined request queued):
            # the client cannot be late for bytes that are not read. Its clocks start again.
            self._deadline = self.loop.call_later(self._first_wait, self._expire, now)
            return
        client = self._prefix()
        if self._phase == _BODY:
            self.logger.info("%sRequest body not received within %ss: connection closed.", client, self._client_timeout)
            self._refused = True
            self.transport.close()  # the app sees http.disconnect
        elif self._phase == _HEAD:
            if head_due <= whole_due:
                late = self._header_timeout
                detail = f"The request's line and headers were not received whole within {late:g} seconds."
            else:
                late = self._client_timeout
                detail = f"The request was not received whole within {late:g} seconds."
            self.logger.info("%sRequest headers not received within %ss: 408.", client, late)
            self._refuse(self._problem(408, "/problems/request-timeout", detail))
        else:  # nothing of a request but stray line ends: close, as uvicorn's keep-alive timeout does
            self._refuse(b"")

    def _refuse(self, answer: bytes) -> None:
        """Parse nothing more; send ``answer`` and close, now or once the response in progress is out."""
        self._refused = True
        self._cancel_deadline()
        if (self.cycle is None or self.cycle.response_complete) and not self.pipeline:
            self._answer_and_close(answer)
        else:
            self.flow.pause_reading()  # until that response is out
            self._owed = answer

    def _answer_and_close(self, answer: bytes) -> None:
        if not answer or not self.transport.can_write_eof():
            if answer:
                self.transport.write(answer)
            self.transport.close()
            return
        # Half-close: the client reads the answer, then end of stream. The connection is closed when
        # the client closes its side (eof_received), or after the linger time, or past its bytes.
        self.transport.write(answer)
        self.transport.write_eof()
        self.flow.resume_reading()
        linger = min(_LINGER_SECONDS, self._client_timeout)
        self._deadline = self.loop.call_later(linger, self.transport.close)

    def _problem(self, status: int, type_: str, detail: str) -> bytes:
        """A whole HTTP/1.1 response with an RFC 9457 problem+json body, closing the connection."""
        title = http.HTTPStatus(status).phrase
        body = orjson.dumps({"type": type_, "title": title, "status": status, "detail": detail})
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/problem+json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        return b"".join(content)

    def _prefix(self) -> str:
        return f"{self.client[0]}:{self.client[1]} - " if self.client else ""

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
