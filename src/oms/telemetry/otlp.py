"""Spans written as OTLP protobuf by hand (``ExportTraceServiceRequest``, opentelemetry-proto's
``trace.proto``), and sent in batches over OTLP/HTTP from a thread of their own.

Why by hand: the SDK's exporter builds each span as protobuf message objects, field by field, about
26 µs a span here; the few fields our spans have are written below as bytes in a few µs. The test
(tests/unit/test_otlp.py) decodes what this writes with opentelemetry-proto's own classes.

Wire format (protobuf): a field is its key, ``field number << 3 | wire type`` as a varint, then a
varint (type 0), 8 little-endian bytes (type 1), a length and bytes (type 2) or 4 bytes (type 5).
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import struct
import sys
import threading
import urllib.parse
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from oms.telemetry.spans import Span

log = logging.getLogger("oms.telemetry.otlp")

Value = str | bool | int | float


def varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64: two's complement, ten bytes
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(key: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2) whose key fits one byte (field numbers 1 to 15)."""
    return bytes((key << 3 | 2,)) + varint(len(payload)) + payload


def _text(key: int, text: str) -> bytes:
    return _field(key, text.encode())


def any_value(value: Value) -> bytes:
    """An ``AnyValue``: string_value 1, bool_value 2, int_value 3, double_value 4."""
    if isinstance(value, str):
        return _text(1, value)
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value)
    return b"\x21" + struct.pack("<d", value)


_PAIRS: dict[tuple[str, type, Value], bytes] = {}
_UNIQUE = frozenset({"oms.order_id", "oms.request_id"})
"""Attributes whose values are new on every span: not kept in ``_PAIRS``, where every other
attribute (a route, a step's name, an outcome) is written once and then looked up."""


def attributes(key: int, values: Mapping[str, Value]) -> bytes:
    """Repeated ``KeyValue`` (key 1, value 2) as field ``key`` of the message around them."""
    if not values:
        return b""
    out = []
    for name, value in values.items():
        pair = (name, value.__class__, value)  # the class too: True == 1 == 1.0, and they hash alike
        found = _PAIRS.get(pair)
        if found is None:
            message = _text(1, name) + _field(2, any_value(value))
            found = varint(len(message)) + message  # the field's length and body: its key is the caller's
            if name not in _UNIQUE:
                if len(_PAIRS) >= 4096:
                    _PAIRS.clear()
                _PAIRS[pair] = found
        out.append(found)
    key_byte = bytes((key << 3 | 2,))
    return key_byte + key_byte.join(out)


_START, _END = b"\x39", b"\x41"  # start_time_unix_nano 7, end_time_unix_nano 8: fixed64
_FLAGS = b"\x85\x01"  # flags 16, fixed32: the W3C trace flags, and whether the parent is remote
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_PACK_Q = struct.Struct("<Q").pack
_PACK_I = struct.Struct("<I").pack


_NAMES: dict[str, bytes] = {}  # span names, written: a route or a step's, a few of them


def span(s: Span) -> bytes:
    """A ``Span``: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, times 7 and 8,
    attributes 9, events 11, links 13, status 15, flags 16."""
    parts = [
        b"\x0a\x10",
        s.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        s.span_id.to_bytes(8, "big"),
    ]
    flags = 1 | _HAS_IS_REMOTE
    if s.parent_id:
        parts += (b"\x22\x08", s.parent_id.to_bytes(8, "big"))
        if s.remote_parent:
            flags |= _IS_REMOTE
    written = _NAMES.get(s.name)
    if written is None:
        written = _text(5, s.name)
        if len(_NAMES) < 1024:
            _NAMES[s.name] = written
    parts += (
        written,
        b"\x30",
        bytes((s.kind,)),
        _START,
        _PACK_Q(s.start),
        _END,
        _PACK_Q(s.end),
        attributes(9, s.attributes),
    )
    for when, name, values in s.events:
        parts.append(_field(11, b"\x09" + _PACK_Q(when) + _text(2, name) + attributes(3, values)))
    for trace_id, span_id, values in s.links:
        link = b"\x0a\x10" + trace_id.to_bytes(16, "big") + b"\x12\x08" + span_id.to_bytes(8, "big")
        parts.append(_field(13, link + attributes(4, values) + b"\x35" + _PACK_I(1 | _HAS_IS_REMOTE | _IS_REMOTE)))
    if s.error is not None:
        parts.append(_field(15, (_text(2, s.error) if s.error else b"") + b"\x18\x02"))  # code 2: ERROR
    parts += (_FLAGS, _PACK_I(flags))
    return b"".join(parts)


