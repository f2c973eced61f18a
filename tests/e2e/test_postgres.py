"""Several processes of a service on one PostgreSQL database."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from system import SERVICES, System
from test_crash import run_crash
from test_events_crash import every

pytestmark = pytest.mark.postgres


def sku() -> str:
    return "PG-" + uuid.uuid4().hex[:8].upper()


def test_two_order_replicas_share_one_database_and_one_takes_over_the_others_sagas(
    postgres_server: Any, tmp_path: Path
) -> None:
    stamp = uuid.uuid4().hex[:6]
    urls = {name: postgres_server.create_database(f"rep_{stamp}_{name}") for name in SERVICES}
    s = System(tmp_path, database_urls=urls).start_all()
    try:
        s.add_replica("order2", "order")
        s.add_replica("inventory2", "inventory")
        item = sku()
        s.put_item(item, available=50)
        # Sagas that replica 1 starts and cannot finish: PaymentService does not answer.
        s.pause("payment")
        body = {"customer_id": "c", "items": [{"sku": item, "quantity": 1}], "payment_method": "pm_card_visa"}
        first = [
            s.http.post(f"{s.url('order')}/orders", json=body, headers={"Prefer": "respond-async"}).json()["id"]
            for _ in range(5)
        ]
        second = [
            s.http.post(f"{s.url('order2')}/orders", json=body, headers={"Prefer": "respond-async"}).json()["id"]
            for _ in range(5)
        ]
        for order_id in first + second:  # each saga now waits on a charge PaymentService does not answer
            s.wait_step(order_id, "reserve_inventory")
        s.kill("order")  # replica 1 dies holding its sagas' leases
        s.resume("payment")
        for order_id in first + second:
            order = s.http.get(f"{s.url('order2')}/orders/{order_id}").json()
            deadline = time.monotonic() + 30
            while order["status"] == "PENDING" and time.monotonic() < deadline:
                time.sleep(0.2)
                order = s.http.get(f"{s.url('order2')}/orders/{order_id}").json()
            assert order["status"] == "PLACED", order
            assert [p["status"] for p in s.payments(order_id)] == ["SUCCEEDED"]
        # Reservations went through both inventory processes' one database: no unit counted twice.
        stock = s.http.get(f"{s.url('inventory2')}/items/{item}").json()
        assert (stock["available"], stock["reserved"]) == (40, 10)
    finally:
        s.stop_all()


def test_crash_with_two_order_replicas_one_of_them_killed(postgres_server: Any, tmp_path: Path) -> None:
    stamp = uuid.uuid4().hex[:6]
    urls = {name: postgres_server.create_database(f"crash_{stamp}_{name}") for name in SERVICES}
    s = System(tmp_path, database_urls=urls).start_all()
    try:
        s.add_replica("order2", "order")
        run_crash(s, fronts=("order", "order2"), victims=("order", "inventory", "payment", "order"))
    finally:
        s.stop_all()


def test_a_killed_replicas_webhook_is_taken_over_by_the_other(postgres_server: Any, tmp_path: Path) -> None:
    """Two OrderService replicas: the one whose relay holds the endpoint is killed; the other's relay
    takes the endpoint over once the lease lapses, and every event reaches the receiver."""
    from hooks import receiver

    stamp = uuid.uuid4().hex[:6]
    urls = {name: postgres_server.create_database(f"relay_{stamp}_{name}") for name in SERVICES}
    s = System(tmp_path, database_urls=urls).start_all()
    try:
        s.add_replica("order2", "order")
        item = sku()
        s.put_item(item, available=50)
        with receiver() as hook:
            made = s.http.post(f"{s.url('order')}/webhooks", json={"url": hook.url, "events": ["*"]})
            hook.secret, endpoint = made.json()["secret"], made.json()["id"]
            body = {"customer_id": "c", "items": [{"sku": item, "quantity": 1}], "payment_method": "pm_card_visa"}
            placed = [s.http.post(f"{s.url('order2')}/orders", json=body).json()["id"] for _ in range(3)]
            holder = _holder(s, endpoint)
            victim, survivor = ("order", "order2") if holder.startswith(f"{_host()}:{s.ports['order']}/") else (
                "order2", "order")  # fmt: skip
            s.kill(victim)
            placed += [s.http.post(f"{s.url(survivor)}/orders", json=body).json()["id"] for _ in range(3)]
            expected = {e["id"] for e in every(s, "/events", survivor)}
            deadline = time.monotonic() + 60
            while set(hook.delivered()) < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            assert set(hook.delivered()) >= expected and {e["subject"] for e in every(s, "/events", survivor)} == set(
                placed
            )
            assert _holder(s, endpoint).startswith(f"{_host()}:{s.ports[survivor]}/")
            assert all(t["valid"] for t in hook.tries)
    finally:
        s.stop_all()


def _host() -> str:
    import socket

    return socket.gethostname()


def _holder(s: System, endpoint: str) -> str:
    """The relay holding the endpoint's way, once one does."""
    import asyncio

    from oms.db import connect

    async def read() -> str:
        db = await connect(s.database_urls["order"])
        try:
            deadline = time.monotonic() + 30
            while True:
                row = await db.fetch_one("SELECT owner FROM relay_ways WHERE way = ?", f"webhook:{endpoint}")
                if (row and row["owner"]) or time.monotonic() > deadline:
                    return str(row["owner"] if row else None)
                await asyncio.sleep(0.1)
        finally:
            await db.close()

    return asyncio.run(read())
