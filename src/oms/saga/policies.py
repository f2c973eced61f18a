"""The saga's policies, the one place their numbers are written (Settings nests them as
``compensation`` and ``waiting``): a module of their own, so that reading the settings does not load
the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CompensationPolicy:
    """How a failed compensation is tried again: the one place these numbers are written (Settings
    nests it as ``compensation``)."""

    wait_initial: float = 0.1
    """Seconds before the second try of a failed compensation; the pause doubles each time..."""
    wait_max: float = 5.0
    """...up to this many seconds between two tries."""
    jitter: float = 0.25
    """Up to this fraction of each pause is added at random, so retries of many sagas spread out."""
    give_up_after: float | None = 300.0
    """Seconds a compensation keeps being tried before the order is marked COMPENSATION_FAILED (an
    operator then decides); 0: after the first failed try; None: tried for ever."""

    def __post_init__(self) -> None:
        if not 0 <= self.wait_initial <= self.wait_max:  # NaN fails too
            raise ValueError(f"CompensationPolicy needs 0 <= wait_initial <= wait_max, got {self.wait_initial!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"CompensationPolicy.jitter must be between 0 and 1, got {self.jitter!r}")
        if self.give_up_after is not None and not self.give_up_after >= 0:
            raise ValueError(f"CompensationPolicy.give_up_after must be >= 0 or None, got {self.give_up_after!r}")


@dataclass(frozen=True)
class WaitingPolicy:
    """When a saga waiting on an outcome it could not learn (a charge's answer that never came, a
    participant away) is driven on again: the one place these numbers are written (Settings nests it
    as ``waiting``)."""

    retry_initial: float = 1.0
    """Seconds before a saga waiting on an outcome it could not learn asks again; doubles each time..."""
    retry_max: float = 30.0
    """...up to this many seconds."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_initial <= self.retry_max:  # NaN fails too
            raise ValueError(
                f"WaitingPolicy needs 0 < retry_initial <= retry_max, got {self.retry_initial!r}, {self.retry_max!r}"
            )

    def pause(self, unanswered: int) -> float:
        """Seconds before asking again, after the same question went unanswered ``unanswered`` times
        in a row (1 for the first)."""
        return min(self.retry_max, self.retry_initial * 2.0 ** min(max(unanswered, 1) - 1, 60))