def request(resource: Mapping[str, Value], scope: str, spans: Iterable[Span]) -> bytes:
    """An ``ExportTraceServiceRequest`` of one resource and one instrumentation scope."""
    return envelope(resource, scope, [entry(s) for s in spans])


def entry(s: Span) -> bytes:
    """A span as an entry of ``ScopeSpans.spans`` (field 2)."""
    return _field(2, span(s))


def envelope(resource: Mapping[str, Value], scope: str, entries: list[bytes]) -> bytes:
    """The ``ExportTraceServiceRequest`` around spans written by :func:`entry`."""
    body = b"".join(entries)
    scope_spans = _field(1, _text(1, scope)) + body
    resource_spans = _field(1, attributes(1, resource)) + _field(2, scope_spans)
    return _field(1, resource_spans)


# -- configuration ------------------------------------------------------------------------------------


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not a number") from None


def _pairs(raw: str) -> dict[str, str]:
    """``key=value,key=value`` (W3C baggage form, values percent-encoded), as the OTLP variables take."""
    found = {}
    for item in raw.split(","):
        if "=" in item:
            key, _, value = item.partition("=")
            found[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return found


@dataclass(frozen=True)
class Options:
    """Where and how spans leave: the OTLP exporter's and the batch processor's standard variables."""

    endpoint: str = "http://localhost:4318/v1/traces"
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    gzip: bool = False
    delay: float = 5.0
    queue_size: int = 2048
    batch_size: int = 512

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Options:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if not endpoint:
            base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318"
            endpoint = base.rstrip("/") + "/v1/traces"
        if urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError(f"OTEL_EXPORTER_OTLP_ENDPOINT: {endpoint!r} is not an http(s) URL")

        def either(name: str) -> str:
            return environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(f"OTEL_EXPORTER_OTLP_{name}", "")

        compression = either("COMPRESSION").strip().lower()
        if compression not in ("", "none", "gzip"):
            raise ValueError(f"OTEL_EXPORTER_OTLP_COMPRESSION: {compression!r} is not one of gzip, none")
        timeout_ms = _number({"t": either("TIMEOUT")}, "t", 10_000)
        return cls(
            endpoint=endpoint,
            headers=_pairs(either("HEADERS")),
            timeout=timeout_ms / 1000,
            gzip=compression == "gzip",
            delay=_number(environ, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000,
            queue_size=max(1, int(_number(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048))),
            batch_size=max(1, int(_number(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512))),
        )


# -- sending --------------------------------------------------------------------------------------------


class Sender:
    """POSTs encoded batches to the OTLP/HTTP endpoint over one kept-alive connection; a batch
    refused with 429, 502, 503 or 504 (or not answered) is tried again, three times in all."""

    RETRY = frozenset({429, 502, 503, 504})

    def __init__(self, options: Options) -> None:
        self.options = options
        parts = urllib.parse.urlsplit(options.endpoint)
        self._https = parts.scheme == "https"
        self._host = parts.netloc
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {**options.headers, "Content-Type": "application/x-protobuf"}
        if options.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._connection: http.client.HTTPConnection | None = None

    def send(self, body: bytes) -> bool:
        if self.options.gzip:
            body = gzip.compress(body)
        import stamina

        try:
            for attempt in stamina.retry_context(on=_Retry, attempts=3, timeout=self.options.timeout * 3):
                with attempt:
                    self._post(body)
        except (OSError, http.client.HTTPException, _Retry) as exc:
            log.warning("spans not exported to %s: %s", self.options.endpoint, exc)
            return False
        return True

    def _post(self, body: bytes) -> None:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._connection = kind(self._host, timeout=self.options.timeout)
        try:
            self._connection.request("POST", self._path, body, self._headers)
            answer = self._connection.getresponse()
            answer.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise _Retry(str(exc)) from exc
        if answer.status in self.RETRY:
            raise _Retry(f"HTTP {answer.status}")
        if answer.status >= 300:
            raise http.client.HTTPException(f"HTTP {answer.status} from the collector")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _Retry(Exception):
    pass


class Console:
    """``OTEL_TRACES_EXPORTER=console``: each span as a line of JSON on standard output."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def export(self, resource: Mapping[str, Value], scope: str, spans: list[Span]) -> None:
        stream = self.stream or sys.stdout
        for s in spans:
            stream.write(json.dumps(as_dict(resource, s), separators=(",", ":")) + "\n")
        stream.flush()


def as_dict(resource: Mapping[str, Value], s: Span) -> dict[str, Any]:
    return {
        "name": s.name,
        "trace_id": f"{s.trace_id:032x}",
        "span_id": f"{s.span_id:016x}",
        "parent_id": f"{s.parent_id:016x}" if s.parent_id else None,
        "kind": {1: "INTERNAL", 2: "SERVER"}.get(s.kind, str(s.kind)),
        "start_time_unix_nano": s.start,
        "end_time_unix_nano": s.end,
        "status": "ERROR" if s.error is not None else "UNSET",
        "attributes": dict(s.attributes),
        "events": [{"time_unix_nano": w, "name": n, "attributes": dict(a)} for w, n, a in s.events],
        "links": [{"trace_id": f"{t:032x}", "span_id": f"{i:016x}", "attributes": dict(a)} for t, i, a in s.links],
        "resource": dict(resource),
    }


class Batches:
    """Ended spans wait in a bounded queue (the newest dropped when it is full, and counted); a thread
    sends them every ``delay`` seconds, or as soon as a batch is full, and once more at exit.

    For OTLP alone a span is written as it ends and waits as bytes: the span and its dicts are freed at
    once (bytes are never scanned by the cyclic collector; thousands of waiting spans were), and the
    thread only joins and sends. With the console exporter, spans wait as they are."""

    def __init__(
        self, resource: Mapping[str, Value], scope: str, options: Options, console: Console | None, otlp: bool
    ) -> None:
        self.resource, self.scope, self.options = dict(resource), scope, options
        self.console = console
        self.sender = Sender(options) if otlp else None
        self.queue: deque[Any] = deque()  # bytes (OTLP alone: entry(span)) or spans (console)
        self._written = console is None
        self.dropped = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="oms-span-export", daemon=True)
        self._thread.start()

    def add(self, s: Span) -> None:
        """Called as a span ends (on the event loop): an append, and a wake-up when a batch is full."""
        queue = self.queue
        if len(queue) >= self.options.queue_size:
            self.dropped += 1
            return
        queue.append(entry(s) if self._written else s)
        if len(queue) == self.options.batch_size:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.options.delay)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        while self.queue:
            batch = []
            for _ in range(min(self.options.batch_size, len(self.queue))):
                batch.append(self.queue.popleft())
            try:
                if self.console is not None:
                    self.console.export(self.resource, self.scope, batch)
                if self.sender is not None:
                    entries = batch if self._written else [entry(s) for s in batch]
                    self.sender.send(envelope(self.resource, self.scope, entries))
            except Exception:  # a span exporter must never take its service down
                log.exception("spans not exported")

    def shutdown(self, timeout: float = 5.0) -> None:
        """Send what is left (at exit: registered with atexit)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.flush()  # what was added after the thread's last pass
        if self.sender is not None:
            self.sender.close()


def resource_of(service_name: str, environ: Mapping[str, str]) -> dict[str, Value]:
    """The resource's attributes: ``OTEL_RESOURCE_ATTRIBUTES``, the SDK's name and version, and
    ``service.name`` (``OTEL_SERVICE_NAME``, else the one in ``OTEL_RESOURCE_ATTRIBUTES``, else ours)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("oms")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout that was never installed
        ours = "0"
    found: dict[str, Value] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "oms",
        "telemetry.sdk.version": ours,
    }
    given = _pairs(environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    found.update(given)
    found["service.name"] = environ.get("OTEL_SERVICE_NAME") or given.get("service.name") or service_name
    return found
