"""Times as every table stores them: ISO-8601 UTC text to the microsecond, ``Z`` at the end (it sorts
as it reads). Durations are measured on a monotonic clock elsewhere; these are points in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc_now() -> str:
    """Now, as the ISO-8601 UTC text every table stores."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def utc_after(seconds: float) -> str:
    """``utc_now()`` moved by ``seconds``, for leases and deadlines."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
