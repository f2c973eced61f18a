"""The spans of one order's trace. Imported only when tracing is on (``oms.telemetry.tracing.setup``).

- A server span per request, begun and finished by the Gate (:meth:`Tracing.begin`; not for
  ``/health``, ``/ready``, ``/metrics`` and the documentation): ``POST /orders``, its parent the caller's W3C
  ``traceparent`` when it sends one (else a new trace), ``http.route``,
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

Why not the OpenTelemetry SDK: it spent about 30 µs making and ending one span and 26 µs encoding
it, ~130 µs a span in a busy service, and with it tracing on cost 35 to 40% of ``oms bench`` (the
goal: 15%; measured alternately, 2026-11-26: off 774, SDK 507, this module 690 orders/s). A span
here is a small object (:class:`Span`) in a context variable, ended into :class:`oms.telemetry.otlp.Batches`,
which writes OTLP protobuf itself (the tests decode it with
opentelemetry-proto's classes). The standard variables still configure it all (see ``oms.telemetry.tracing``):
the exporters, endpoint, headers, timeout, compression, the batch processor's ``OTEL_BSP_*``, the
sampler (``OTEL_TRACES_SAMPLER``: ``always_on``, ``always_off``, ``traceidratio`` and their
``parentbased_`` forms, the default ``parentbased_always_on``) and ``OTEL_RESOURCE_ATTRIBUTES``.

Why no instrumentation package (opentelemetry-instrumentation-asgi, -aiohttp-client): the ASGI one
makes three spans a request (the server span and one for each ``http.send``/``receive``) and reads
every header into attributes, and both wrap every request whatever the configuration; the spans
above are what the trace needs, each made once, where the code knows its names. An order is seven:
its request and three steps in OrderService, a server span for each of the three calls.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar, Token
from typing import Any, Protocol

from oms.saga.engine import Outcome, StepResult
from oms.telemetry.logs import context_var
from oms.telemetry.otlp import Batches, Console, Options, Value, resource_of
from oms.telemetry.tracing import format_trace_context, parse_trace_context, route_of

_FAILED = frozenset({Outcome.FAILED, Outcome.UNCERTAIN, Outcome.UNKNOWN})
_UNTRACED = frozenset({"/health", "/ready", "/metrics", "/docs", "/openapi.json"})
"""Paths polled by machines (health checks, scrapes) or documentation: no order's business, no span."""
INTERNAL, SERVER = 1, 2  # OTLP's SpanKind numbers


class Span:
    """One span: ids as integers, times in ns since the epoch, ``error`` None unless it failed."""

    __slots__ = (
        "attributes",
        "end",
        "error",
        "events",
        "kind",
        "links",
        "name",
        "parent_id",
        "remote_parent",
        "sampled",
        "span_id",
        "start",
        "tokens",
        "trace_id",
    )  # fmt: skip

    def __init__(
        self,
        trace_id: int,
        span_id: int,
        parent_id: int,
        sampled: bool,
        name: str,
        kind: int,
        attributes: dict[str, Value],
        remote_parent: bool = False,
    ) -> None:
        self.trace_id, self.span_id, self.parent_id, self.sampled = trace_id, span_id, parent_id, sampled
        self.remote_parent = remote_parent
        self.name, self.kind, self.attributes = name, kind, attributes
        self.start = time.time_ns()
        self.end = 0
        self.events: list[tuple[int, str, dict[str, Value]]] = []
        self.links: list[tuple[int, int, dict[str, Value]]] = []
        self.error: str | None = None
        self.tokens: tuple[Token[Span | None], Token[Any]] | None = None  # a request's, to reset at its end


Sampler = Callable[["bool | None", int], bool]
"""Whether a new span is recorded, from its parent's sampled flag (None: a root span) and trace id."""

_SAMPLERS = ("always_on", "always_off", "traceidratio")


