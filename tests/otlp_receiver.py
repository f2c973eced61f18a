"""A tiny OTLP/HTTP receiver: accepts ``POST /v1/traces`` (protobuf, as the services' exporter
sends it) and keeps the spans, decoded with opentelemetry-proto, for the tests to look at.

Standalone, it accepts and drops (for ``oms bench`` with tracing on)::

    python tests/otlp_receiver.py --port 4318
"""

from __future__ import annotations

import argparse
import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    links: list[tuple[str, str]] = field(default_factory=list)


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof("value") else None


def decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        service=str(resource.get("service.name", "")),
                        name=span.name,
                        kind=KINDS.get(span.kind, "unspecified"),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                    )
                )
    return spans


class Receiver:
    """Listens on 127.0.0.1 in a thread of its own; ``keep=False`` drops what it receives."""

    def __init__(self, port: int = 0, *, keep: bool = True) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self.refuse = 0  # answer this many of the next requests 503, as a collector that is overloaded
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    refused = receiver.refuse > 0
                    receiver.refuse -= refused
                if refused:
                    self.send_response(503)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if keep:
                    if self.headers.get("content-encoding") == "gzip":
                        body = gzip.decompress(body)
                    spans = decode(body)
                    with receiver._lock:
                        receiver.spans.extend(spans)
                with receiver._lock:
                    receiver.requests += 1
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self) -> dict[str, str]:
        """What the services need to send their spans here, fast."""
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }

    def received(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def wait_for(self, found: Callable[[list[Span]], bool], timeout: float = 15.0) -> list[Span]:
        """The spans received, once ``found`` says they are what was waited for (or at the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.received()
            if found(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--keep", action="store_true", help="decode and count the spans (else accept and drop)")
    args = parser.parse_args()
    receiver = Receiver(args.port, keep=args.keep).start()
    print(f"OTLP receiver on {receiver.url}/v1/traces", flush=True)
    try:
        while True:
            time.sleep(5)
            if args.keep:
                print(f"{receiver.requests} exports, {len(receiver.received())} spans", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        print(f"{receiver.requests} exports received", flush=True)
        receiver.stop()


if __name__ == "__main__":
    main()
