"""Monotonic clocks: the real one for production, a hand-driven one for tests."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Source of monotonic time in seconds; only differences between readings are meaningful."""

    def monotonic(self) -> float: ...


class SystemClock:
    """The process's monotonic clock (immune to wall-clock jumps)."""

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that only moves when a test calls :meth:`advance`, so time-driven logic is deterministic."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        # A monotonic clock never goes back; letting a test do so would exercise impossible states.
        if not seconds >= 0:
            raise ValueError(f"FakeClock can only move forward, got advance({seconds!r})")
        self._now += seconds
