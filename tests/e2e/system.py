"""The three services as real processes on free ports, each with its own SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from oms.auth.keys import SigningKey, ensure_key, load_key
from oms.auth.tokens import admin_token, customer_token
from oms.cli.supervisor import free_ports

SERVICES = ("inventory", "payment", "order")

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
}


def client(token: str, timeout: float = 10) -> httpx.Client:
    """An HTTP client that calls with ``token`` (and a JSON Content-Type, which every POST needs)."""
    return httpx.Client(
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"}, timeout=timeout
    )


class System:
    def __init__(
        self, directory: Path, env: dict[str, str] | None = None, database_urls: dict[str, str] | None = None
    ) -> None:
        self.directory = directory
        self.database_urls = database_urls or {name: f"sqlite:///{directory / f'{name}.db'}" for name in SERVICES}
        self.ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.key_file = directory / "auth-key.json"
        ensure_key(self.key_file)
        self.key: SigningKey = load_key(self.key_file)
        self.token = admin_token(self.key, ttl=6 * 3600)
        self.env = {
            **os.environ,
            **FAST,
            "OMS_AUTH_KEY_FILE": str(self.key_file),
            "OMS_DATA_DIR": str(directory),
            **(env or {}),
        }
        # Every call of the tests goes with an admin token unless a test says otherwise.
        self.http = client(self.token)
        self.logs = {name: directory / f"{name}.log" for name in SERVICES}
        self.kinds: dict[str, str] = {}

    def customer(self, customer_id: str) -> httpx.Client:
        """A client calling with ``customer_id``'s token."""
        token = customer_token(self.key, customer_id, ttl=3600)
        return httpx.Client(
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"}, timeout=10
        )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def add_replica(self, name: str, service: str) -> None:
        """Another process of ``service``, called ``name``, on its own port and the same database."""
        taken = set(self.ports.values())
        self.ports[name] = next(port for port in free_ports(len(taken) + 1) if port not in taken)
        self.kinds[name] = service
        self.database_urls[name] = self.database_urls[service]
        self.logs[name] = self.directory / f"{name}.log"
        self.start(name)

    def start(self, name: str) -> None:
        service = self.kinds.get(name, name)
        command = [
            sys.executable, "-m", "oms", "serve", service,
            "--port", str(self.ports[name]),
            "--database-url", self.database_urls[name],
        ]  # fmt: skip
        if service == "order":
            command += ["--inventory-url", self.url("inventory"), "--payment-url", self.url("payment")]
        log = self.logs[name].open("ab")
        self.processes[name] = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_healthy(name)

    def wait_healthy(self, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.logs[name].read_text()[-2000:]}")
            try:
                answer = self.http.get(self.url(name) + "/health", timeout=1)
                # The service itself, not another process that happens to listen on the port.
                if answer.status_code == 200 and answer.json().get("pid") == process.pid:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not become healthy: {self.logs[name].read_text()[-2000:]}")

    def start_all(self) -> System:
        for name in SERVICES:
            self.start(name)
        return self

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown handlers, as in a crash."""
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def pause(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGCONT)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGCONT)
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

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
