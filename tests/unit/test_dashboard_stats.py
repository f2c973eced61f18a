"""The dashboard's pure parts: the chart's figures from the database's rows (oms.dashboard.stats),
and the log-in link `oms up` prints (oms.cli.launcher.dashboard_link)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from oms.auth.keys import ensure_key, load_key
from oms.auth.tokens import Role, Verifier
from oms.cli.launcher import DASHBOARD_TTL, dashboard_link
from oms.dashboard.stats import bucket_key, figures, percentile
from oms.orders.saga import STATUSES as ORDER_STATUSES
from oms.orders.saga import OrderStatus

STATUSES = ("PENDING", "PLACED", "PAYMENT_FAILED")
NOW = datetime(2026, 11, 26, 15, 47, 33, 500_000, tzinfo=UTC)


def test_percentiles_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_bucket_keys_are_the_first_18_characters_of_the_stored_text() -> None:
    assert bucket_key(NOW) == "2026-11-26T15:47:3"
    assert "2026-11-26T15:47:33.500000Z"[:18] == bucket_key(NOW)


def test_figures_by_ten_seconds() -> None:
    counts = [{"bucket": "2026-11-26T15:47:3", "orders": 7}, {"bucket": "2026-11-26T15:47:1", "orders": 20}]
    durations = [
        {"created_at": "2026-11-26T15:47:11.000000Z", "ended_at": "2026-11-26T15:47:11.010000Z"},
        {"created_at": "2026-11-26T15:47:12.000000Z", "ended_at": "2026-11-26T15:47:12.030000Z"},
        {"created_at": "2026-11-26T15:47:13.000000Z", "ended_at": "2026-11-26T15:47:13.500000Z"},
    ]
    statuses = [{"status": "PLACED", "orders": 25}, {"status": "PAYMENT_FAILED", "orders": 2}]
    answer = figures(now=NOW, minutes=1, counts=counts, durations=durations, statuses=statuses, every_status=STATUSES)
    assert answer["counts"] == {"PENDING": 0, "PLACED": 25, "PAYMENT_FAILED": 2}
    assert answer["total"] == 27
    starts = [b["start"] for b in answer["buckets"]]
    assert starts[0] == answer["since"] == "2026-11-26T15:46:40Z" and starts[-1] == "2026-11-26T15:47:30Z"
    assert len(starts) == 6
    by_start = {b["start"]: b for b in answer["buckets"]}
    full = by_start["2026-11-26T15:47:10Z"]
    assert (full["orders"], full["orders_per_second"], full["p50_ms"], full["p99_ms"]) == (20, 2.0, 30.0, 500.0)
    # The bucket under way is divided by the seconds it has had (4 of its 10).
    assert by_start["2026-11-26T15:47:30Z"]["orders_per_second"] == 1.75
    assert by_start["2026-11-26T15:47:00Z"] == {
        "start": "2026-11-26T15:47:00Z", "orders": 0, "orders_per_second": 0.0, "p50_ms": None, "p99_ms": None,
    }  # fmt: skip


def test_the_log_in_link_holds_an_admin_token_for_24_hours(tmp_path: Path) -> None:
    ensure_key(tmp_path / "key.json")
    key = load_key(tmp_path / "key.json")
    link = dashboard_link("http://127.0.0.1:8000", key)
    found = re.fullmatch(r"http://127\.0\.0\.1:8000/\?token=([\w-]+\.[\w-]+\.[\w-]+)", link)
    assert found is not None
    caller = asyncio.run(Verifier(key).verify(found.group(1)))
    assert caller.role is Role.ADMIN
    assert DASHBOARD_TTL == 24 * 3600 and abs(caller.expires - time.time() - DASHBOARD_TTL) < 5


def test_the_figures_of_every_order_status_are_json() -> None:
    """GET /stats/orders answers with orjson, which takes only a str as a dict's key: the statuses
    it counts are strings, not OrderStatus members."""
    statuses = [{"status": OrderStatus.PLACED, "orders": 2}]
    answer = figures(now=NOW, minutes=1, counts=[], durations=[], statuses=statuses, every_status=ORDER_STATUSES)
    counts = orjson.loads(orjson.dumps(answer))["counts"]
    expected: dict[str, int] = {status: 2 if status == "PLACED" else 0 for status in OrderStatus}
    assert counts == expected and list(counts) == list(OrderStatus)
