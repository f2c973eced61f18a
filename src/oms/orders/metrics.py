"""Prometheus metrics of OrderService: orders by final status, saga steps by outcome and time, and
the breakers. Served at ``GET /metrics``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from oms.orders.saga import status_for
from oms.resilience.breaker import CircuitBreaker, State
from oms.saga.engine import LogEntry, SagaEnd, SagaLog

STATE_VALUE = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sagas_ended = Counter(
            "oms_sagas_ended", "Sagas that reached an end, by saga and order status", ["saga", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.steps = Histogram(
            "oms_saga_step_seconds", "Saga steps and compensations, by name and outcome",
            ["saga", "kind", "name", "outcome"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.breaker_state = Gauge(
            "oms_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", ["downstream"],
            registry=self.registry,
        )  # fmt: skip
        self.breaker_refused = Gauge(
            "oms_breaker_not_permitted_calls", "Calls a breaker refused since start", ["downstream"],
            registry=self.registry,
        )  # fmt: skip

    def watch(self, breakers: Mapping[str, CircuitBreaker]) -> None:
        for name, breaker in breakers.items():
            self.breaker_state.labels(name).set_function(_state_of(breaker))
            self.breaker_refused.labels(name).set_function(_refused_by(breaker))


def _state_of(breaker: CircuitBreaker) -> Callable[[], float]:
    return lambda: float(STATE_VALUE[breaker.state])


def _refused_by(breaker: CircuitBreaker) -> Callable[[], float]:
    return lambda: float(str(breaker.snapshot()["not_permitted_calls"]))


class MeteredLog:
    """The saga log port, counting what passes through it on the way to the real log."""

    def __init__(self, inner: SagaLog, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def record(
        self,
        saga_id: str,
        entry: LogEntry | None,
        context: Mapping[str, Any],
        end: SagaEnd | None,
        *,
        earlier: Sequence[LogEntry] = (),
    ) -> None:
        await self.inner.record(saga_id, entry, context, end, earlier=earlier)
        saga = context.get("saga", "order")
        for row in (*earlier, entry):
            if row is not None:
                self.metrics.steps.labels(saga, row.kind, row.name, row.outcome).observe(row.duration_ms / 1000)
        if end is not None:
            self.metrics.sagas_ended.labels(saga, status_for(end, saga)).inc()
