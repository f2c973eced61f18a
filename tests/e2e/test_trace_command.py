"""``oms trace``, the tracing recipe without a tracing server: the services started with
``OTEL_TRACES_EXPORTER=console`` write their spans into their logs, and the command draws an order's
trace from them as a tree, across the three services; a declined card shows its failed step and the
compensation (an order with no trace, and linked traces: tests/unit/test_trace_tree.py).

SQLite only: the command reads the services' logs, the same on either database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from system import System


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    system = System(
        tmp_path_factory.mktemp("traced"), {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    )
    system.start_all()
    yield system
    system.stop_all()


def trace(s: System, order_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oms", "trace", order_id, "--url", s.url("order"), "--token", s.token,
         "--data-dir", str(s.directory)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"}, check=False,
    )  # fmt: skip


def drawn(s: System, order_id: str, last: str, within: float = 30.0) -> list[str]:
    """The tree's lines, once the span ``last`` (written when its batch is sent) is in it."""
    deadline = time.monotonic() + within
    while True:
        answer = trace(s, order_id)
        if last in answer.stdout or time.monotonic() > deadline:
            assert answer.returncode == 0, answer.stdout + answer.stderr
            return answer.stdout.splitlines()
        time.sleep(0.1)


def depth(line: str) -> int:
    """How deep a tree line is under the trace's line: the tree's guides take four columns a level."""
    return (len(line) - len(line.lstrip("│├└─ "))) // 4 - 1


def spans(lines: list[str]) -> dict[str, tuple[int, str]]:
    """Each span's name: its depth and its line."""
    return {line.lstrip("│├└─ ").split("  ")[0]: (depth(line), line) for line in lines[1:]}


def test_an_orders_trace_is_a_tree_across_the_three_services(traced: System) -> None:
    sku = "TRACE-" + uuid.uuid4().hex[:6].upper()
    traced.put_item(sku, available=5, unit_price=250)
    order = traced.place([(sku, 1)]).json()
    lines = drawn(traced, order["id"], "POST /payments")
    assert lines[0] == f"trace {order['trace_id']}"
    named = spans(lines)
    assert named["POST /orders"][0] == 0 and "oms-order" in named["POST /orders"][1]
    for step, call, service in (
        ("step check_inventory", "POST /inventory/check", "oms-inventory"),
        ("step reserve_inventory", "POST /reservations", "oms-inventory"),
        ("step process_payment", "POST /payments", "oms-payment"),
    ):
        assert named[step][0] == 1 and "done" in named[step][1]
        assert named[call][0] == 2 and service in named[call][1]


def test_a_declined_card_shows_its_failed_step_and_the_compensation(traced: System) -> None:
    sku = "TRACE-" + uuid.uuid4().hex[:6].upper()
    traced.put_item(sku, available=5, unit_price=250)
    order = traced.place([(sku, 1)], method="pm_card_chargeDeclined").json()
    assert order["status"] == "PAYMENT_FAILED"
    named = spans(drawn(traced, order["id"], "POST /reservations/{order_id}/release"))
    assert named["step process_payment"][0] == 1 and "failed card_declined" in named["step process_payment"][1]
    assert named["compensation release_inventory"][0] == 1 and "done" in named["compensation release_inventory"][1]
    assert named["POST /reservations/{order_id}/release"][0] == 2
