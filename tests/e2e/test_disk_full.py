"""OrderService's SQLite file on a small file system (a tmpfs) that fills up while orders come in:
``POST /orders`` answers 503 problem+json with Retry-After, never 500; once there is room again the
same process takes orders, the orders retried with their Idempotency-Keys are placed once, every
order ends in a final state and the three services agree (``oms audit``).

Needs root (a tmpfs mount); skipped otherwise. SQLite only: PostgreSQL's full disk is the server's."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from system import SERVICES, System

from filesystems import fill, small_file_system

PROBLEM = "application/problem+json"
CLIENTS = 6
STOCK = 10_000
SETTLE = 10.0
"""Seconds for the sagas to end once there is room: recovery takes up a saga whose lease lapsed
(OMS_LEASE_TTL 2 s) within OMS_RECOVERY_INTERVAL (0.5 s)."""


class Customers:
    """Clients placing orders, each with a key of its own; every answer kept, and the keys answered
    503, to be placed again with the same key."""

    def __init__(self, s: System) -> None:
        self.s = s
        self.answers: Counter[int] = Counter()
        self.orders: dict[str, str] = {}  # key: the order placed
        self.refused: set[str] = set()  # keys answered 503, not placed yet
        self.bad: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    def place(self, key: str) -> int:
        body = {"customer_id": "disk", "items": [{"sku": "DISK-A", "quantity": 1}], "payment_method": "pm_card_visa"}
        try:
            response: httpx.Response = self.s.http.post(
                f"{self.s.url('order')}/orders", json=body, headers={"Idempotency-Key": key}, timeout=15
            )
        except httpx.HTTPError as exc:
            with self.lock:
                self.bad.append((0, repr(exc)))
            return 0
        with self.lock:
            self.answers[response.status_code] += 1
            if response.status_code in (200, 201):
                self.orders[key] = response.json()["id"]
                self.refused.discard(key)
            elif response.status_code == 503 and self._a_database_problem(response):
                self.refused.add(key)
            else:
                self.bad.append((response.status_code, response.text))
        return response.status_code

    @staticmethod
    def _a_database_problem(response: httpx.Response) -> bool:
        body: dict[str, Any] = response.json()
        return (
            response.headers["content-type"].startswith(PROBLEM)
            and response.headers.get("retry-after") == "2"
            and body["type"] == "/problems/database-unavailable"
            and body["reason"] in ("disk_full", "io")
        )

    def until(self, enough: threading.Event, most: int) -> None:
        """``CLIENTS`` clients placing new orders until ``enough`` is set, ``most`` orders each at most."""

        def one() -> None:
            for _ in range(most):
                if enough.is_set():
                    return
                self.place(uuid.uuid4().hex)

        threads = [threading.Thread(target=one) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


@pytest.fixture
def order_disk(tmp_path: Path) -> Iterator[Path]:
    with small_file_system(tmp_path / "order-disk", "16m") as disk:
        yield disk


def test_order_service_on_a_full_disk_answers_503_and_goes_on_once_there_is_room(
    tmp_path: Path, order_disk: Path
) -> None:
    urls = {name: f"sqlite:///{tmp_path / f'{name}.db'}" for name in SERVICES}
    urls["order"] = f"sqlite:///{order_disk / 'order.db'}"
    s = System(tmp_path, database_urls=urls)
    try:
        s.start_all()
        s.put_item("DISK-A", available=STOCK)
        customers = Customers(s)
        full = threading.Event()

        customers.until(threading.Event(), most=3)  # a few orders while there is room
        assert customers.answers == Counter({201: 3 * CLIENTS}), (customers.answers, customers.bad)

        filler = fill(order_disk, leave=128 * 1024)
        started = time.monotonic()
        watcher = threading.Thread(target=lambda: _until(lambda: len(customers.refused) >= 2 * CLIENTS, full))
        watcher.start()
        customers.until(full, most=200)
        watcher.join()
        assert full.is_set(), f"the disk never filled up: {customers.answers}"
        filled_in = time.monotonic() - started
        assert customers.bad == [], customers.bad  # never a 500, never a timeout: 503 or the order

        # Room again: the same process takes orders, and the refused ones, retried, are placed once.
        filler.unlink()
        for key in sorted(customers.refused):
            assert customers.place(key) in (200, 201), customers.bad[-1:]
        customers.until(threading.Event(), most=3)
        assert customers.bad == [], customers.bad
        assert customers.refused == set()
        assert s.exited() == {}

        # A saga whose log write failed on the full disk stops; recovery must take it up again in this
        # process, once there is room (with a restart it does: the lease is a dead process's then).
        orders = _settled(s, set(customers.orders.values()))
        assert {o["status"] for o in orders} == {"PLACED"}, Counter(o["status"] for o in orders)
        assert len(orders) == len(customers.orders)  # one order per key, none besides
        item = s.item("DISK-A")
        assert item["reserved"] == len(orders) and item["available"] == STOCK - len(orders), item

        s.assert_agreement(orders, {"DISK-A": STOCK})
        print(f"answers {dict(customers.answers)}; full after {filled_in:.1f} s")
    finally:
        s.stop_all()  # before the tmpfs goes: OrderService holds its files open


def _until(condition: Callable[[], bool], event: threading.Event, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    event.set()


def _settled(s: System, ids: set[str]) -> list[dict[str, Any]]:
    """All orders once none is PENDING or has a saga under way (recovery drives on those whose saga
    write failed), or as they are after ``SETTLE`` seconds."""
    deadline = time.monotonic() + SETTLE
    while True:
        orders: list[dict[str, Any]] = s.http.get(f"{s.url('order')}/orders", params={"limit": 1000}).json()["items"]
        unsettled = [o for o in orders if o["status"] == "PENDING" or o["saga_status"] in ("running", "waiting")]
        if not unsettled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert unsettled == [], [(o["id"], o["status"], o["saga_status"], o["pending_reason"]) for o in unsettled]
    assert {o["id"] for o in orders} == ids
    return orders
