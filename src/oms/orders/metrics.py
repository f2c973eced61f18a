"""Prometheus metrics of OrderService: sagas by final status, saga steps by outcome and time, sagas
in flight, and the breakers. Served at ``GET /metrics``, with every service's request metrics
(``oms.telemetry.http_metrics``), from one registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Sized
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from oms.orders.saga import status_for
from oms.resilience.breaker import CircuitBreaker, State
from oms.saga.engine import LogEntry, SagaEnd, SagaLog, SagaStatus

STATE_VALUE = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2, State.DISABLED: 3, State.FORCED_OPEN: 4}


C = TypeVar("C", bound=Mapping[str, Any])

FINAL = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.COMPENSATION_FAILED})
"""The ends that end a saga's run; a WAITING one only pauses it until recovery asks again."""


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.sagas_ended = Counter(
            "oms_sagas_ended", "Saga runs that reached a final end, by saga and order status", ["saga", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.sagas_in_flight = Gauge(
            "oms_sagas_in_flight", "Sagas this process is driving now", registry=self.registry
        )  # fmt: skip
        self.breaker_transitions = Counter(
            "oms_breaker_transitions", "Circuit breaker state changes, by downstream and states",
            ["downstream", "from_state", "to_state"], registry=self.registry,
        )  # fmt: skip
        self.steps = Histogram(
            "oms_saga_step_seconds", "Saga steps and compensations, by name and outcome",
            ["saga", "kind", "name", "outcome"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.breaker_state = Gauge(
            "oms_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open, 3 disabled, 4 forced open",
            ["downstream"], registry=self.registry,
        )  # fmt: skip
        self.breaker_refused = Gauge(
            "oms_breaker_not_permitted_calls", "Calls a breaker refused since start", ["downstream"],
            registry=self.registry,
        )  # fmt: skip

    def watch(self, breakers: Mapping[str, CircuitBreaker]) -> None:
        for name, breaker in breakers.items():
            self.breaker_state.labels(name).set_function(_state_of(breaker))
            self.breaker_refused.labels(name).set_function(_refused_by(breaker))

    def watch_sagas(self, running: Sized) -> None:
        """``running``: the sagas the process drives (OrderService.running), counted when scraped."""
        self.sagas_in_flight.set_function(lambda: float(len(running)))

    def breaker_changed(self, name: str, old: State, new: State) -> None:
        """For a breaker's ``on_state_change``: counts the transition."""
        self.breaker_transitions.labels(name, old.value, new.value).inc()


def _state_of(breaker: CircuitBreaker) -> Callable[[], float]:
    return lambda: float(STATE_VALUE[breaker.state])


def _refused_by(breaker: CircuitBreaker) -> Callable[[], float]:
    return lambda: float(str(breaker.snapshot()["not_permitted_calls"]))


class MeteredLog(Generic[C]):
    """The saga log port, counting what passes through it on the way to the real log."""

    def __init__(self, inner: SagaLog[C], metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def record(
        self,
        saga_id: str,
        entry: LogEntry | None,
        context: C,
        end: SagaEnd | None,
        *,
        earlier: Sequence[LogEntry] = (),
    ) -> None:
        await self.inner.record(saga_id, entry, context, end, earlier=earlier)
        saga = context.get("saga", "order")
        for row in (*earlier, entry):
            if row is not None:
                self.metrics.steps.labels(saga, row.kind, row.name, row.outcome).observe(row.duration_ms / 1000)
        # Once per run: a saga that waits (an outcome it could not learn) ends its run WAITING each
        # time it asks again in vain, and ends for good only once.
        if end is not None and end.status in FINAL:
            self.metrics.sagas_ended.labels(saga, status_for(end, saga)).inc()
