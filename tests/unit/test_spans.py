"""Tracing's pure pieces (the environment, the sampler, routes, stored span contexts), the saga
engine's observer port, and the spans themselves as they end: a server span made by a real Gate
continuing the caller's traceparent, step spans, the traceparent a call sends, a saga span linked to
its order. How they are written and sent: test_otlp.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiohttp import web

from fakes import MemoryLog
from oms.auth.keys import SigningKey, ensure_key, load_key
from oms.auth.tokens import Verifier, admin_token
from oms.cli.supervisor import free_ports
from oms.edge.gate import Gate
from oms.orders.clients import Downstream
from oms.resilience.breaker import BreakerConfig, CircuitBreaker
from oms.saga.engine import Outcome, SagaDefinition, SagaEngine, Step, StepResult
from oms.telemetry.spans import SERVER, Span, Tracing, sampler
from oms.telemetry.tracing import (
    exporters,
    format_trace_context,
    parse_trace_context,
    route_of,
    trace_id_of,
    trace_url,
)

# -- the environment ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "x"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, ["console", "otlp"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "false"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ["otlp"]),
    ],
)
def test_the_standard_variables_say_whether_and_where(environ: dict[str, str], expected: list[str]) -> None:
    assert exporters(environ) == expected


@pytest.mark.parametrize(
    "environ",
    [{"OTEL_TRACES_EXPORTER": "jaeger"}, {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}],
)
def test_an_exporter_this_build_lacks_is_refused_not_taken_for_off(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="OTEL_"):
        exporters(environ)


def test_without_otel_variables_no_tracing_is_loaded_and_no_gate_makes_spans(tmp_path: Any) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from oms.config import Settings\n"
        "from oms.edge.gate import Gate\n"
        "from oms.serve import create_app\n"
        f"settings = Settings(data_dir=Path({str(tmp_path)!r}))\n"
        "for service in ('order', 'inventory', 'payment'):\n"
        "    app = create_app(service, settings)\n"
        "    assert type(app) is Gate and app.spans is None, service\n"
        "tracing = ('oms.telemetry.spans', 'oms.telemetry.otlp')\n"
        "loaded = [m for m in sys.modules if m.startswith(tracing)]\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- names and stored contexts --------------------------------------------------------------------


def test_routes_name_their_ids() -> None:
    assert route_of("/orders") == "/orders"
    assert route_of("/orders/ord_01a2/cancel") == "/orders/{order_id}/cancel"
    assert route_of("/reservations/ord_01a2/release") == "/reservations/{order_id}/release"
    assert route_of("/items/WIDGET-1") == "/items/{sku}"
    assert route_of("/payments?order_id=ord_1") == "/payments"
    assert route_of("/inventory/check") == "/inventory/check"


def test_trace_context_round_trip_and_url() -> None:
    stored = format_trace_context(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7)
    assert stored == "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"
    assert parse_trace_context(stored) == (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7)
    assert trace_id_of(stored) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of(None) is None
    for bad in (None, "", "nonsense", "0" * 32 + "-" + "0" * 16):
        assert parse_trace_context(bad) is None
    template = "http://jaeger:16686/trace/{trace_id}"
    assert trace_url(template, "abc") == "http://jaeger:16686/trace/abc"
    assert trace_url(None, "abc") is None and trace_url(template, None) is None


# -- the engine's observer port -------------------------------------------------------------------


class Watcher:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str, int, str | None]] = []

    @contextmanager
    def watch(
        self, saga: str, saga_id: str, kind: str, name: str, attempt: int
    ) -> Iterator[Callable[[StepResult], None]]:
        def seen(result: StepResult) -> None:
            self.seen.append((saga, saga_id, kind, name, attempt, result.outcome.value))

        yield seen


def test_the_engine_shows_its_observer_every_step_and_compensation_attempt() -> None:
    undo_tries = iter([StepResult.failed("down"), StepResult.done()])

    async def ok(ctx: dict[str, Any]) -> StepResult:
        return StepResult.done()

    async def broken(ctx: dict[str, Any]) -> StepResult:
        raise RuntimeError("a bug")

    async def undo(ctx: dict[str, Any]) -> StepResult:
        return next(undo_tries)

    async def no_sleep(seconds: float) -> None:
        pass

    watcher = Watcher()
    definition = SagaDefinition("test", (Step("a", ok, undo), Step("b", ok), Step("c", broken)))
    engine = SagaEngine(MemoryLog(), sleep=no_sleep, observer=watcher)
    result = asyncio.run(engine.run(definition, "o1", {}))
    assert result.reason == "error:RuntimeError"  # an exception is an unknown outcome, watched as one
    assert watcher.seen == [
        ("test", "o1", "step", "a", 1, "done"),
        ("test", "o1", "step", "b", 1, "done"),
        ("test", "o1", "step", "c", 1, "unknown"),
    ]
    failing = SagaDefinition("test", (Step("a", ok, undo), Step("b", lambda ctx: _failed())))
    watcher.seen.clear()
    asyncio.run(engine.run(failing, "o2", {}))
    assert watcher.seen == [
        ("test", "o2", "step", "a", 1, "done"),
        ("test", "o2", "step", "b", 1, "failed"),
        ("test", "o2", "compensation", "undo_a", 1, "failed"),
        ("test", "o2", "compensation", "undo_a", 2, "done"),
    ]


async def _failed() -> StepResult:
    return StepResult(Outcome.FAILED, "card_declined")


# -- the spans ------------------------------------------------------------------------------------


class Ended:
    """Where the spans go, in place of the batches (oms.telemetry.otlp, tested on their own in test_otlp.py)."""

    def __init__(self, key: SigningKey) -> None:
        self.spans: list[Span] = []
        self.key = key  # the Gate's, for its admin token

    def add(self, span: Span) -> None:
        self.spans.append(span)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    path = tmp_path_factory.mktemp("key") / "key.json"
    ensure_key(path)
    return load_key(path)


@pytest.fixture
def spans(key: SigningKey) -> tuple[Tracing, Ended]:
    ended = Ended(key)
    return Tracing(ended, sampler({})), ended


def by_name(finished: list[Span]) -> dict[str, Span]:
    return {span.name: span for span in finished}


CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def serve(spans: tuple[Tracing, Ended], app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> None:
    """One request through a Gate that makes its server spans with ``tracing``, as each service's does."""
    tracing, ended = spans
    signing = ended.key
    gate = Gate(app, verifier=Verifier(signing), spans=tracing)
    scope = {
        "type": "http", "method": method, "path": path, "query_string": b"",
        "headers": [*headers, (b"authorization", f"Bearer {admin_token(signing)}".encode())],
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    asyncio.run(gate(scope, receive, send))  # type: ignore[arg-type]


def test_a_request_continues_the_callers_trace_and_its_steps_and_calls_nest(
    spans: tuple[Tracing, Ended],
) -> None:
    tracing, exporter = spans
    stored: list[str | None] = []
    sent: list[dict[str, str]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        stored.append(tracing.current())
        with tracing.watch("order", "ord_1", "step", "reserve_inventory", 1) as seen:
            sent.append(tracing.outgoing({"a": "b"}))
            tracing.failed_try("inventory", "/reservations", "TimeoutError")
            seen(StepResult.failed("out_of_stock"))
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message: dict[str, Any]) -> None:
        pass

    headers = [(b"traceparent", CALLER.encode()), (b"x-request-id", b"r-1"), (b"content-type", b"application/json")]
    serve(spans, app, "POST", "/orders", headers)
    named = by_name(exporter.spans)
    assert set(named) == {"POST /orders", "step reserve_inventory"}  # no client span: the step's is sent
    server, step = named["POST /orders"], named["step reserve_inventory"]
    assert server.kind == SERVER and server.remote_parent and not step.remote_parent
    assert {s.trace_id for s in (server, step)} == {0x4BF92F3577B34DA6A3CE929D0E0E4736}
    assert server.parent_id == 0x00F067AA0BA902B7
    assert step.parent_id == server.span_id
    assert sent == [{"a": "b", "traceparent": f"00-{step.trace_id:032x}-{step.span_id:016x}-01"}]
    [(_, event, event_attributes)] = step.events
    assert event == "try failed" and event_attributes["error.type"] == "TimeoutError"
    assert server.attributes["http.response.status_code"] == 201
    # The server's own request id (the caller's X-Request-Id is its client_request_id).
    request_id = server.attributes["oms.request_id"]
    assert isinstance(request_id, str) and len(request_id) == 16 and request_id != "r-1"
    assert server.error is None and 0 < server.start <= step.start <= step.end <= server.end
    attributes = dict(step.attributes)
    assert attributes == {
        "oms.order_id": "ord_1", "oms.saga": "order", "oms.kind": "step", "oms.step": "reserve_inventory",
        "oms.attempt": 1, "oms.outcome": "failed", "oms.reason": "out_of_stock",
    }  # fmt: skip
    assert step.error == "out_of_stock"
    assert stored == [format_trace_context(server.trace_id, server.span_id)]


def test_a_later_saga_is_linked_to_its_orders_span(spans: tuple[Tracing, Ended]) -> None:
    tracing, exporter = spans
    order_span = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"
    with (
        tracing.saga("reconcile", "ord_1", order_span, "recovery"),
        tracing.watch("reconcile", "ord_1", "step", "reserve_deferred", 1) as seen,
    ):
        seen(StepResult.done())
    named = by_name(exporter.spans)
    saga, step = named["saga reconcile"], named["step reserve_deferred"]
    assert saga.parent_id == 0 and saga.trace_id != 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert saga.links == [(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, {"oms.link": "order"})]
    assert step.parent_id == saga.span_id and step.trace_id == saga.trace_id
    assert saga.attributes["oms.started_by"] == "recovery"


def test_a_downstream_call_sends_the_steps_traceparent(spans: tuple[Tracing, Ended]) -> None:
    tracing, exporter = spans

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"traceparent": request.headers.get("traceparent")})

    async def scenario() -> dict[str, Any]:
        [port] = free_ports(1)
        application = web.Application()
        application.router.add_post("/inventory/check", echo)
        runner = web.AppRunner(application)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        downstream = Downstream(
            "inventory", f"http://127.0.0.1:{port}", timeout=2.0, breaker=CircuitBreaker("i", BreakerConfig()),
            tracing=tracing,
        )  # fmt: skip
        try:
            with tracing.watch("order", "ord_1", "step", "check_inventory", 1) as seen:
                status, body = await downstream.request("POST", "/inventory/check", {"items": []})
                seen(StepResult.done())
            assert status == 200
            answer: dict[str, Any] = body
            return answer
        finally:
            await downstream.close()
            await runner.cleanup()

    answer = asyncio.run(scenario())
    [step] = exporter.spans
    version, trace_id, span_id, flags = answer["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", f"{step.trace_id:032x}", f"{step.span_id:016x}")
    assert int(flags, 16) & 1  # sampled
    assert step.events == []  # the try was answered


