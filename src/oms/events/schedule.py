"""When a webhook delivery is tried again, when it is given up on, when an endpoint is disabled, and which
deliveries may go now: the decisions, kept pure (the clock and the randomness are given), so that tests
can run three days of retries in a millisecond.

Retries back off exponentially with jitter: the n-th retry waits a random time between ``retry_initial * 2**(n-1)``
and twice that, both capped at ``retry_max``. The jitter spreads an endpoint's retries out after an outage
instead of sending them all at the same instant; the lower bound keeps a retry from coming right away.

Ordering, per endpoint: an order's next event goes only once the one before it is done there (delivered,
or given up on), so a receiver sees each order's events in order; different orders go side by side, at
most ``concurrency`` requests in flight.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class WebhookPolicy:
    """How webhooks are delivered and tried again: the one place these numbers are written (Settings
    nests it as ``webhook``: ``OMS_WEBHOOK_TIMEOUT`` and so on)."""

    timeout: float = 10.0
    """Seconds a webhook receiver has to answer a delivery (connecting included); later is a failed try."""
    retry_initial: float = 5.0
    """Seconds before a failed webhook delivery's first retry; each retry waits about twice as long as the
    one before, with jitter (docs/webhooks.md)..."""
    retry_max: float = 3600.0
    """...up to this many seconds."""
    give_up_after: float = 3 * 86400.0
    """Seconds after its first try that a failing webhook delivery is given up on (3 days), and that an
    endpoint which failed every delivery is disabled."""
    concurrency: int = 16
    """Webhook requests in flight to one endpoint at most (each order's events still go one at a time)."""

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"WebhookPolicy.timeout must be > 0, got {self.timeout!r}")
        if not 0 < self.retry_initial <= self.retry_max:
            raise ValueError("WebhookPolicy needs 0 < retry_initial <= retry_max")
        if not self.give_up_after > 0:
            raise ValueError(f"WebhookPolicy.give_up_after must be > 0, got {self.give_up_after!r}")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise ValueError(f"WebhookPolicy.concurrency must be an integer, got {self.concurrency!r}")
        if not 1 <= self.concurrency <= 1000:
            raise ValueError(f"WebhookPolicy.concurrency must be 1 to 1000, got {self.concurrency!r}")


def backoff(retry: int, policy: WebhookPolicy, rng: random.Random) -> float:
    """Seconds to wait before the ``retry``-th retry (1 for the first): uniform between the exponential
    step and twice it, capped at ``policy.retry_max``."""
    if retry < 1:
        raise ValueError("retries count from 1")
    step = policy.retry_initial * 2.0 ** min(retry - 1, 60)  # 2**60 * anything positive is past any maximum
    low = min(step, policy.retry_max)
    return rng.uniform(low, min(2 * step, policy.retry_max))


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVEN_UP = "given_up"
    """Tried for ``give_up_after``: marked failed, shown, can be replayed."""
    ENDPOINT_GONE = "endpoint_gone"
    """The endpoint answered 410 Gone: it is disabled at once, and this delivery fails."""


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    next_try_at: float | None = None
    """When to try again (seconds since the epoch), for RETRY only."""


def is_success(status: int | None) -> bool:
    """Any 2xx; no answer (an error) or a redirect (never followed) is no success."""
    return status is not None and 200 <= status < 300


def decide(
    status: int | None, *, retry: int, first_tried_at: float, now: float, policy: WebhookPolicy, rng: random.Random
) -> Decision:
    """What follows a try that answered ``status`` (``None``: timeout, connection refused or dropped...).
    ``retry``: which retry the next one would be (1 after the first try); ``first_tried_at``: when the
    delivery's first try was made. A retry that would fall past ``first_tried_at + give_up_after`` is not
    scheduled: the delivery is given up on now rather than kept waiting for a try it will not get."""
    if is_success(status):
        return Decision(Verdict.DELIVERED)
    if status == 410:
        return Decision(Verdict.ENDPOINT_GONE)
    next_try_at = now + backoff(retry, policy, rng)
    if next_try_at > first_tried_at + policy.give_up_after:
        return Decision(Verdict.GIVEN_UP)
    return Decision(Verdict.RETRY, next_try_at)


def disable_reason(failing_since: float | None, now: float, policy: WebhookPolicy) -> str | None:
    """Why an endpoint must be disabled, or ``None``: ``failing_since`` is when the first of its failed
    tries since its last success was made (``None``: its last try succeeded, or none was made)."""
    if failing_since is None or now - failing_since < policy.give_up_after:
        return None
    days = policy.give_up_after / 86400
    span = f"{days:g} days" if days >= 1 else f"{policy.give_up_after:g} s"
    return f"every delivery failed for {span} (since {failing_since:.0f}, seconds since the epoch)"


class State(StrEnum):
    WAITING = "waiting"
    """Not yet tried, or waiting for its next try."""
    IN_FLIGHT = "in_flight"
    DONE = "done"
    """Delivered, or given up on: the order's next event may go."""


@dataclass(frozen=True)
class Pending:
    """One event's delivery to one endpoint. ``sequence``: the event's place among its order's events
    (gaps are fine: an endpoint may take only some types)."""

    order_id: str
    sequence: int
    state: State = State.WAITING
    due_at: float = 0.0
    """When it may be tried (its next try, after a failure)."""


def sendable(deliveries: Iterable[Pending], *, now: float, concurrency: int) -> list[Pending]:
    """The deliveries that may start now, oldest due first: of each order, only its lowest-numbered not
    yet done, if it is waiting and due; no more than ``concurrency`` in flight once they start.

    The caller lists every delivery of the endpoint not yet done (done ones may be listed too, they are
    ignored); an order's delivery missing from the list is taken as done. Deliveries are made from the
    outbox in each order's sequence, so an order's event n+1 is never listed without its event n unless
    n is done."""
    first: dict[str, Pending] = {}
    in_flight = 0
    for delivery in deliveries:
        if delivery.state is State.DONE:
            continue
        if delivery.state is State.IN_FLIGHT:
            in_flight += 1
        held = first.get(delivery.order_id)
        if held is None or delivery.sequence < held.sequence:
            first[delivery.order_id] = delivery
    room = concurrency - in_flight
    if room <= 0:
        return []
    ready = [d for d in first.values() if d.state is State.WAITING and d.due_at <= now]
    ready.sort(key=lambda d: (d.due_at, d.order_id, d.sequence))
    return ready[:room]
