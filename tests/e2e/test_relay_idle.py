"""The relay in the cores' idle time, against real processes and the real scheduler: it moves there
once started; when a busy loop shares its one core it starves, stops, and OrderService starts it
again at its niceness, where it delivers; and the events of the time between are all delivered."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hooks import receiver
from system import System

pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
    pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's"),
]


def children(pid: int) -> list[int]:
    found: list[int] = []
    for thread in os.listdir(f"/proc/{pid}/task"):
        text = Path(f"/proc/{pid}/task/{thread}/children").read_text()
        found += [int(child) for child in text.split()]
    return found


def wait_for(what: Callable[[], int | None], seconds: float, failing: str) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(failing)


def relay_with(order_pid: int, policy: int, other_than: int | None = None, niceness: int | None = None) -> int | None:
    """OrderService's relay process, once it runs under ``policy`` (at ``niceness``), and is not
    ``other_than``."""
    for child in children(order_pid):
        try:
            if child == other_than or os.sched_getscheduler(child) != policy:
                continue
            if niceness is None or os.getpriority(os.PRIO_PROCESS, child) == niceness:
                return child
        except ProcessLookupError:
            continue
    return None


@contextmanager
def busy_loop_on(core: int) -> Iterator[None]:
    """A process that keeps ``core`` busy, at the ordinary priority."""
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(loop.pid, {core})
        yield
    finally:
        loop.kill()
        loop.wait()


def test_the_relay_runs_in_idle_time_and_starts_again_at_its_niceness_when_it_starves(
    make_system: Callable[..., System],
) -> None:
    s = make_system({"OMS_RELAY_IDLE": "true"})
    url = s.url("order")
    order_pid = s.processes["order"].pid
    item = "SKU-" + uuid.uuid4().hex[:8].upper()
    s.put_item(item, available=100)
    customer = s.customer("cust-idle")
    with receiver() as hook:
        made = s.http.post(f"{url}/webhooks", json={"url": hook.url, "events": ["oms.order.placed"]})
        assert made.status_code == 201, made.text
        hook.secret = made.json()["secret"]
        idle = wait_for(
            lambda: relay_with(order_pid, os.SCHED_IDLE), 30, "the relay did not start, or not in the cores' idle time"
        )

        core = sorted(os.sched_getaffinity(idle))[0]
        os.sched_setaffinity(idle, {core})
        with busy_loop_on(core):
            orders = []
            for _ in range(3):  # while it starves: their events wait in the outbox
                answer = customer.post(
                    f"{url}/orders", json={"items": [{"sku": item, "quantity": 1}], "payment_method": "pm_card_visa"}
                )
                assert answer.status_code == 201, answer.text
                orders.append(answer.json()["id"])
            niceness = min(19, os.getpriority(os.PRIO_PROCESS, order_pid) + 10)  # relay_nice: 10 above OrderService
            again = wait_for(
                lambda: relay_with(order_pid, os.SCHED_OTHER, other_than=idle, niceness=niceness),
                90,
                "the starving relay was not started again at its niceness",
            )
            assert idle not in children(order_pid)  # killed before the next was started
            # Started for a spell at its niceness (a minute), not straight back to idle time.
            environment = Path(f"/proc/{again}/environ").read_bytes().split(b"\0")
            assert b"OMS_RELAY_IDLE_AFTER=60.0" in environment
            # It delivers while the busy loop still holds the core the starving one was on.
            deadline = time.monotonic() + 30
            while {e["subject"] for e in hook.delivered().values()} != set(orders) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert {e["subject"] for e in hook.delivered().values()} == set(orders)
            assert os.sched_getscheduler(again) == os.SCHED_OTHER
        assert all(t["valid"] for t in hook.tries)