@pytest.mark.parametrize(
    "traceparent",
    [
        "not a traceparent",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is invalid
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has four parts
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
    ],
)
def test_a_malformed_traceparent_starts_a_trace_of_its_own(spans: tuple[Tracing, Ended], traceparent: str) -> None:
    _, exporter = spans

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message: dict[str, Any]) -> None:
        pass

    serve(spans, app, "GET", "/orders", [(b"traceparent", traceparent.encode())])
    [server] = exporter.spans
    assert server.parent_id == 0 and server.trace_id != 0x4BF92F3577B34DA6A3CE929D0E0E4736


def test_a_later_version_of_traceparent_is_read_as_version_00(spans: tuple[Tracing, Ended]) -> None:
    _, exporter = spans

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message: dict[str, Any]) -> None:
        pass

    later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more"
    serve(spans, app, "GET", "/orders", [(b"traceparent", later.encode())])
    [server] = exporter.spans
    assert server.parent_id == 0x00F067AA0BA902B7


def test_health_checks_and_scrapes_make_no_span(spans: tuple[Tracing, Ended]) -> None:
    _, exporter = spans

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message: dict[str, Any]) -> None:
        pass

    for path in ("/health", "/metrics", "/docs", "/openapi.json", "/docs/assets/swagger-ui.css"):
        serve(spans, app, "GET", path, [])
    assert exporter.spans == []


