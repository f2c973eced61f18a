"""The relay's metrics. The relay runs in a process of its own (``oms.events.process``), which writes
them to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode); OrderService
reads that directory when scraped, so they are served at its ``GET /metrics`` with its own."""

from __future__ import annotations

import collections
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class EventCount:
    """``oms_events_total`` alone, in OrderService's own registry: what its in-process tally counts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._events = Counter(
            "oms_events", "Events written to the outbox, by type (counted once, by the process holding the tally)",
            ["type"], registry=registry,
        )  # fmt: skip

    def events(self, counts: Mapping[str, int]) -> None:
        for event_type, count in counts.items():
            self._events.labels(event_type).inc(count)

    def oldest(self, way: str, seconds: float) -> None:
        """Not shown for the tally: nothing waits on a count."""

    def flush(self) -> None:
        """Counted at once."""


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self._deliveries = Counter(
            "oms_webhook_deliveries", "Webhook delivery tries, by outcome (delivered, retry, given_up, endpoint_gone)",
            ["outcome"], registry=registry,
        )  # fmt: skip
        self._delivery_seconds = Histogram(
            "oms_webhook_delivery_seconds", "Time a webhook delivery try took, to the answer or the error",
            registry=registry, buckets=DELIVERY_BUCKETS,
        )  # fmt: skip
        self._published = Counter("oms_nats_published", "Events JetStream acknowledged", registry=registry)
        self._tries: list[tuple[str, float]] = []
        self._publishes = 0
        self._oldest = Gauge(
            "oms_outbox_oldest_seconds", "Age of the oldest event a way out has not yet sent (0: none waits)",
            ["way"], registry=registry, multiprocess_mode="livemax",
        )  # fmt: skip

    def delivered(self, outcome: str, seconds: float) -> None:
        """A webhook try: counted with the next ``flush``."""
        self._tries.append((outcome, seconds))

    def published(self) -> None:
        self._publishes += 1

    def flush(self) -> None:
        """Count what was noted since the last flush: a multiprocess metric's every change is a write
        to its file, which once a delivery cost the relay 7% of its CPU under ``oms bench --webhook``."""
        tries, self._tries = self._tries, []
        for outcome, count in collections.Counter(outcome for outcome, _ in tries).items():
            self._deliveries.labels(outcome).inc(count)
        for _, seconds in tries:
            self._delivery_seconds.observe(seconds)
        if self._publishes:
            self._published.inc(self._publishes)
            self._publishes = 0

    def oldest(self, way: str, seconds: float) -> None:
        self._oldest.labels(way).set(seconds)
