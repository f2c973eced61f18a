"""The same services and flows with each service on its own PostgreSQL database: same code, by URL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
