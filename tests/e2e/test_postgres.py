"""The same services and flows with each service on its own PostgreSQL database: same code, by URL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from system import SERVICES, System
from test_flows import race, saga_steps

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_system(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    stamp = uuid.uuid4().hex[:6]
    urls = {name: postgres_server.create_database(f"e2e_{stamp}_{name}") for name in SERVICES}
    system = System(Path(tmp_path_factory.mktemp("pg")), database_urls=urls).start_all()
    yield system
    system.stop_all()


def sku() -> str:
    return "PG-" + uuid.uuid4().hex[:8].upper()


def test_placed_declined_and_out_of_stock_on_postgres(pg_system: System) -> None:
    s = pg_system
    item = sku()
    s.put_item(item, available=3, unit_price=900)
    placed = s.place([(item, 2)]).json()
    assert placed["status"] == "PLACED" and placed["total_amount"] == 1800
    declined = s.place([(item, 1)], method="pm_card_chargeDeclined").json()
    assert declined["status"] == "PAYMENT_FAILED"
    assert saga_steps(declined)[-1] == ("compensation", "release_inventory", "done")
    short = s.place([(item, 2)]).json()
    assert short["status"] == "OUT_OF_STOCK" and s.payments(short["id"]) == []
    assert (s.item(item)["available"], s.item(item)["reserved"]) == (1, 2)


def test_race_for_the_last_unit_on_postgres(pg_system: System) -> None:
    s = pg_system
    for _ in range(3):
        item = sku()
        s.put_item(item, available=1)
        assert sorted(r["status"] for r in race(s, item)) == ["OUT_OF_STOCK", "PLACED"]
        assert (s.item(item)["available"], s.item(item)["reserved"]) == (0, 1)


def test_fallback_then_reconcile_on_postgres(pg_system: System) -> None:
    s = pg_system
    item = sku()
    s.put_item(item, available=5)
    s.place([(item, 1)])
    s.kill("inventory")
    try:
        order = s.place([(item, 1)]).json()
        assert order["status"] == "PLACED" and order["inventory_check"] == "fallback"
    finally:
        s.start("inventory")
    final = s.wait_reservation(order["id"])
    assert final["reservation"] == "held" and final["status"] == "PLACED"
    assert s.item(item)["reserved"] == 2


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
            httpx.post(f"{s.url('order')}/orders", json=body, headers={"Prefer": "respond-async"}).json()["id"]
            for _ in range(5)
        ]
        second = [
            httpx.post(f"{s.url('order2')}/orders", json=body, headers={"Prefer": "respond-async"}).json()["id"]
            for _ in range(5)
        ]
        time.sleep(0.5)
        s.kill("order")  # replica 1 dies holding its sagas' leases
        s.resume("payment")
        for order_id in first + second:
            order = httpx.get(f"{s.url('order2')}/orders/{order_id}").json()
            deadline = time.monotonic() + 30
            while order["status"] == "PENDING" and time.monotonic() < deadline:
                time.sleep(0.2)
                order = httpx.get(f"{s.url('order2')}/orders/{order_id}").json()
            assert order["status"] == "PLACED", order
            assert [p["status"] for p in s.payments(order_id)] == ["SUCCEEDED"]
        # Reservations went through both inventory processes' one database: no unit counted twice.
        stock = httpx.get(f"{s.url('inventory2')}/items/{item}").json()
        assert (stock["available"], stock["reserved"]) == (40, 10)
    finally:
        s.stop_all()
