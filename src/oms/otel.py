"""The spans of one order's trace, made with the OpenTelemetry API directly. Imported only when
tracing is on (``oms.tracing.setup``).

- A server span per request, around the Gate (:class:`ServerSpans`; not for ``/health``,
  ``/metrics`` and the documentation): ``POST /orders``, its parent
  the caller's W3C ``traceparent`` when it sends one (else a new trace), ``http.route``,
  ``http.response.status_code``, ``oms.request_id``; ``trace_id`` is bound in structlog's
  contextvars for the request's log lines (and the saga's, whose task copies the context).
- A span per saga step and per compensation attempt (:meth:`Tracing.watch`, the saga engine's
  ``StepObserver``): ``step check_inventory``, ``compensation release_inventory``, with
  ``oms.order_id``, ``oms.saga``, ``oms.kind``, ``oms.step``, ``oms.attempt``, ``oms.outcome``,
  ``oms.reason``.
- No client span: a call to InventoryService or PaymentService sends the step span's own
  ``traceparent`` (:meth:`Tracing.outgoing`), so the participant's server span is the step's child;
  a try that failed is an event on the step's span (:meth:`Tracing.failed_try`). A client span per
  call measured as about 40% of what tracing cost OrderService, and told little the step's did not.
- ``saga reconcile`` (or ``order``, ``cancel``): a saga driven outside the request that placed its
  order (recovery, reconcile, cancel, retry), linked to the span of that request (:meth:`Tracing.saga`).

Why no instrumentation package (opentelemetry-instrumentation-asgi, -aiohttp-client): the ASGI one
makes three spans a request (the server span and one for each ``http.send``/``receive``) and reads
every header into attributes, and both wrap every request whatever the configuration; the spans
above are what the trace needs, each made once, where the code knows its names. An order is seven:
its request and three steps in OrderService, a server span for each of the three calls.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oms.saga.engine import Outcome, StepResult
from oms.tracing import format_trace_context, parse_trace_context, route_of

_FAILED = frozenset({Outcome.FAILED, Outcome.UNCERTAIN, Outcome.UNKNOWN})
_UNTRACED = frozenset({"/health", "/metrics", "/docs", "/openapi.json", "/docs/oauth2-redirect"})
"""Paths polled by machines (health checks, scrapes) or documentation: no order's business, no span."""


def build(service_name: str, exporters: list[str]) -> Tracing:
    """A tracer provider for this process, exporting through a BatchSpanProcessor per exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # its endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    # Not made the global provider: FastAPI (0.165 on) makes spans of its own for every request it
    # routes once one is set (a second server span, and spans for dependencies and serialising).
    return Tracing(provider)


class Tracing:
    def __init__(self, provider: trace.TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("oms")

    def middleware(self, app: ASGIApp) -> ASGIApp:
        return ServerSpans(app, self)

    def current(self) -> str | None:
        """The current span's ``trace_context`` (stored with a new order), or None outside a span."""
        found = trace.get_current_span().get_span_context()
        return format_trace_context(found.trace_id, found.span_id) if found.is_valid else None

    @contextlib.contextmanager
    def watch(
        self, saga: str, saga_id: str, kind: str, name: str, attempt: int
    ) -> Iterator[Callable[[StepResult], None]]:
        """A saga step's (or compensation attempt's) span, current while it runs; told its result."""
        attributes: dict[str, str | int] = {
            "oms.order_id": saga_id,
            "oms.saga": saga,
            "oms.kind": kind,
            "oms.step": name,
            "oms.attempt": attempt,
        }
        span = self.tracer.start_span(f"{kind} {name}", attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))

        def seen(result: StepResult) -> None:
            span.set_attribute("oms.outcome", result.outcome.value)
            if result.reason:
                span.set_attribute("oms.reason", result.reason)
            if result.outcome in _FAILED:
                span.set_status(Status(StatusCode.ERROR, result.reason))

        try:
            yield seen
        finally:
            otel_context.detach(token)
            span.end()

    def outgoing(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with the current span's ``traceparent`` (the saga step's): the participant's
        server span is its child. Written here, not by a propagator: one f-string."""
        found = trace.get_current_span().get_span_context()
        if not found.is_valid:
            return headers
        flags = int(found.trace_flags)
        return {**headers, "traceparent": f"00-{found.trace_id:032x}-{found.span_id:016x}-{flags:02x}"}

    def failed_try(self, downstream: str, path: str, error: str) -> None:
        """A try of a call that did not get an answer (or got a 5xx), as an event on the step's span."""
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event("try failed", {"oms.downstream": downstream, "url.path": path, "error.type": error})

    @contextlib.contextmanager
    def saga(self, saga: str, order_id: str, trace_context: str | None, started_by: str) -> Iterator[None]:
        """A span over a saga driven outside its order's request, linked to that request's span."""
        links = []
        found = parse_trace_context(trace_context)
        if found is not None:
            linked = SpanContext(found[0], found[1], is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
            links.append(Link(linked, {"oms.link": "order"}))
        span = self.tracer.start_span(
            f"saga {saga}",
            links=links,
            attributes={"oms.order_id": order_id, "oms.saga": saga, "oms.started_by": started_by},
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        bound = structlog.contextvars.bind_contextvars(trace_id=f"{span.get_span_context().trace_id:032x}")
        try:
            yield
        finally:
            structlog.contextvars.reset_contextvars(**bound)
            otel_context.detach(token)
            span.end()


class ServerSpans:
    """ASGI middleware in front of the Gate: a server span per HTTP request."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracer = tracing.tracer
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNTRACED or scope["path"].startswith("/docs/"):
            await self.app(scope, receive, send)
            return
        traceparent = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent = value
        parent = _parent(traceparent) if traceparent is not None else None
        method: str = scope["method"]
        route = route_of(scope["path"])
        span = self.tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route},
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        bound = structlog.contextvars.bind_contextvars(trace_id=f"{span.get_span_context().trace_id:032x}")
        status = 0

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_traced)
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            state: dict[str, Any] = scope.get("state") or {}
            if "request_id" in state:
                span.set_attribute("oms.request_id", state["request_id"])
            span.set_attribute("http.response.status_code", status or 500)
            if not status or status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            structlog.contextvars.reset_contextvars(**bound)
            otel_context.detach(token)
            span.end()


_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def _parent(traceparent: bytes) -> otel_context.Context | None:
    """The caller's span from its W3C ``traceparent`` (version 00, or a later one read as 00), or None
    when it is malformed, all zeros or version ff: the request then starts a trace of its own."""
    found = _TRACEPARENT.match(traceparent.strip())
    if found is None or found[1] == b"ff" or (found[1] == b"00" and found[5]):
        return None
    trace_id, span_id = int(found[2], 16), int(found[3], 16)
    if not trace_id or not span_id:
        return None
    caller = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(found[4], 16) & 1))
    return trace.set_span_in_context(trace.NonRecordingSpan(caller))