# -- sampling -------------------------------------------------------------------------------------


def test_a_caller_that_did_not_sample_is_followed_and_nothing_is_exported(spans: tuple[Tracing, Ended]) -> None:
    tracing, exporter = spans
    sent: list[dict[str, str]] = []
    stored: list[str | None] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        stored.append(tracing.current())
        with tracing.watch("order", "ord_1", "step", "check_inventory", 1) as seen:
            sent.append(tracing.outgoing({}))
            seen(StepResult.done())
        await send({"type": "http.response.start", "status": 201, "headers": []})

    async def send(message: dict[str, Any]) -> None:
        pass

    unsampled = CALLER[:-2] + "00"
    serve(spans, app, "POST", "/orders", [(b"traceparent", unsampled.encode()), (b"content-type", b"application/json")])
    assert exporter.spans == [] and stored == [None]  # an order made here would show no trace id
    [headers] = sent
    assert headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert headers["traceparent"].endswith("-00")  # the participants do not record it either


@pytest.mark.parametrize(
    ("environ", "root", "under_sampled", "under_unsampled"),
    [
        ({}, True, True, False),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, True, True, True),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, False, False, False),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, False, True, False),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}, False, False, False),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"}, True, True, False),
    ],
)
def test_the_sampler_variables_are_read_as_the_sdk_reads_them(
    environ: dict[str, str], root: bool, under_sampled: bool, under_unsampled: bool
) -> None:
    sample = sampler(environ)
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert (sample(None, trace_id), sample(True, trace_id), sample(False, trace_id)) == (
        root,
        under_sampled,
        under_unsampled,
    )


def test_a_ratio_keeps_that_share_of_traces_by_the_low_bits_of_their_ids() -> None:
    import random

    sample = sampler({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    rng = random.Random(7)
    kept = sum(sample(None, rng.getrandbits(128)) for _ in range(20_000))
    assert 4_500 < kept < 5_500
    assert sample(None, (1 << 127) | 1) and not sample(None, 0xFFFFFFFFFFFFFFFF)  # only the low 64 bits count


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_SAMPLER": "jaeger_remote"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
    ],
)
def test_a_sampler_this_build_lacks_is_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER"):
        sampler(environ)
