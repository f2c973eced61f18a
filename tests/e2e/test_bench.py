"""``oms bench --spawn`` as a user runs it: its own three services, orders through them, figures out.

Only what it counts is checked, never how fast: speed is for ``benchmarks/run.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest


def bench(tmp_path: Path, *flags: str) -> dict[str, object]:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "oms", "bench", "--spawn", "--warmup", "10", "--json", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "orders per second" in done.stdout
    report: dict[str, object] = orjson.loads(out.read_bytes())
    return report


def test_bench_counts_every_order_and_each_services_figures(tmp_path: Path) -> None:
    report = bench(tmp_path, "-n", "120", "-c", "8", "--decline-rate", "0.5", "--out-of-stock-rate", "0.2")
    statuses = report["statuses"]
    assert isinstance(statuses, dict)
    assert sum(statuses.values()) == 120
    assert statuses.get("PLACED", 0) > 0 and statuses.get("PAYMENT_FAILED", 0) > 0
    assert statuses.get("OUT_OF_STOCK", 0) > 0
    services = report["services"]
    assert isinstance(services, dict) and set(services) == {"order", "inventory", "payment"}
    for figures in services.values():
        assert figures["cpu_seconds"] >= 0 and figures["peak_rss_mb"] > 10
    load = report["load_generator"]
    assert isinstance(load, dict) and load["cpu_us_per_order"] > 0
    stolen = report["stolen"]
    assert isinstance(stolen, float) and 0.0 <= stolen <= 1.0
    assert isinstance(report["calibration_ms"], float) and report["calibration_ms"] > 0
    latency = report["latency_ms"]
    assert isinstance(latency, dict)
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]


@pytest.mark.parametrize("flag", ["--async", "--inventory-down"])
def test_bench_async_and_with_inventory_down_settles_every_order(tmp_path: Path, flag: str) -> None:
    report = bench(tmp_path, "-n", "80", "-c", "8", flag)
    assert report["statuses"] == {"PLACED": 80}
    services = report["services"]
    assert isinstance(services, dict)
    assert ("inventory" in services) is (flag != "--inventory-down")


def test_bench_with_a_webhook_and_nats_gets_every_event_signed_and_in_order(tmp_path: Path) -> None:
    """``--webhook --nats``: the receiver got every event of the measured orders, each with a valid
    signature, none out of order; the stream holds every event written (warm-up's included)."""
    report = bench(tmp_path, "--webhook", "--nats", "-n", "200", "--warmup", "20", "-c", "16")
    assert report["statuses"] == {"PLACED": 200}
    hook = report["webhook"]
    assert isinstance(hook, dict)
    assert hook["expected"] >= 2 * 200  # created, then placed
    assert hook["received"] == hook["expected"] and hook["missing"] == 0
    assert (hook["invalid_signatures"], hook["out_of_order"], hook["malformed"]) == (0, 0, 0)
    assert hook["orders"] == 200
    assert 0 < hook["latency_ms"]["p50"] <= hook["latency_ms"]["max"]
    nats = report["nats"]
    assert isinstance(nats, dict)
    assert nats["events"] >= 2 * 220 and nats["in_stream"] == nats["events"]
    services = report["services"]
    assert isinstance(services, dict) and {"receiver", "nats-server"} <= set(services)


def test_bench_nats_without_spawn_says_it_needs_spawn(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oms", "bench", "--nats", "-n", "1"], capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--nats needs --spawn" in done.stdout + done.stderr