def sampler(environ: Mapping[str, str]) -> Sampler:
    """``OTEL_TRACES_SAMPLER`` (and ``OTEL_TRACES_SAMPLER_ARG``, the ratio), as the SDK reads them;
    ``traceidratio`` keeps a trace when the low 64 bits of its id fall under the ratio."""
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    base = name.removeprefix("parentbased_")
    if base not in _SAMPLERS:
        known = ", ".join([*_SAMPLERS, *(f"parentbased_{s}" for s in _SAMPLERS)])
        raise ValueError(f"OTEL_TRACES_SAMPLER: {name} is not one of {known}")
    ratio = 1.0
    if base == "traceidratio":
        raw = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or "1.0"
        try:
            ratio = float(raw)
        except ValueError:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: {raw!r} is not a number from 0 to 1") from None
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: {raw!r} is not a number from 0 to 1")
    bound = round(ratio * (1 << 64))

    def own(trace_id: int) -> bool:
        return base == "always_on" or (base == "traceidratio" and (trace_id & 0xFFFFFFFFFFFFFFFF) < bound)

    if name.startswith("parentbased_"):
        return lambda parent, trace_id: own(trace_id) if parent is None else parent
    return lambda parent, trace_id: own(trace_id)


def build(service_name: str, exporters: list[str], environ: Mapping[str, str] | None = None) -> Tracing:
    """This process's tracing: spans batched to each exporter named, the batch sent at exit too."""
    env = os.environ if environ is None else environ
    batches = Batches(
        resource_of(service_name, env),
        "oms",
        Options.from_environment(env),
        console=Console() if "console" in exporters else None,
        otlp="otlp" in exporters,
    )
    atexit.register(batches.shutdown)
    return Tracing(batches, sampler(env))


_current: ContextVar[Span | None] = ContextVar("oms_span", default=None)
_TRACE_ID = context_var("trace_id")  # on every log line written in a span's time (structlog's)


class Sink(Protocol):
    """Where ended spans go (:class:`oms.telemetry.otlp.Batches`)."""

    def add(self, span: Span) -> None: ...


