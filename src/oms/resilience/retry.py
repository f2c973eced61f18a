"""How OrderService tries a call again that failed transiently (refused, or answered 502, 503 or 504):
the one place its numbers are written. Settings nests it as ``retry`` (``OMS_RETRY_ATTEMPTS``,
``OMS_RETRY_WAIT_INITIAL``, ``OMS_RETRY_WAIT_MAX``); :class:`oms.orders.clients.Downstream` takes it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    """Tries of a call that failed transiently (connection refused, 502/503/504)."""
    wait_initial: float = 0.05
    """Seconds before the second try; the pause grows exponentially, with jitter..."""
    wait_max: float = 0.5
    """...up to this many seconds between two tries."""

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be an integer >= 1, got {self.attempts!r}")
        if not 0 <= self.wait_initial <= self.wait_max:  # NaN fails too
            raise ValueError(
                f"RetryPolicy needs 0 <= wait_initial <= wait_max, got {self.wait_initial!r} and {self.wait_max!r}"
            )
