"""The figures of the dashboard's chart and counts, from rows the database gave (pure: no I/O).

Orders are counted by the 10-second bucket of their ``created_at`` (the first 18 characters of its
ISO 8601 text, ``2026-11-26T15:47:3``: the database groups them so on SQLite and PostgreSQL alike);
a saga's duration is from the order's creation to the end of its order saga's last step."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

BUCKET = 10
"""Seconds in a bucket of the chart."""
KEY_LENGTH = 18
"""Characters of an ISO 8601 timestamp that name its 10-second bucket."""


def bucket_key(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")[:KEY_LENGTH]


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile of sorted ``values``; None for none."""
    if not values:
        return None
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[rank - 1]


def figures(
    *,
    now: datetime,
    minutes: int,
    counts: Iterable[Mapping[str, Any]],
    durations: Iterable[Mapping[str, Any]],
    statuses: Iterable[Mapping[str, Any]],
    every_status: Sequence[str],
) -> dict[str, Any]:
    """``counts``: rows of (bucket, orders); ``durations``: rows of (created_at, ended_at) of orders
    whose order saga is over; ``statuses``: rows of (status, orders). The answer of GET /stats/orders."""
    end = now.astimezone(UTC).replace(microsecond=0)
    first = end - timedelta(seconds=minutes * 60 - BUCKET)
    first = first.replace(second=first.second - first.second % BUCKET)
    ordered = {str(row["bucket"]): int(row["orders"]) for row in counts}
    taken: dict[str, list[float]] = defaultdict(list)
    for row in durations:
        created = parse(str(row["created_at"]))
        ended = parse(str(row["ended_at"]))
        taken[bucket_key(created)].append(max(0.0, (ended - created).total_seconds() * 1000))
    buckets = []
    start = first
    while start <= end:
        key = bucket_key(start)
        seconds = min(BUCKET, max(1, math.ceil((now - start).total_seconds())))  # the last one is under way
        values = sorted(taken.get(key, ()))
        buckets.append(
            {
                "start": start.isoformat().replace("+00:00", "Z"),
                "orders": ordered.get(key, 0),
                "orders_per_second": round(ordered.get(key, 0) / seconds, 2),
                "p50_ms": _ms(percentile(values, 50)),
                "p99_ms": _ms(percentile(values, 99)),
            }
        )
        start += timedelta(seconds=BUCKET)
    by_status = dict.fromkeys(every_status, 0)
    for row in statuses:
        by_status[str(row["status"])] = int(row["orders"])
    return {
        "since": first.isoformat().replace("+00:00", "Z"),
        "bucket_seconds": BUCKET,
        "counts": by_status,
        "total": sum(by_status.values()),
        "buckets": buckets,
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
