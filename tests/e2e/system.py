"""The three services as real processes on free ports, each with its own SQLite file."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from oms.auth.tokens import customer_token
from oms.cli.supervisor import SERVICES, Supervisor

__all__ = ["FAST", "SERVICES", "System", "client"]

# Small figures so the breaker flows run in seconds; every one is a documented OMS_* setting.
FAST = {
    "OMS_INVENTORY_TIMEOUT": "1.0",
    "OMS_PAYMENT_TIMEOUT": "1.0",
    "OMS_RETRY_WAIT_INITIAL": "0.01",
    "OMS_RETRY_WAIT_MAX": "0.05",
    "OMS_BREAKER_WAIT_IN_OPEN": "1.0",
    "OMS_BREAKER_MAX_WAIT_IN_HALF_OPEN": "5.0",
    "OMS_COMPENSATION_WAIT_MAX": "0.5",
    "OMS_CATALOG_SYNC_INTERVAL": "1.0",
    "OMS_LEASE_TTL": "2.0",
    "OMS_WAITING_RETRY_INITIAL": "0.3",
    "OMS_WAITING_RETRY_MAX": "1.0",
    "OMS_RECOVERY_INTERVAL": "0.5",
    "OMS_LOG_LEVEL": "warning",
    # The tests send bursts of refused requests from one address; the limit of failed
    # authentications has tests of its own (test_access.py, tests/unit/test_refusals.py).
    "OMS_AUTH_FAILURE_RATE_PER_SECOND": "0",
    # The suite keeps both cores busy: a relay in the cores' idle time would starve and start again
    # at its niceness after seconds (that has a test of its own: test_relay_idle.py).
    "OMS_RELAY_IDLE": "false",
}


def client(token: str, timeout: float = 10) -> httpx.Client:
    """An HTTP client that calls with ``token`` (and a JSON Content-Type, which every POST needs)."""
    return httpx.Client(
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"}, timeout=timeout
    )


class InFlight:
    """Orders whose POST is under way, counted: each kill waits for one, so no kill finds nothing to break."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.count -= 1

    def wait(self, within: float = 30.0) -> int:
        deadline = time.monotonic() + within
        while self.count == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.count


class System(Supervisor):
    """The three services (:class:`oms.cli.supervisor.Supervisor`, as ``oms up`` and ``oms bench`` run
    them), with the tests' fast settings, an admin's HTTP client and conveniences."""

    def __init__(
        self, directory: Path, env: dict[str, str] | None = None, database_urls: dict[str, str] | None = None
    ) -> None:
        urls = database_urls or {name: f"sqlite:///{directory / f'{name}.db'}" for name in SERVICES}
        super().__init__(directory, env={**FAST, **(env or {})}, database_urls=urls)
        self.directory = directory
        self.database_urls: dict[str, str] = urls
        # Every call of the tests goes with an admin token unless a test says otherwise.
        self.http = client(self.token)

    def customer(self, customer_id: str) -> httpx.Client:
        """A client calling with ``customer_id``'s token."""
        token = customer_token(self.key, customer_id, ttl=3600)
        return httpx.Client(
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"}, timeout=10
        )

    def stop_all(self) -> None:
        self.stop()

    # -- conveniences for tests --------------------------------------------------------------------

    def put_item(self, sku: str, available: int, unit_price: int = 1000, currency: str = "USD") -> None:
        body = {"name": sku.title(), "unit_price": unit_price, "currency": currency, "available": available}
        response = self.http.put(f"{self.url('inventory')}/items/{sku}", json=body)
        assert response.status_code in (200, 201), response.text

    def item(self, sku: str) -> dict[str, Any]:
        response = self.http.get(f"{self.url('inventory')}/items/{sku}")
        assert response.status_code == 200, response.text
        item: dict[str, Any] = response.json()
        return item

    def payments(self, order_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.url('payment')}/payments", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        payments: list[dict[str, Any]] = response.json()["items"]
        return payments

    def place(
        self, items: list[tuple[str, int]], method: str = "pm_card_visa", key: str | None = None, timeout: float = 30
    ) -> httpx.Response:
        body = {
            "customer_id": "cust-1",
            "items": [{"sku": sku, "quantity": q} for sku, q in items],
            "payment_method": method,
        }
        headers = {"Idempotency-Key": key} if key else {}
        return self.http.post(f"{self.url('order')}/orders", json=body, headers=headers, timeout=timeout)

    def order(self, order_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.url('order')}/orders/{order_id}")
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        return order

    def wait_terminal(self, order_id: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            order = self.order(order_id)
            if order["status"] != "PENDING" or time.monotonic() > deadline:
                return order
            time.sleep(0.1)

    def wait_step(self, order_id: str, step: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the order's saga log has ``step`` done (the saga has gone on to the next one)."""
        deadline = time.monotonic() + timeout
        while True:
            order = self.order(order_id)
            if any(e["name"] == step and e["outcome"] == "done" for e in order["saga"]):
                return order
            if time.monotonic() > deadline:
                raise AssertionError(f"{order_id}: {step} not done within {timeout} s: {order}")
            time.sleep(0.05)

    def wait_reservation(self, order_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the reconciliation of an order placed on fallback data is over: its
        reservation made, or the order refunded and cancelled."""
        deadline = time.monotonic() + timeout
        while True:
            order = self.order(order_id)
            settled = order["reservation"] != "deferred" and order["saga_status"] not in ("running", "waiting")
            if settled or time.monotonic() > deadline:
                return order
            time.sleep(0.1)

    def breakers(self) -> dict[str, Any]:
        breakers: dict[str, Any] = self.http.get(f"{self.url('order')}/breakers").json()
        return breakers

    def assert_agreement(self, orders: list[dict[str, Any]], stock: dict[str, int]) -> None:
        """The three services agree on ``orders`` (every order, each settled): each placed order has
        exactly one charge and the others none; each SKU's units are its ``stock``, reserved for the
        placed orders exactly; and ``oms audit`` finds them clean."""
        placed_units: Counter[str] = Counter()
        for order in orders:
            charges = [p for p in self.payments(order["id"]) if p["status"] == "SUCCEEDED"]
            if order["status"] == "PLACED":
                assert len(charges) == 1, order["id"]
                for line in order["items"]:
                    placed_units[line["sku"]] += line["quantity"]
            else:
                assert charges == [], (order["id"], order["status"])
        for sku, units in stock.items():
            item = self.item(sku)
            assert item["available"] >= 0
            assert item["available"] + item["reserved"] == units, item
            assert item["reserved"] == placed_units[sku], (sku, item, placed_units)
        audit = subprocess.run(
            [sys.executable, "-m", "oms", "audit", "--url", self.url("order"), "--inventory-url",
             self.url("inventory"), "--payment-url", self.url("payment"), "--key-file", str(self.key_file)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert "clean" in audit.stdout
