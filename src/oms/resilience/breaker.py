"""An asyncio circuit breaker with Resilience4j semantics (sliding windows, rates, bounded half-open probes),
and Resilience4j's operator switches: force it open, disable it, reset it to closed (``switch``).

Pure bookkeeping on the standard library: no I/O, no locks. Every method runs without awaiting, so under one
event loop each call is atomic; the breaker is not meant to be shared between threads.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol, TypeVar

from oms.errors import OmsError
from oms.resilience.clock import Clock, SystemClock

T = TypeVar("T")

WindowType = Literal["count", "time"]
"""``count``: the last ``window_size`` calls; ``time``: the calls of the last ``window_size`` seconds."""


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    """Set by an operator: every call refused, until the operator switches it again."""
    DISABLED = "disabled"
    """Set by an operator: every call let through and none counted, until the operator switches it again."""


SWITCHES = (State.FORCED_OPEN, State.DISABLED, State.CLOSED)
"""The states an operator may put a breaker in (``CircuitBreaker.switch``); no timed transition leaves the
first two, and CLOSED starts again from an empty window."""


@dataclass(frozen=True)
class BreakerConfig:
    failure_rate_threshold: float = 50.0
    """Percent of failed calls in the window at or above which the breaker opens (default 50.0)."""
    slow_call_rate_threshold: float = 100.0
    """Percent of slow calls in the window at or above which the breaker opens (default 100.0)."""
    slow_call_duration: float = 2.0
    """Seconds; a call lasting at least this long is slow, whether it succeeded or failed (default 2.0)."""
    window_type: WindowType = "count"
    """Window kind: "count" (last window_size calls) or "time" (last window_size seconds); default "count"."""
    window_size: int = 10
    """Calls (count window) or seconds (time window) the sliding window covers (default 10)."""
    minimum_calls: int = 5
    """Calls needed before rates exist and it may open; a count window caps it at window_size (default 5)."""
    wait_in_open: float = 5.0
    """Seconds in OPEN before the next call attempt moves the breaker to HALF_OPEN (default 5.0)."""
    half_open_calls: int = 3
    """Probe calls permitted in HALF_OPEN; their outcomes alone decide between CLOSED and OPEN (default 3)."""
    max_wait_in_half_open: float = 10.0
    """Seconds an undecided HALF_OPEN may last before reopening (stuck probe); 0 = no limit (default 10.0)."""

    def __post_init__(self) -> None:
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, name)
            if not 0 < value <= 100:
                raise ValueError(f"BreakerConfig.{name} must be a percentage in (0, 100], got {value!r}")
        for name in ("window_size", "minimum_calls", "half_open_calls"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BreakerConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("slow_call_duration", "wait_in_open", "max_wait_in_half_open"):
            value = getattr(self, name)
            if not value >= 0:  # written this way round so that NaN is rejected too
                raise ValueError(f"BreakerConfig.{name} must be a duration in seconds >= 0, got {value!r}")
        if self.window_type not in ("count", "time"):
            raise ValueError(f'BreakerConfig.window_type must be "count" or "time", got {self.window_type!r}')


class CallNotPermitted(OmsError):
    """Raised instead of making a call while the breaker is OPEN, or HALF_OPEN with every probe taken."""

    def __init__(self, breaker: str, state: State) -> None:
        self.breaker = breaker
        self.state = state
        why = {
            State.OPEN: "open",
            State.FORCED_OPEN: "forced open by an operator",
        }.get(state, "half-open and all its probe calls are in flight")
        super().__init__(f"circuit breaker {breaker!r} is {why}; call not permitted")

    def __reduce__(self) -> tuple[type[CallNotPermitted], tuple[str, State]]:
        # The default reduction replays self.args (the message) into __init__, which takes other arguments.
        return (type(self), (self.breaker, self.state))


@dataclass(frozen=True)
class Permit:
    """Proof a call was let through; hand it back once via record_success, record_failure or release."""

    generation: int
    serial: int


class _Window(Protocol):
    def record(self, failed: bool, slow: bool, now: float) -> None: ...

    def totals(self, now: float) -> tuple[int, int, int]: ...  # (calls, failed, slow)


class _CountWindow:
    """The last `size` outcomes in a ring, with running totals so recording and reading are O(1)."""

    def __init__(self, size: int) -> None:
        self._ring = [0] * size  # bit 0: failed, bit 1: slow
        self._next = 0
        self._calls = self._failed = self._slow = 0

    def record(self, failed: bool, slow: bool, now: float) -> None:
        if self._calls == len(self._ring):
            evicted = self._ring[self._next]
            self._failed -= evicted & 1
            self._slow -= evicted >> 1
        else:
            self._calls += 1  # the ring fills in order, so until it is full the slot at _next is unused
        self._ring[self._next] = int(failed) | int(slow) << 1
        self._failed += failed
        self._slow += slow
        self._next = (self._next + 1) % len(self._ring)

    def totals(self, now: float) -> tuple[int, int, int]:
        return self._calls, self._failed, self._slow


class _TimeWindow:
    """Outcomes of the last `seconds` whole seconds in per-second buckets; each bucket is dropped once."""

    def __init__(self, seconds: int) -> None:
        self._seconds = seconds
        self._buckets: deque[list[int]] = deque()  # [second, calls, failed, slow], oldest first
        self._calls = self._failed = self._slow = 0

    def _evict(self, now: float) -> None:
        horizon = math.floor(now) - self._seconds
        while self._buckets and self._buckets[0][0] <= horizon:
            _, calls, failed, slow = self._buckets.popleft()
            self._calls -= calls
            self._failed -= failed
            self._slow -= slow

    def record(self, failed: bool, slow: bool, now: float) -> None:
        self._evict(now)
        second = math.floor(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow
        self._calls += 1
        self._failed += failed
        self._slow += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        self._evict(now)
        return self._calls, self._failed, self._slow


def _rate(part: int, calls: int) -> float:
    # 100.0 * part is exact, so the one rounding step is the division: 3 of 5 gives exactly 60.0.
    return 100.0 * part / calls


class CircuitBreaker:
    """Guards one downstream: call() it, or pair acquire() with exactly one record_*() or release() per permit."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock | None = None,
        is_failure: Callable[[BaseException], bool] = lambda exc: True,
        on_state_change: Callable[[str, State, State], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config if config is not None else BreakerConfig()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._is_failure = is_failure
        self._on_state_change = on_state_change
        self._state = State.CLOSED
        self._changed_at = self._clock.monotonic()
        self._generation = 0
        self._serial = 0
        self._outstanding: set[int] = set()  # serials of this generation's permits not yet handed back
        self._free_probes = 0
        self._not_permitted = 0
        self._window, self._minimum = self._closed_window()

    def _closed_window(self) -> tuple[_Window, int]:
        cfg = self.config
        if cfg.window_type == "time":
            return _TimeWindow(cfg.window_size), cfg.minimum_calls
        return _CountWindow(cfg.window_size), min(cfg.minimum_calls, cfg.window_size)

    def _transition(self, new: State, now: float) -> None:
        old = self._state
        self._state = new
        self._changed_at = now
        # A new generation voids every permit in flight: their outcomes describe the state just left.
        self._generation += 1
        self._serial = 0
        self._outstanding.clear()
        if new in (State.CLOSED, State.FORCED_OPEN, State.DISABLED):
            self._window, self._minimum = self._closed_window()
        elif new is State.HALF_OPEN:
            probes = self.config.half_open_calls
            self._window, self._minimum, self._free_probes = _CountWindow(probes), probes, probes
        # OPEN keeps the window that tripped it, so snapshot() still shows why it opened.
        if self._on_state_change is not None and old is not new:
            self._on_state_change(self.name, old, new)

    def _advance(self, now: float) -> None:
        # Timed transitions (none out of FORCED_OPEN and DISABLED) are applied when observed, and the new
        # state counts as entered now: a breaker idle for an hour must offer its probes afresh rather than be
        # judged stuck the moment it is read.
        elapsed = now - self._changed_at
        if self._state is State.OPEN and elapsed >= self.config.wait_in_open:
            self._transition(State.HALF_OPEN, now)
        elif self._state is State.HALF_OPEN:
            limit = self.config.max_wait_in_half_open
            if limit > 0 and elapsed >= limit:
                self._transition(State.OPEN, now)

    def _tripped(self, now: float) -> bool:
        calls, failed, slow = self._window.totals(now)
        if calls < self._minimum:
            return False
        cfg = self.config
        return _rate(failed, calls) >= cfg.failure_rate_threshold or _rate(slow, calls) >= cfg.slow_call_rate_threshold

    def _claim(self, permit: Permit) -> bool:
        """Take the permit back; False if it is stale (earlier generation) or was already handed back."""
        if permit.generation != self._generation or permit.serial not in self._outstanding:
            return False
        self._outstanding.remove(permit.serial)
        return True

    @property
    def state(self) -> State:
        self._advance(self._clock.monotonic())
        return self._state

    def acquire(self) -> Permit:
        self._advance(self._clock.monotonic())
        if self._state in (State.OPEN, State.FORCED_OPEN) or (
            self._state is State.HALF_OPEN and self._free_probes == 0
        ):
            self._not_permitted += 1
            raise CallNotPermitted(self.name, self._state)
        if self._state is State.HALF_OPEN:
            self._free_probes -= 1
        self._serial += 1
        self._outstanding.add(self._serial)
        return Permit(self._generation, self._serial)

    def _record(self, permit: Permit, failed: bool, duration: float) -> None:
        now = self._clock.monotonic()
        self._advance(now)
        if not self._claim(permit) or self._state is State.DISABLED:
            return  # a stale permit; or the breaker is disabled, and calls are not counted
        self._window.record(failed, duration >= self.config.slow_call_duration, now)
        if self._state is State.CLOSED:
            if self._tripped(now):
                self._transition(State.OPEN, now)
        elif self._window.totals(now)[0] >= self.config.half_open_calls:
            self._transition(State.OPEN if self._tripped(now) else State.CLOSED, now)

    def record_success(self, permit: Permit, duration: float) -> None:
        self._record(permit, False, duration)

    def record_failure(self, permit: Permit, duration: float) -> None:
        self._record(permit, True, duration)

    def release(self, permit: Permit) -> None:
        self._advance(self._clock.monotonic())
        if self._claim(permit) and self._state is State.HALF_OPEN:
            self._free_probes += 1

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        permit = self.acquire()
        start = self._clock.monotonic()
        try:
            result = await fn()
        except Exception as exc:
            duration = self._clock.monotonic() - start
            try:
                failed = self._is_failure(exc)
            except BaseException:
                self.release(permit)  # a broken predicate must not strand a half-open probe permit
                raise
            # An exception the predicate does not count (say a 4xx answer) shows the downstream is healthy.
            self._record(permit, failed, duration)
            raise
        except BaseException:
            # Cancelled (or the process is exiting): the call has no outcome to judge the downstream by.
            self.release(permit)
            raise
        self.record_success(permit, self._clock.monotonic() - start)
        return result

    def snapshot(self) -> dict[str, object]:
        now = self._clock.monotonic()
        self._advance(now)
        calls, failed, slow = self._window.totals(now)
        enough = calls >= self._minimum
        return {
            "state": self._state.value,
            "failure_rate": _rate(failed, calls) if enough else None,
            "slow_call_rate": _rate(slow, calls) if enough else None,
            "calls": calls,
            "failed_calls": failed,
            "slow_calls": slow,
            "not_permitted_calls": self._not_permitted,
            "state_changed_at": self._changed_at,
        }

    def reset(self) -> None:
        self._transition(State.CLOSED, self._clock.monotonic())

    def switch(self, state: State) -> None:
        """An operator's switch, as Resilience4j's: FORCED_OPEN refuses every call, DISABLED lets every call
        through without counting it (neither is left by any timed transition or by outcomes), CLOSED resets the
        breaker to closed with an empty window. Calls in flight when it is switched are not counted."""
        if state not in SWITCHES:
            raise ValueError(f"an operator may switch a breaker to {', '.join(SWITCHES)}, not {state!s}")
        self._transition(state, self._clock.monotonic())
