"""Request metrics by route template and status (oms.telemetry.http_metrics, through the Gate), the request id
bound for the log lines of a request, and OrderService's saga and breaker metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry

from fakes import MemoryLog
from oms.auth.keys import ensure_key, load_key
from oms.auth.tokens import Role, Verifier, admin_token
from oms.edge.access import only
from oms.edge.answers import JSON, json
from oms.edge.app import Front
from oms.edge.gate import Gate
from oms.fields import Lines as Body
from oms.orders.metrics import MeteredLog, Metrics
from oms.orders.saga import ORDER, RECONCILE
from oms.resilience.breaker import State
from oms.saga.engine import LogEntry, SagaEnd, SagaStatus
from oms.telemetry.http_metrics import UNMATCHED, HttpMetrics

SEEN: dict[str, Any] = {}


def build(tmp_path: Path) -> tuple[Gate, CollectorRegistry, str]:
    app = FastAPI()

    @app.get("/things/{thing_id}", dependencies=[only(Role.ADMIN)])
    async def thing(thing_id: str) -> JSON:
        SEEN["context"] = structlog.contextvars.get_contextvars()
        return json({"id": thing_id})

    front = Front(app, 65536)

    async def hot(request: Request, body: Body) -> JSON:
        SEEN["context"] = structlog.contextvars.get_contextvars()
        return json({}, 201)

    front.post("/hot", Body, hot, roles=(Role.ADMIN,))
    registry = CollectorRegistry()
    meter = HttpMetrics("test", registry, routes=app.router.routes, lean=front.lean_paths)
    key = tmp_path / "key.json"
    ensure_key(key)
    gate = Gate(front, verifier=Verifier(load_key(key)), meter=meter)
    return gate, registry, admin_token(load_key(key))


def calls(app: Any, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as client:
            return [await client.request(method, path, **kwargs) for method, path, kwargs in requests]

    return asyncio.run(go())


def count(registry: CollectorRegistry, route: str, status: str, method: str = "GET") -> float | None:
    labels = {"service": "test", "method": method, "route": route, "status": status}
    return registry.get_sample_value("oms_http_requests_total", labels)


def test_requests_are_counted_and_timed_by_route_template_and_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, registry, token = build(tmp_path)
    matched: list[str] = []
    template = HttpMetrics.template

    def spy(self: HttpMetrics, scope: Any) -> str:
        matched.append(scope["path"])
        return template(self, scope)

    monkeypatch.setattr(HttpMetrics, "template", spy)
    admin = {"headers": {"authorization": f"Bearer {token}", "content-type": "application/json"}}
    answers = calls(
        gate,
        ("GET", "/things/a", admin),
        ("GET", "/things/b", admin),
        ("GET", "/things/c", {}),  # refused by the Gate before routing: matched here
        ("GET", "/nowhere/1", admin),
        ("GET", "/nowhere/2", admin),
        ("POST", "/hot", {**admin, "json": {"items": [{"sku": "A-1", "quantity": 1}]}}),
        ("POST", "/hot", {}),
        ("DELETE", "/things/a", admin),
    )
    assert [a.status_code for a in answers] == [200, 200, 401, 404, 404, 201, 401, 405]
    assert count(registry, "/things/{thing_id}", "200") == 2
    assert count(registry, "/things/{thing_id}", "401") == 1
    assert count(registry, UNMATCHED, "404") == 2
    assert count(registry, "/hot", "201", "POST") == 1
    assert count(registry, "/hot", "401", "POST") == 1
    assert count(registry, "/things/{thing_id}", "405", "DELETE") == 1
    assert count(registry, "/things/a", "200") is None  # never a raw path
    seconds = {"service": "test", "method": "GET", "route": "/things/{thing_id}"}
    assert registry.get_sample_value("oms_http_request_seconds_count", seconds) == 3
    assert 0 < (registry.get_sample_value("oms_http_request_seconds_sum", seconds) or 0) < 5
    # Matched here only when the router did not run (refused by the Gate) or found nothing.
    assert matched == ["/things/c", "/nowhere/1", "/nowhere/2"]
    # One pair of children per (method, route, status), looked up once.
    assert gate.meter is not None and len(gate.meter._children) == 6


def test_the_request_id_is_bound_for_the_log_lines_of_its_request_only(tmp_path: Path) -> None:
    gate, _, token = build(tmp_path)
    admin = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    [answer] = calls(gate, ("GET", "/things/a", {"headers": {**admin, "x-request-id": "req-1"}}))
    # The server's own id, with the caller's beside it.
    assert answer.headers["x-request-id"] != "req-1"
    assert SEEN["context"]["request_id"] == answer.headers["x-request-id"]
    assert SEEN["context"]["client_request_id"] == "req-1"
    [answer] = calls(gate, ("POST", "/hot", {"headers": admin, "json": {"items": [{"sku": "A-1", "quantity": 1}]}}))
    assert SEEN["context"]["request_id"] == answer.headers["x-request-id"]
    assert "client_request_id" not in SEEN["context"]  # not the request before's
    unbound = structlog.contextvars.get_contextvars()
    assert "request_id" not in unbound and "client_request_id" not in unbound  # unbound once answered


def entry(outcome: str) -> LogEntry:
    now = datetime.now(UTC)
    return LogEntry("step", "process_payment", outcome, None, {}, now, now, 1.0)


def ended(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["saga"], s.labels["status"]): s.value
        for family in metrics.registry.collect()
        if family.name == "oms_sagas_ended"
        for s in family.samples
        if s.name == "oms_sagas_ended_total"
    }


@pytest.mark.parametrize("saga", [ORDER, RECONCILE])
def test_a_saga_that_waited_is_counted_once_at_its_final_end(saga: str) -> None:
    metrics = Metrics()
    log = MeteredLog(MemoryLog(), metrics)

    async def go() -> None:
        for _ in range(8):  # eight tries that could not learn the outcome
            await log.record("o-1", entry("unknown"), {"saga": saga}, SagaEnd(SagaStatus.WAITING, "process_payment"))
        await log.record("o-1", entry("done"), {"saga": saga}, SagaEnd(SagaStatus.COMPLETED))

    asyncio.run(go())
    assert ended(metrics) == {(saga, "PLACED"): 1.0}
    labels = {"saga": saga, "kind": "step", "name": "process_payment", "outcome": "unknown"}
    assert metrics.registry.get_sample_value("oms_saga_step_seconds_count", labels) == 8


def test_final_ends_each_count_and_compensated_ones_by_order_status() -> None:
    metrics = Metrics()
    log = MeteredLog(MemoryLog(), metrics)

    async def go() -> None:
        await log.record("o-1", None, {"saga": ORDER}, SagaEnd(SagaStatus.COMPENSATED, "process_payment"))
        await log.record("o-2", None, {"saga": ORDER}, SagaEnd(SagaStatus.COMPENSATION_FAILED, "undo"))
        await log.record("o-3", entry("done"), {"saga": ORDER}, None)  # not an end

    asyncio.run(go())
    assert ended(metrics) == {(ORDER, "PAYMENT_FAILED"): 1.0, (ORDER, "COMPENSATION_FAILED"): 1.0}


def test_breaker_transitions_and_sagas_in_flight() -> None:
    metrics = Metrics()
    metrics.breaker_changed("inventory", State.CLOSED, State.OPEN)
    metrics.breaker_changed("inventory", State.OPEN, State.HALF_OPEN)
    metrics.breaker_changed("inventory", State.HALF_OPEN, State.OPEN)
    metrics.breaker_changed("inventory", State.OPEN, State.HALF_OPEN)
    value = metrics.registry.get_sample_value
    labels = {"downstream": "inventory", "from_state": "open", "to_state": "half_open"}
    assert value("oms_breaker_transitions_total", labels) == 2
    labels = {"downstream": "inventory", "from_state": "closed", "to_state": "open"}
    assert value("oms_breaker_transitions_total", labels) == 1
    running: dict[str, object] = {}
    metrics.watch_sagas(running)
    assert value("oms_sagas_in_flight") == 0
    running.update(a=1, b=2)
    assert value("oms_sagas_in_flight") == 2
