"""The database fails under load, as an operator sees a failover: the three services on one
PostgreSQL server of their own, clients placing orders with Idempotency-Keys and retrying on errors
as a storefront does, the server crashed (``pg_ctl stop -m immediate``) and started again, twice,
then every PostgreSQL process stopped for a while (a hung database).

What must hold: no answer is a 500 (a 503 with ``Retry-After`` while the database is away), each
key names one order, every order ends, nothing is oversold, no stock is held by a failed order, each
placed order has exactly one charge, and ``oms audit`` is clean."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from system import SERVICES, System

import pgfaults
import pgserver

pytestmark = pytest.mark.postgres

STOCK = {"DB-A": 400, "DB-B": 300}
CLIENTS = 8
OUTAGE = {"OMS_DATABASE_TIMEOUT": "1.0"}  # a hung database answered 503 after 1 s, not 5


@pytest.fixture
def own_server() -> Iterator[pgserver.PostgresServer]:
    with pgfaults.own_server() as server:
        yield server


class Storefront:
    """Clients that place orders one after another, each with a key of its own, sent again with the
    same key after a 503 or a broken connection, and that keep every answer they got."""

    def __init__(self, s: System) -> None:
        self.s = s
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.unavailable: list[httpx.Response] = []
        self.orders: dict[str, str] = {}
        """Key: the order id the key was answered with."""
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self) -> Storefront:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def answered(self) -> int:
        with self.lock:
            return len(self.orders)

    def wait_for_orders(self, more: int, timeout: float = 60) -> None:
        """Until ``more`` orders more than now have been answered."""
        target, deadline = self.answered() + more, time.monotonic() + timeout
        while self.answered() < target:
            assert time.monotonic() < deadline, f"only {self.answered()} orders answered, waiting for {target}"
            time.sleep(0.05)

    def _client(self, index: int) -> None:
        with httpx.Client(headers=self.s.http.headers, timeout=15) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                key = f"c{index}-{n}-{uuid.uuid4().hex[:6]}"
                sku = "DB-A" if (index + n) % 2 else "DB-B"
                method = "pm_card_chargeDeclined" if n % 7 == 0 else "pm_card_visa"
                body = {"customer_id": f"c{index}", "items": [{"sku": sku, "quantity": 1}], "payment_method": method}
                self._place(http, key, body)

    def _place(self, http: httpx.Client, key: str, body: dict[str, Any]) -> None:
        give_up = time.monotonic() + 120
        while True:  # once sent, a key is sent until it is answered, even after the stop
            assert time.monotonic() < give_up, f"{key} never answered"
            try:
                response = http.post(f"{self.s.url('order')}/orders", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            with self.lock:
                self.statuses[response.status_code] += 1
                if response.status_code == 503:
                    self.unavailable.append(response)
            if response.status_code in (200, 201, 202):
                with self.lock:
                    self.orders[key] = response.json()["id"]
                return
            assert response.status_code == 503, (response.status_code, response.text)
            time.sleep(min(float(response.headers["Retry-After"]), 0.2))


def test_the_database_crashed_twice_and_hung_under_load_loses_nothing(
    own_server: pgserver.PostgresServer, tmp_path: Path
) -> None:
    stamp = uuid.uuid4().hex[:6]
    urls = {name: own_server.create_database(f"outage_{stamp}_{name}") for name in SERVICES}
    s = System(tmp_path, env=OUTAGE, database_urls=urls).start_all()
    try:
        for sku, stock in STOCK.items():
            s.put_item(sku, available=stock)
        with Storefront(s) as shop:
            shop.wait_for_orders(20)
            for _ in range(2):
                own_server.kill()
                time.sleep(1.5)  # the database stays away this long, as in a failover
                own_server.start_again()
                shop.wait_for_orders(20)  # taking orders again
            with pgfaults.hung(own_server):
                time.sleep(3.0)  # hung: every statement waits until database_timeout (1 s)
            shop.wait_for_orders(20)
        statuses, unavailable, answered = shop.statuses, shop.unavailable, shop.orders
        assert 500 not in statuses, statuses
        assert unavailable, f"no request met the outage: {statuses}"
        for response in unavailable:
            problem = response.json()
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["Retry-After"]) >= 1
            assert problem["status"] == 503, problem
        orders = settled_orders(s)
        # One order per key: every order the database holds is one a key was answered with.
        assert sorted(o["id"] for o in orders) == sorted(answered.values())
        assert len(set(answered.values())) == len(answered)
        check_effects(s, orders)
    finally:
        s.stop_all()


def settled_orders(s: System, timeout: float = 60) -> list[dict[str, Any]]:
    """Every order, once none is PENDING or has a saga running or waiting."""
    deadline = time.monotonic() + timeout
    while True:
        orders: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500, **({"next": cursor} if cursor else {})}
            page = s.http.get(f"{s.url('order')}/orders", params=params).json()
            orders += page["items"]
            cursor = page["next"]
            if not cursor:
                break
        unsettled = [
            (o["id"], o["status"], o["saga_status"], o["reservation"], o["pending_reason"])
            for o in orders
            if o["status"] == "PENDING" or o["reservation"] == "deferred" or o["saga_status"] in ("running", "waiting")
        ]
        if not unsettled:
            return orders
        assert time.monotonic() < deadline, unsettled
        time.sleep(0.5)


def check_effects(s: System, orders: list[dict[str, Any]]) -> None:
    # Stock held exactly by the placed orders, order by order (the counts below could balance out).
    reserved = asyncio.run(
        _fetch(s.database_urls["inventory"], "SELECT order_id FROM reservations WHERE status = 'RESERVED'")
    )
    placed = {o["id"] for o in orders if o["status"] == "PLACED"}
    assert set(reserved) == placed, [o for o in orders if o["id"] in placed ^ set(reserved)]
    s.assert_agreement(orders, STOCK)


async def _fetch(url: str, sql: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [r[0] for r in await conn.fetch(sql)]
    finally:
        await conn.close()
