"""The webhook retry schedule and the per-order ordering rule, on a given clock and given randomness."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oms.events.schedule import (
    Decision,
    Pending,
    State,
    Verdict,
    WebhookPolicy,
    backoff,
    decide,
    disable_reason,
    sendable,
)

POLICY = WebhookPolicy()  # 5 s, 1 h, 3 days
DAY = 86400.0


class Extreme(random.Random):
    """``uniform`` at one end of its range: the bounds of a wait, without sampling."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


policies = st.builds(
    lambda initial, factor, spans: WebhookPolicy(
        retry_initial=initial, retry_max=initial * factor, give_up_after=initial * factor * spans
    ),
    st.floats(0.01, 60), st.floats(1, 10_000), st.floats(0.5, 500),
)  # fmt: skip
"""give_up_after: up to 500 times the longest wait, so that a run of retries stays short."""


@given(policy=policies, retry=st.integers(1, 200), seed=st.integers())
def test_a_wait_is_within_initial_and_maximum(policy: WebhookPolicy, retry: int, seed: int) -> None:
    assert policy.retry_initial <= backoff(retry, policy, random.Random(seed)) <= policy.retry_max


@given(policy=policies, retry=st.integers(1, 200))
def test_both_ends_of_a_wait_and_so_its_expectation_never_decrease(policy: WebhookPolicy, retry: int) -> None:
    for high in (False, True):
        assert backoff(retry, policy, Extreme(high)) <= backoff(retry + 1, policy, Extreme(high))


def test_the_default_waits_double_from_5_seconds_up_to_an_hour() -> None:
    lows = [backoff(n, POLICY, Extreme(False)) for n in range(1, 12)]
    highs = [backoff(n, POLICY, Extreme(True)) for n in range(1, 12)]
    assert lows == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert highs == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]


def test_jitter_spreads_the_retries_of_many_deliveries() -> None:
    rng = random.Random(7)
    waits = {round(backoff(3, POLICY, rng), 3) for _ in range(100)}
    assert len(waits) > 90 and min(waits) >= 20 and max(waits) <= 40


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_delivered(status: int) -> None:
    assert decide(status, retry=1, first_tried_at=0, now=0, policy=POLICY, rng=random.Random(0)) == Decision(
        Verdict.DELIVERED
    )


def test_410_gone_disables_the_endpoint_at_once() -> None:
    decision = decide(410, retry=1, first_tried_at=0, now=0, policy=POLICY, rng=random.Random(0))
    assert decision.verdict is Verdict.ENDPOINT_GONE


@pytest.mark.parametrize("status", [None, 100, 301, 302, 307, 308, 400, 401, 404, 408, 429, 500, 502, 503, 504])
def test_every_other_answer_and_no_answer_is_tried_again(status: int | None) -> None:
    decision = decide(status, retry=1, first_tried_at=100, now=100, policy=POLICY, rng=random.Random(0))
    assert decision.verdict is Verdict.RETRY
    assert decision.next_try_at is not None and 105 <= decision.next_try_at <= 110


@given(policy=policies, seed=st.integers())
@settings(max_examples=50)
def test_a_delivery_that_always_fails_is_retried_until_give_up_after_then_given_up(
    policy: WebhookPolicy, seed: int
) -> None:
    rng, now, retry, start = random.Random(seed), 1_000_000.0, 1, 1_000_000.0
    while True:
        decision = decide(500, retry=retry, first_tried_at=start, now=now, policy=policy, rng=rng)
        if decision.verdict is Verdict.GIVEN_UP:
            break
        assert decision.verdict is Verdict.RETRY and decision.next_try_at is not None
        assert decision.next_try_at <= start + policy.give_up_after  # never a try past the window
        now, retry = decision.next_try_at, retry + 1
    assert now + policy.retry_max * 2 > start + policy.give_up_after  # ... and not given up much too early