class Tracing:
    def __init__(self, batches: Sink, sample: Sampler, rng: random.Random | None = None) -> None:
        self.batches = batches
        self.sample = sample
        self._bits = (rng or random.Random()).getrandbits

    def start(
        self,
        name: str,
        kind: int,
        attributes: dict[str, Value],
        parent: Span | None = None,
        remote: tuple[int, int, bool] | None = None,
    ) -> Span:
        """A new span: the child of ``parent`` (ours) or of ``remote`` (a caller's trace id, span id,
        sampled), else the root of a new trace."""
        span_id = self._bits(64) or 1
        if parent is not None:
            return Span(parent.trace_id, span_id, parent.span_id, parent.sampled, name, kind, attributes)
        if remote is not None:
            trace_id, parent_id, sampled = remote
            return Span(trace_id, span_id, parent_id, self.sample(sampled, trace_id), name, kind, attributes, True)
        trace_id = self._bits(128) or 1
        return Span(trace_id, span_id, 0, self.sample(None, trace_id), name, kind, attributes)

    def end(self, span: Span) -> None:
        span.end = time.time_ns()
        if span.sampled:
            self.batches.add(span)

    def begin(self, method: str, path: str, traceparent: bytes | None) -> Span | None:
        """A request's server span, current until :meth:`finish` (the Gate calls both): the child of
        the caller's ``traceparent`` when it sent a valid one; None for paths that get no span."""
        if path in _UNTRACED or path.startswith("/docs/"):
            return None
        route = route_of(path)
        remote = _parent(traceparent) if traceparent is not None else None
        span = self.start(
            f"{method} {route}", SERVER, {"http.request.method": method, "http.route": route}, remote=remote
        )
        span.tokens = (_current.set(span), _TRACE_ID.set(f"{span.trace_id:032x}"))
        return span

    def finish(self, span: Span, status: int, request_id: str, error: BaseException | None = None) -> None:
        """The request's answer (0: none was sent, counted as 500) on its span, which ends."""
        attributes = span.attributes
        attributes["oms.request_id"] = request_id
        attributes["http.response.status_code"] = status or 500
        if error is not None:
            span.events.append(
                (time.time_ns(), "exception", {"exception.type": type(error).__name__, "exception.message": str(error)})
            )
        if not status or status >= 500:
            span.error = ""
        if span.tokens is not None:
            current, trace_id = span.tokens
            _TRACE_ID.reset(trace_id)
            _current.reset(current)
        self.end(span)

    def current(self) -> str | None:
        """The current span's ``trace_context`` (stored with a new order), or None outside a span or
        when its trace is not recorded (sampled out): an order shows a trace id only if there is one."""
        found = _current.get()
        return format_trace_context(found.trace_id, found.span_id) if found is not None and found.sampled else None

    @contextlib.contextmanager
    def watch(
        self, saga: str, saga_id: str, kind: str, name: str, attempt: int
    ) -> Iterator[Callable[[StepResult], None]]:
        """A saga step's (or compensation attempt's) span, current while it runs; told its result."""
        attributes: dict[str, Value] = {
            "oms.order_id": saga_id,
            "oms.saga": saga,
            "oms.kind": kind,
            "oms.step": name,
            "oms.attempt": attempt,
        }
        span = self.start(f"{kind} {name}", INTERNAL, attributes, _current.get())
        token = _current.set(span)

        def seen(result: StepResult) -> None:
            attributes["oms.outcome"] = result.outcome.value
            if result.reason:
                attributes["oms.reason"] = result.reason
            if result.outcome in _FAILED:
                span.error = result.reason or ""

        try:
            yield seen
        finally:
            _current.reset(token)
            self.end(span)

    def outgoing(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with the current span's ``traceparent`` (the saga step's): the participant's
        server span is its child. Written here, not by a propagator: one f-string."""
        found = _current.get()
        if found is None:
            return headers
        flags = "01" if found.sampled else "00"
        return {**headers, "traceparent": f"00-{found.trace_id:032x}-{found.span_id:016x}-{flags}"}

    def failed_try(self, downstream: str, path: str, error: str) -> None:
        """A try of a call that did not get an answer (or got a 5xx), as an event on the step's span."""
        span = _current.get()
        if span is not None and span.sampled:
            attributes: dict[str, Value] = {"oms.downstream": downstream, "url.path": path, "error.type": error}
            span.events.append((time.time_ns(), "try failed", attributes))

    @contextlib.contextmanager
    def saga(self, saga: str, order_id: str, trace_context: str | None, started_by: str) -> Iterator[None]:
        """A span over a saga driven outside its order's request, linked to that request's span."""
        attributes: dict[str, Value] = {"oms.order_id": order_id, "oms.saga": saga, "oms.started_by": started_by}
        span = self.start(f"saga {saga}", INTERNAL, attributes)
        found = parse_trace_context(trace_context)
        if found is not None:
            span.links.append((found[0], found[1], {"oms.link": "order"}))
        token, bound = _current.set(span), _TRACE_ID.set(f"{span.trace_id:032x}")
        try:
            yield
        finally:
            _TRACE_ID.reset(bound)
            _current.reset(token)
            self.end(span)


_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def _parent(traceparent: bytes) -> tuple[int, int, bool] | None:
    """The caller's span (trace id, span id, sampled) from its W3C ``traceparent`` (version 00, or a
    later one read as 00), or None when it is malformed, all zeros or version ff: the request then
    starts a trace of its own."""
    found = _TRACEPARENT.match(traceparent.strip())
    if found is None or found[1] == b"ff" or (found[1] == b"00" and found[5]):
        return None
    trace_id, span_id = int(found[2], 16), int(found[3], 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, bool(int(found[4], 16) & 1)
