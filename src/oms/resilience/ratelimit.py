"""Token buckets, one per subject: each holds up to ``burst`` tokens and gains ``rate`` a second; a
request takes one. Pure logic: the caller passes the time (a monotonic clock)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    def __init__(self, *, rate: float, burst: int, max_subjects: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be above 0 and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_subjects = max_subjects
        self._buckets: dict[str, _Bucket] = {}

    def take(self, subject: str, now: float) -> float:
        """Take a token for ``subject``: 0.0 when it had one, else the seconds until it will."""
        bucket = self._buckets.get(subject)
        if bucket is None:
            if len(self._buckets) >= self.max_subjects:
                self._forget_full(now)
            bucket = self._buckets[subject] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def wait(self, subject: str, now: float) -> float:
        """What :meth:`take` would answer, without taking: 0.0 when ``subject`` has a token."""
        bucket = self._buckets.get(subject)
        if bucket is None:
            return 0.0
        tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled: forgetting them changes nothing."""
        full = [s for s, b in self._buckets.items() if b.tokens + (now - b.at) * self.rate >= self.burst]
        for subject in full:
            del self._buckets[subject]
        if len(self._buckets) >= self.max_subjects:  # every subject busy: start afresh rather than grow
            self._buckets.clear()