def test_with_the_defaults_a_failing_delivery_gets_about_80_tries_over_3_days() -> None:
    rng, now, tries = random.Random(1), 0.0, 1
    while (d := decide(None, retry=tries, first_tried_at=0, now=now, policy=POLICY, rng=rng)).next_try_at:
        now, tries = d.next_try_at, tries + 1
    assert d.verdict is Verdict.GIVEN_UP
    assert 3 * DAY - 3600 < now <= 3 * DAY and 65 <= tries <= 90


def test_an_endpoint_failing_everything_for_3_days_is_disabled_with_the_reason() -> None:
    assert disable_reason(None, 10 * DAY, POLICY) is None
    assert disable_reason(0.0, 3 * DAY - 1, POLICY) is None
    reason = disable_reason(0.0, 3 * DAY, POLICY)
    assert reason is not None and "every delivery failed for 3 days" in reason


def test_an_orders_next_event_waits_for_the_one_before_while_other_orders_go() -> None:
    pending = [
        Pending("a", 1, State.IN_FLIGHT),
        Pending("a", 2),
        Pending("b", 3, due_at=5.0),
        Pending("b", 2, State.DONE),
        Pending("b", 4),
        Pending("c", 1, due_at=50.0),  # waiting for its retry
        Pending("c", 2),
    ]
    assert sendable(pending, now=10.0, concurrency=16) == [Pending("b", 3, due_at=5.0)]
    assert sendable(pending, now=60.0, concurrency=16) == [Pending("b", 3, due_at=5.0), Pending("c", 1, due_at=50.0)]


def test_at_most_concurrency_in_flight_per_endpoint() -> None:
    pending = [Pending(f"o{i}", 1, State.IN_FLIGHT) for i in range(10)] + [Pending(f"p{i}", 1) for i in range(10)]
    assert len(sendable(pending, now=0, concurrency=16)) == 6
    assert sendable(pending, now=0, concurrency=10) == []


@st.composite
def workloads(draw: st.DrawFn) -> tuple[dict[str, list[int]], int]:
    orders = draw(st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.integers(1, 6), max_size=12))
    # Each order's sequences, with gaps: an endpoint may take only some of an order's events.
    layout = {o: sorted(draw(st.sets(st.integers(1, 12), min_size=n, max_size=n))) for o, n in orders.items()}
    return layout, draw(st.integers(1, 5))


@given(workload=workloads(), seed=st.integers())
@settings(max_examples=300)
def test_no_event_goes_before_its_orders_earlier_events_are_done(
    workload: tuple[dict[str, list[int]], int], seed: int
) -> None:
    """Deliveries start, succeed, fail (and wait for a retry) or are given up on in any order: an event
    starts only once every earlier event of its order is done, at most ``concurrency`` are in flight, and
    every event is done in the end."""
    layout, concurrency = workload
    rng = random.Random(seed)
    table = {(o, n): Pending(o, n) for o, seqs in layout.items() for n in seqs}
    now = 0.0
    for _ in range(10_000):
        if all(p.state is State.DONE for p in table.values()):
            break
        for chosen in sendable(table.values(), now=now, concurrency=concurrency):
            assert chosen.state is State.WAITING and chosen.due_at <= now
            earlier = [p for p in table.values() if p.order_id == chosen.order_id and p.sequence < chosen.sequence]
            assert all(p.state is State.DONE for p in earlier)
            table[chosen.order_id, chosen.sequence] = replace(chosen, state=State.IN_FLIGHT)
        flying = sorted(key for key, p in table.items() if p.state is State.IN_FLIGHT)
        assert len(flying) <= concurrency
        assert len({order for order, _ in flying}) == len(flying)  # one per order
        now += 1.0
        for key in flying:
            outcome = rng.choice(["still", "done", "retry"])
            if outcome == "done":  # delivered, or given up on
                table[key] = replace(table[key], state=State.DONE)
            elif outcome == "retry":
                table[key] = replace(table[key], state=State.WAITING, due_at=now + rng.randint(0, 3))
    else:
        pytest.fail("the deliveries did not all get done")
