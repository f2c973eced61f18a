"""Unit tests for the circuit breaker, driven by a FakeClock so every time-based transition is deterministic."""

from __future__ import annotations

import asyncio
import pickle
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oms.resilience.breaker import BreakerConfig, CallNotPermitted, CircuitBreaker, Permit, State
from oms.resilience.clock import FakeClock, SystemClock

FAST = 0.1


class Transitions:
    """Collects on_state_change callbacks."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, State, State]] = []

    def __call__(self, name: str, old: State, new: State) -> None:
        self.seen.append((name, old, new))


def make(clock: FakeClock | None = None, transitions: Transitions | None = None, **overrides: Any) -> CircuitBreaker:
    config = BreakerConfig(**overrides)
    return CircuitBreaker("payments", config, clock=clock or FakeClock(), on_state_change=transitions)


def succeed(breaker: CircuitBreaker, duration: float = FAST) -> None:
    breaker.record_success(breaker.acquire(), duration)


def fail(breaker: CircuitBreaker, duration: float = FAST) -> None:
    breaker.record_failure(breaker.acquire(), duration)


def open_breaker(clock: FakeClock, transitions: Transitions | None = None, **overrides: Any) -> CircuitBreaker:
    breaker = make(clock, transitions, **overrides)
    for _ in range(breaker.config.minimum_calls):
        fail(breaker)
    assert breaker.state is State.OPEN
    return breaker


def half_open_breaker(clock: FakeClock, **overrides: Any) -> CircuitBreaker:
    breaker = open_breaker(clock, **overrides)
    clock.advance(breaker.config.wait_in_open)
    assert breaker.state is State.HALF_OPEN
    return breaker


# --- CLOSED -> OPEN -------------------------------------------------------------------------------------------


def test_opens_once_failure_rate_reaches_threshold() -> None:
    transitions = Transitions()
    breaker = make(transitions=transitions, failure_rate_threshold=50.0, minimum_calls=5, window_size=10)
    for _ in range(3):
        succeed(breaker)
    fail(breaker)
    fail(breaker)
    assert breaker.state is State.CLOSED  # 2 of 5 = 40 %
    assert breaker.snapshot()["failure_rate"] == 40.0
    fail(breaker)  # 3 of 6 = 50 %: the threshold itself opens
    assert breaker.state is State.OPEN
    assert transitions.seen == [("payments", State.CLOSED, State.OPEN)]


def test_opens_once_slow_call_rate_reaches_threshold() -> None:
    breaker = make(slow_call_rate_threshold=50.0, slow_call_duration=1.0, minimum_calls=4)
    succeed(breaker, 0.99)
    succeed(breaker, 0.5)
    succeed(breaker, 1.0)  # exactly slow_call_duration counts as slow
    assert breaker.state is State.CLOSED
    succeed(breaker, 3.0)  # 2 of 4 slow, although every call succeeded
    assert breaker.state is State.OPEN
    snap = breaker.snapshot()
    assert (snap["slow_calls"], snap["slow_call_rate"], snap["failed_calls"]) == (2, 50.0, 0)


def test_slow_failures_count_towards_both_rates() -> None:
    breaker = make(failure_rate_threshold=100.0, slow_call_rate_threshold=100.0, minimum_calls=2)
    fail(breaker, 5.0)
    succeed(breaker, FAST)
    snap = breaker.snapshot()
    assert (snap["failed_calls"], snap["slow_calls"]) == (1, 1)
    assert breaker.state is State.CLOSED


def test_call_measures_duration_with_the_clock() -> None:
    clock = FakeClock()
    breaker = make(clock, slow_call_rate_threshold=100.0, slow_call_duration=2.0, minimum_calls=1)

    async def sluggish() -> str:
        clock.advance(2.5)
        return "late"

    assert asyncio.run(breaker.call(sluggish)) == "late"
    assert breaker.snapshot()["slow_calls"] == 1
    assert breaker.state is State.OPEN


def test_no_rate_and_no_opening_below_minimum_calls() -> None:
    breaker = make(minimum_calls=5, failure_rate_threshold=50.0)
    for _ in range(4):
        fail(breaker)
    snap = breaker.snapshot()
    assert snap["state"] == "closed"
    assert snap["failure_rate"] is None
    assert snap["slow_call_rate"] is None
    assert snap["failed_calls"] == 4
    fail(breaker)
    assert breaker.state is State.OPEN


def test_minimum_calls_larger_than_count_window_is_capped_at_window_size() -> None:
    breaker = make(window_size=3, minimum_calls=5)
    for _ in range(3):
        fail(breaker)
    assert breaker.state is State.OPEN


def test_count_window_forgets_outcomes_older_than_window_size() -> None:
    breaker = make(window_size=4, minimum_calls=4, failure_rate_threshold=75.0)
    fail(breaker)
    fail(breaker)
    succeed(breaker)
    succeed(breaker)  # [F F S S] = 50 %
    fail(breaker)  # [F S S F] = 50 %: the first failure fell out
    assert breaker.snapshot()["failed_calls"] == 2
    assert breaker.state is State.CLOSED
    fail(breaker)  # [S S F F]
    fail(breaker)  # [S F F F] = 75 %
    assert breaker.state is State.OPEN


# --- time window ----------------------------------------------------------------------------------------------


def test_time_window_drops_buckets_as_the_clock_advances() -> None:
    clock = FakeClock()
    breaker = make(clock, window_type="time", window_size=10, minimum_calls=2, failure_rate_threshold=100.0)
    fail(breaker)
    succeed(breaker)
    clock.advance(5.0)
    succeed(breaker)
    succeed(breaker)
    clock.advance(4.99)  # t = 9.99: the bucket of second 0 is still inside the last 10 seconds
    assert (breaker.snapshot()["calls"], breaker.snapshot()["failed_calls"]) == (4, 1)
    clock.advance(0.01)  # t = 10.0: second 0 is out
    snap = breaker.snapshot()
    assert (snap["calls"], snap["failed_calls"], snap["failure_rate"]) == (2, 0, 0.0)
    clock.advance(5.0)  # t = 15.0: second 5 is out too
    snap = breaker.snapshot()
    assert (snap["calls"], snap["failure_rate"]) == (0, None)


def test_time_window_does_not_open_on_failures_that_aged_out() -> None:
    clock = FakeClock()
    breaker = make(clock, window_type="time", window_size=10, minimum_calls=4, failure_rate_threshold=60.0)
    fail(breaker)
    fail(breaker)
    succeed(breaker)
    succeed(breaker)
    clock.advance(20.0)
    fail(breaker)
    fail(breaker)  # 4 of 6 if the old calls still counted
    assert breaker.state is State.CLOSED
    clock.advance(3.0)
    fail(breaker)
    fail(breaker)  # 4 of 4 within the last 10 seconds
    assert breaker.state is State.OPEN


# --- OPEN -----------------------------------------------------------------------------------------------------


def test_open_refuses_calls_and_counts_refusals() -> None:
    clock = FakeClock()
    breaker = open_breaker(clock)
    with pytest.raises(CallNotPermitted) as refused:
        breaker.acquire()
    assert refused.value.breaker == "payments"
    assert refused.value.state is State.OPEN
    assert "payments" in str(refused.value) and "open" in str(refused.value)

    invoked = False

    async def downstream() -> None:
        nonlocal invoked
        invoked = True

    with pytest.raises(CallNotPermitted):
        asyncio.run(breaker.call(downstream))
    assert not invoked
    assert breaker.snapshot()["not_permitted_calls"] == 2


def test_open_moves_to_half_open_once_wait_in_open_has_passed() -> None:
    clock = FakeClock(100.0)
    transitions = Transitions()
    breaker = open_breaker(clock, transitions, wait_in_open=5.0)
    assert breaker.snapshot()["state_changed_at"] == 100.0
    clock.advance(4.999)
    assert breaker.state is State.OPEN
    with pytest.raises(CallNotPermitted):
        breaker.acquire()
    clock.advance(0.001)
    assert breaker.state is State.HALF_OPEN
    assert breaker.snapshot()["state_changed_at"] == 105.0
    assert transitions.seen[-1] == ("payments", State.OPEN, State.HALF_OPEN)


# --- HALF_OPEN ------------------------------------------------------------------------------------------------


def test_half_open_closes_when_probes_succeed() -> None:
    clock = FakeClock()
    breaker = half_open_breaker(clock, half_open_calls=3)
    succeed(breaker)
    succeed(breaker)
    assert breaker.state is State.HALF_OPEN  # no decision before all probes are in
    assert breaker.snapshot()["calls"] == 2  # probes are counted in a fresh window
    succeed(breaker)
    assert breaker.state is State.CLOSED
    snap = breaker.snapshot()
    assert (snap["calls"], snap["failed_calls"]) == (0, 0)


def test_half_open_closes_when_probe_failures_stay_below_threshold() -> None:
    clock = FakeClock()
    breaker = half_open_breaker(clock, half_open_calls=3, failure_rate_threshold=50.0)
    fail(breaker)
    succeed(breaker)
    succeed(breaker)  # 1 of 3 = 33 %
    assert breaker.state is State.CLOSED


def test_half_open_reopens_when_probes_fail() -> None:
    clock = FakeClock()
    transitions = Transitions()
    breaker = open_breaker(clock, transitions, half_open_calls=3, failure_rate_threshold=50.0)
    clock.advance(breaker.config.wait_in_open)
    succeed(breaker)
    fail(breaker)
    assert breaker.state is State.HALF_OPEN
    fail(breaker)  # 2 of 3 = 67 %
    assert breaker.state is State.OPEN
    assert [(old, new) for _, old, new in transitions.seen] == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.OPEN),
    ]
    clock.advance(breaker.config.wait_in_open)  # a fresh OPEN period, then probing again
    assert breaker.state is State.HALF_OPEN


def test_half_open_refuses_once_all_probe_permits_are_taken() -> None:
    clock = FakeClock()
    breaker = half_open_breaker(clock, half_open_calls=2)
    breaker.acquire()
    breaker.acquire()
    with pytest.raises(CallNotPermitted) as refused:
        breaker.acquire()
    assert refused.value.state is State.HALF_OPEN
    assert breaker.snapshot()["not_permitted_calls"] == 1


def test_concurrent_callers_in_half_open_only_half_open_calls_get_through() -> None:
    async def scenario() -> tuple[CircuitBreaker, int, list[object]]:
        clock = FakeClock()
        breaker = half_open_breaker(clock, half_open_calls=3)
        gate = asyncio.Event()
        entered = 0

        async def probe() -> str:
            nonlocal entered
            entered += 1
            await gate.wait()
            return "ok"

        tasks = [asyncio.create_task(breaker.call(probe)) for _ in range(10)]
        await asyncio.sleep(0)  # every task runs up to its first suspension point
        assert entered == 3
        assert breaker.state is State.HALF_OPEN
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return breaker, entered, list(results)

    breaker, entered, results = asyncio.run(scenario())
    assert entered == 3
    assert results.count("ok") == 3
    assert sum(isinstance(r, CallNotPermitted) for r in results) == 7
    assert breaker.state is State.CLOSED
    assert breaker.snapshot()["not_permitted_calls"] == 7


def test_cancelled_probe_gives_its_permit_back_and_records_nothing() -> None:
    async def scenario() -> CircuitBreaker:
        clock = FakeClock()
        breaker = half_open_breaker(clock, half_open_calls=1)
        gate = asyncio.Event()

        async def stuck() -> str:
            await gate.wait()
            return "never"

        async def quick() -> str:
            return "ok"

        probe = asyncio.create_task(breaker.call(stuck))
        await asyncio.sleep(0)
        with pytest.raises(CallNotPermitted):
            await breaker.call(quick)  # the only permit is with the probe
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        snap = breaker.snapshot()
        assert (snap["state"], snap["calls"], snap["failed_calls"]) == ("half_open", 0, 0)
        assert await breaker.call(quick) == "ok"  # the freed permit lets another caller probe
        return breaker

    breaker = asyncio.run(scenario())
    assert breaker.state is State.CLOSED


def test_cancelled_call_in_closed_records_nothing() -> None:
    async def scenario() -> CircuitBreaker:
        breaker = make(minimum_calls=1)

        async def forever() -> None:
            await asyncio.Event().wait()

        task = asyncio.create_task(breaker.call(forever))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return breaker

    breaker = asyncio.run(scenario())
    assert breaker.snapshot()["calls"] == 0
    assert breaker.state is State.CLOSED


def test_stuck_probe_sends_half_open_back_to_open() -> None:
    clock = FakeClock()
    transitions = Transitions()
    breaker = open_breaker(clock, transitions, half_open_calls=1, max_wait_in_half_open=10.0)
    clock.advance(breaker.config.wait_in_open)
    stuck = breaker.acquire()
    clock.advance(9.9)
    assert breaker.state is State.HALF_OPEN
    clock.advance(0.1)
    assert breaker.state is State.OPEN
    assert transitions.seen[-1] == ("payments", State.HALF_OPEN, State.OPEN)
    breaker.record_success(stuck, FAST)  # too late: it must not close the breaker
    assert breaker.state is State.OPEN


def test_zero_max_wait_in_half_open_means_no_limit() -> None:
    clock = FakeClock()
    breaker = half_open_breaker(clock, max_wait_in_half_open=0.0)
    breaker.acquire()
    clock.advance(10_000.0)
    assert breaker.state is State.HALF_OPEN


# --- outcomes, permits, predicate -----------------------------------------------------------------------------


class ClientError(Exception):
    """Stands for a 4xx answer: the downstream is up, the request was wrong."""


def test_exception_rejected_by_is_failure_counts_as_success() -> None:
    breaker = CircuitBreaker(
        "inventory",
        BreakerConfig(minimum_calls=1),
        clock=FakeClock(),
        is_failure=lambda exc: not isinstance(exc, ClientError),
    )

    async def bad_request() -> None:
        raise ClientError("409")

    async def outage() -> None:
        raise ConnectionError("down")

    with pytest.raises(ClientError):
        asyncio.run(breaker.call(bad_request))
    snap = breaker.snapshot()
    assert (snap["calls"], snap["failed_calls"], snap["state"]) == (1, 0, "closed")
    with pytest.raises(ConnectionError):
        asyncio.run(breaker.call(outage))
    snap = breaker.snapshot()
    assert (snap["calls"], snap["failed_calls"]) == (2, 1)
    assert breaker.state is State.OPEN  # 1 of 2 = 50 %


def test_broken_predicate_releases_the_probe_permit() -> None:
    def predicate(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    clock = FakeClock()
    breaker = CircuitBreaker("x", BreakerConfig(minimum_calls=1, half_open_calls=1), clock=clock, is_failure=predicate)
    fail(breaker)
    clock.advance(breaker.config.wait_in_open)

    async def boom() -> None:
        raise ValueError

    with pytest.raises(RuntimeError):
        asyncio.run(breaker.call(boom))
    breaker.acquire()  # would raise if the permit had been stranded
    assert breaker.state is State.HALF_OPEN


def test_permit_from_an_earlier_state_generation_is_ignored() -> None:
    clock = FakeClock()
    breaker = make(clock, minimum_calls=2, half_open_calls=1)
    early = breaker.acquire()  # a call that starts while CLOSED ...
    fail(breaker)
    fail(breaker)
    assert breaker.state is State.OPEN
    breaker.record_failure(early, FAST)  # ... and ends after the breaker opened
    assert breaker.snapshot()["failed_calls"] == 2
    clock.advance(breaker.config.wait_in_open)
    probe = breaker.acquire()  # the only probe permit, outstanding while the stale one reports
    breaker.record_success(early, FAST)  # nor may it pass for the half-open probe
    assert breaker.state is State.HALF_OPEN
    assert breaker.snapshot()["calls"] == 0
    breaker.release(early)  # releasing it must not mint an extra probe permit
    with pytest.raises(CallNotPermitted):
        breaker.acquire()
    breaker.record_success(probe, FAST)
    assert breaker.state is State.CLOSED


def test_a_permit_counts_only_once() -> None:
    breaker = make(minimum_calls=10)
    permit = breaker.acquire()
    breaker.record_failure(permit, FAST)
    breaker.record_failure(permit, FAST)
    breaker.release(permit)
    assert breaker.snapshot()["calls"] == 1
    forged = Permit(permit.generation, permit.serial + 1000)
    breaker.record_failure(forged, FAST)
    assert breaker.snapshot()["calls"] == 1


def test_call_returns_the_result_and_records_success() -> None:
    breaker = make()

    async def fetch() -> int:
        return 42

    assert asyncio.run(breaker.call(fetch)) == 42
    snap = breaker.snapshot()
    assert (snap["calls"], snap["failed_calls"], snap["slow_calls"]) == (1, 0, 0)


# --- snapshot, reset, config ----------------------------------------------------------------------------------


def test_snapshot_figures() -> None:
    clock = FakeClock(7.0)
    breaker = make(
        clock,
        window_size=10,
        minimum_calls=4,
        failure_rate_threshold=80.0,
        slow_call_rate_threshold=80.0,
        slow_call_duration=1.0,
    )
    assert breaker.snapshot() == {
        "state": "closed",
        "failure_rate": None,
        "slow_call_rate": None,
        "calls": 0,
        "failed_calls": 0,
        "slow_calls": 0,
        "not_permitted_calls": 0,
        "state_changed_at": 7.0,
    }
    fail(breaker, 2.0)
    fail(breaker)
    succeed(breaker)
    succeed(breaker, 1.5)
    succeed(breaker)
    assert breaker.snapshot() == {
        "state": "closed",
        "failure_rate": 40.0,
        "slow_call_rate": 40.0,
        "calls": 5,
        "failed_calls": 2,
        "slow_calls": 2,
        "not_permitted_calls": 0,
        "state_changed_at": 7.0,
    }


def test_reset_returns_to_closed_with_an_empty_window() -> None:
    clock = FakeClock()
    transitions = Transitions()
    breaker = open_breaker(clock, transitions)
    with pytest.raises(CallNotPermitted):
        breaker.acquire()
    clock.advance(1.0)
    breaker.reset()
    assert breaker.state is State.CLOSED
    snap = breaker.snapshot()
    assert (snap["calls"], snap["failed_calls"], snap["state_changed_at"]) == (0, 0, 1.0)
    assert snap["not_permitted_calls"] == 1  # a running total since start
    assert transitions.seen[-1] == ("payments", State.OPEN, State.CLOSED)
    succeed(breaker)
    breaker.reset()
    assert len(transitions.seen) == 2  # CLOSED -> CLOSED is no transition
    assert breaker.snapshot()["calls"] == 0


def test_defaults() -> None:
    config = BreakerConfig()
    assert (config.failure_rate_threshold, config.slow_call_rate_threshold, config.slow_call_duration) == (
        50.0,
        100.0,
        2.0,
    )
    assert (config.window_type, config.window_size, config.minimum_calls) == ("count", 10, 5)
    assert (config.wait_in_open, config.half_open_calls, config.max_wait_in_half_open) == (5.0, 3, 10.0)
    breaker = CircuitBreaker("svc")
    assert breaker.config == config
    assert breaker.name == "svc"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("failure_rate_threshold", 0.0),
        ("failure_rate_threshold", 100.1),
        ("failure_rate_threshold", float("nan")),
        ("slow_call_rate_threshold", -5.0),
        ("slow_call_duration", -0.1),
        ("wait_in_open", float("nan")),
        ("max_wait_in_half_open", -1.0),
        ("window_size", 0),
        ("window_size", 2.5),
        ("minimum_calls", 0),
        ("half_open_calls", -1),
        ("window_type", "sliding"),
    ],
)
def test_config_validation_rejects(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        BreakerConfig(**{field: value})  # type: ignore[arg-type]  # wrong on purpose


def test_config_validation_accepts_boundaries() -> None:
    config = BreakerConfig(
        failure_rate_threshold=100.0,
        slow_call_rate_threshold=0.001,
        slow_call_duration=0.0,
        wait_in_open=0.0,
        max_wait_in_half_open=0.0,
        window_size=1,
        minimum_calls=1,
        half_open_calls=1,
        window_type="time",
    )
    assert config.window_type == "time"


def test_call_not_permitted_survives_pickling() -> None:
    original = CallNotPermitted("orders", State.OPEN)
    copy = pickle.loads(pickle.dumps(original))
    assert (copy.breaker, copy.state, str(copy)) == ("orders", State.OPEN, str(original))


def test_clocks() -> None:
    clock = FakeClock(3.0)
    clock.advance(1.5)
    assert clock.monotonic() == 4.5
    with pytest.raises(ValueError):
        clock.advance(-1.0)
    system = SystemClock()
    first = system.monotonic()
    assert system.monotonic() >= first


# --- property -------------------------------------------------------------------------------------------------


# Thresholds that small windows can hit exactly, so the at-or-above boundary gets exercised, plus any other.
thresholds = st.one_of(st.sampled_from([20, 25, 50, 75, 100]), st.integers(1, 100))


@settings(max_examples=300)
@given(
    window_size=st.integers(1, 8),
    minimum_calls=st.integers(1, 10),
    failure_threshold=thresholds,
    slow_threshold=thresholds,
    outcomes=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=40),
)
def test_closed_count_window_matches_a_recomputation(
    window_size: int,
    minimum_calls: int,
    failure_threshold: int,
    slow_threshold: int,
    outcomes: list[tuple[bool, bool]],
) -> None:
    breaker = make(
        window_size=window_size,
        minimum_calls=minimum_calls,
        failure_rate_threshold=float(failure_threshold),
        slow_call_rate_threshold=float(slow_threshold),
        slow_call_duration=1.0,
    )
    history: list[tuple[bool, bool]] = []
    for failed, slow in outcomes:
        (fail if failed else succeed)(breaker, 1.0 if slow else FAST)
        history.append((failed, slow))
        last = history[-window_size:]
        calls = len(last)
        failures = sum(f for f, _ in last)
        slows = sum(s for _, s in last)
        snap = breaker.snapshot()
        assert (snap["calls"], snap["failed_calls"], snap["slow_calls"]) == (calls, failures, slows)
        if calls >= min(minimum_calls, window_size):
            failure_rate = Fraction(100 * failures, calls)
            slow_rate = Fraction(100 * slows, calls)
            assert snap["failure_rate"] == pytest.approx(float(failure_rate))
            assert snap["slow_call_rate"] == pytest.approx(float(slow_rate))
            crossed = failure_rate >= failure_threshold or slow_rate >= slow_threshold
        else:
            assert snap["failure_rate"] is None and snap["slow_call_rate"] is None
            crossed = False
        assert breaker.state is (State.OPEN if crossed else State.CLOSED)
        if crossed:
            break


# --- the operator's switches: FORCED_OPEN, DISABLED, CLOSED ----------------------------------------------------


def breaker_in(state: State, clock: FakeClock, transitions: Transitions | None = None) -> CircuitBreaker:
    """A breaker in ``state``, reached as it would be (calls and time, or an operator's switch)."""
    if state is State.CLOSED:
        breaker = make(clock, transitions)
        succeed(breaker)
    elif state is State.OPEN:
        breaker = open_breaker(clock, transitions)
    elif state is State.HALF_OPEN:
        breaker = open_breaker(clock, transitions)
        clock.advance(breaker.config.wait_in_open)
        assert breaker.state is State.HALF_OPEN
    else:
        breaker = make(clock, transitions)
        breaker.switch(state)
    assert breaker.state is state
    return breaker


EVERY_STATE = list(State)


@pytest.mark.parametrize("start", EVERY_STATE)
@pytest.mark.parametrize("target", [State.FORCED_OPEN, State.DISABLED, State.CLOSED])
def test_an_operator_may_switch_from_every_state(start: State, target: State) -> None:
    clock, transitions = FakeClock(), Transitions()
    breaker = breaker_in(start, clock, transitions)
    before = list(transitions.seen)
    breaker.switch(target)
    assert breaker.state is target
    figures = breaker.snapshot()
    assert (figures["state"], figures["calls"], figures["failed_calls"]) == (target.value, 0, 0)
    # The callback (and so oms_breaker_transitions_total) sees the switch, once, unless nothing changed.
    expected = [] if start is target else [("payments", start, target)]
    assert transitions.seen[len(before) :] == expected


@pytest.mark.parametrize("target", [State.OPEN, State.HALF_OPEN])
def test_open_and_half_open_are_not_switches(target: State) -> None:
    breaker = make()
    with pytest.raises(ValueError, match="forced_open, disabled, closed"):
        breaker.switch(target)
    assert breaker.state is State.CLOSED


def test_forced_open_refuses_every_call_and_stays_open() -> None:
    clock = FakeClock()
    breaker = make(clock)
    breaker.switch(State.FORCED_OPEN)
    for _ in range(3):
        with pytest.raises(CallNotPermitted, match="forced open") as refused:
            breaker.acquire()
        assert refused.value.state is State.FORCED_OPEN
    clock.advance(breaker.config.wait_in_open * 100 + breaker.config.max_wait_in_half_open * 100)
    assert breaker.state is State.FORCED_OPEN  # no wait in open ends it
    assert breaker.snapshot()["not_permitted_calls"] == 3


def test_forced_open_refuses_call_without_running_it() -> None:
    breaker = make()
    breaker.switch(State.FORCED_OPEN)
    ran = []

    async def work() -> int:
        ran.append(1)
        return 1

    with pytest.raises(CallNotPermitted):
        asyncio.run(breaker.call(work))
    assert ran == []


def test_disabled_lets_every_call_through_and_counts_none() -> None:
    clock, transitions = FakeClock(), Transitions()
    breaker = make(clock, transitions)
    breaker.switch(State.DISABLED)
    for _ in range(50):
        fail(breaker, duration=100.0)  # failed and slow: would open a counting breaker many times over
    clock.advance(1000)
    assert breaker.state is State.DISABLED
    figures = breaker.snapshot()
    assert (figures["calls"], figures["failed_calls"], figures["slow_calls"], figures["failure_rate"]) == (
        0,
        0,
        0,
        None,
    )
    assert transitions.seen == [("payments", State.CLOSED, State.DISABLED)]


def test_closed_switch_resets_an_open_breaker_with_an_empty_window() -> None:
    clock = FakeClock()
    breaker = open_breaker(clock)
    breaker.switch(State.CLOSED)
    assert breaker.state is State.CLOSED
    assert breaker.snapshot()["calls"] == 0
    # An empty window: it takes minimum_calls failures again to open it.
    for _ in range(breaker.config.minimum_calls - 1):
        fail(breaker)
    assert breaker.state is State.CLOSED
    fail(breaker)
    assert breaker.state is State.OPEN


def test_a_call_in_flight_across_a_switch_is_not_counted() -> None:
    clock = FakeClock()
    breaker = make(clock)
    permit = breaker.acquire()
    breaker.switch(State.DISABLED)
    breaker.switch(State.CLOSED)
    breaker.record_failure(permit, FAST)
    assert breaker.snapshot()["calls"] == 0


def test_switched_back_to_closed_the_breaker_counts_again() -> None:
    breaker = make()
    breaker.switch(State.DISABLED)
    fail(breaker)
    breaker.switch(State.CLOSED)
    fail(breaker)
    assert breaker.snapshot()["failed_calls"] == 1
