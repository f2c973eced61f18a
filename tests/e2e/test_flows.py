"""The sequence diagram's flows, against the three services running as real processes."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from system import System


def sku() -> str:
    return "SKU-" + uuid.uuid4().hex[:8].upper()


def saga_steps(order: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e["kind"], e["name"], e["outcome"]) for e in order["saga"]]


def test_successful_order_flow(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=10, unit_price=1250)
    response = s.place([(item, 3)])
    assert response.status_code == 201
    assert response.headers["location"] == f"/orders/{response.json()['id']}"
    order = response.json()
    assert order["status"] == "PLACED"
    assert order["total_amount"] == 3750 and order["currency"] == "USD"
    assert order["items"][0]["unit_price"] == 1250
    assert order["inventory_check"] == "live"
    assert order["failure_reason"] is None
    assert saga_steps(order) == [
        ("step", "check_inventory", "done"),
        ("step", "reserve_inventory", "done"),
        ("step", "process_payment", "done"),
    ]
    for entry in order["saga"]:
        assert entry["started_at"] <= entry["ended_at"]
    assert s.item(item)["available"] == 7 and s.item(item)["reserved"] == 3
    [payment] = s.payments(order["id"])
    assert payment["status"] == "SUCCEEDED" and payment["amount"] == 3750
    stored = s.http.get(f"{s.url('order')}/orders/{order['id']}").json()
    assert stored["status"] == "PLACED" and stored["saga"] == order["saga"]


def test_payment_declined_releases_the_reservation(shared_system: System) -> None:
    s = shared_system
    for method, reason in [
        ("pm_card_chargeDeclined", "card_declined"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_bogus", "invalid_payment_method"),
    ]:
        item = sku()
        s.put_item(item, available=5)
        order = s.place([(item, 2)], method=method).json()
        assert order["status"] == "PAYMENT_FAILED"
        assert order["failure_reason"] == reason
        assert order["reservation"] == "released"
        assert saga_steps(order) == [
            ("step", "check_inventory", "done"),
            ("step", "reserve_inventory", "done"),
            ("step", "process_payment", "failed"),
            ("compensation", "release_inventory", "done"),
        ]
        assert s.item(item)["available"] == 5 and s.item(item)["reserved"] == 0
        [payment] = s.payments(order["id"])
        assert payment["status"] == "DECLINED" and payment["decline_code"] == reason


def test_out_of_stock_is_never_charged(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=1)
    order = s.place([(item, 2)]).json()
    assert order["status"] == "OUT_OF_STOCK"
    assert order["failure_reason"] == "out_of_stock"
    assert saga_steps(order) == [("step", "check_inventory", "failed")]
    assert s.payments(order["id"]) == []
    assert s.item(item)["available"] == 1


def race(s: System, item: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def place() -> None:
        barrier.wait()
        results.append(s.place([(item, 1)]).json())

    threads = [threading.Thread(target=place) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_orders_race_for_the_last_unit(shared_system: System) -> None:
    s = shared_system
    for _ in range(3):
        item = sku()
        s.put_item(item, available=1)
        results = race(s, item)
        assert sorted(r["status"] for r in results) == ["OUT_OF_STOCK", "PLACED"]
        loser = next(r for r in results if r["status"] == "OUT_OF_STOCK")
        assert s.payments(loser["id"]) == []
        assert s.item(item)["available"] == 0 and s.item(item)["reserved"] == 1


def test_idempotency_key_returns_the_same_order_and_never_a_second_saga(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=10)
    key = uuid.uuid4().hex
    first = s.place([(item, 1)], key=key)
    second = s.place([(item, 1)], key=key)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["status"] == "PLACED"
    assert s.item(item)["reserved"] == 1
    assert len(s.payments(first.json()["id"])) == 1
    other = s.place([(item, 2)], key=key)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in other.json()["detail"]
    assert s.item(item)["reserved"] == 1


def test_orders_list_newest_first_and_by_status(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=10)
    ids = [s.place([(item, 1)]).json()["id"] for _ in range(3)]
    declined = s.place([(item, 1)], method="pm_card_chargeDeclined").json()["id"]
    listed = s.http.get(f"{s.url('order')}/orders", params={"limit": 4}).json()["items"]
    assert [o["id"] for o in listed] == [declined, *reversed(ids)]
    failed = s.http.get(f"{s.url('order')}/orders", params={"status": "PAYMENT_FAILED"}).json()["items"]
    assert declined in [o["id"] for o in failed]
    assert all(o["status"] == "PAYMENT_FAILED" for o in failed)


def test_payment_service_down_fails_the_order_and_releases_stock(system: System) -> None:
    s = system
    item = sku()
    s.put_item(item, available=4)
    s.kill("payment")
    order = s.place([(item, 1)]).json()
    assert order["status"] == "PAYMENT_FAILED"
    assert order["failure_reason"] == "payment_unavailable"
    assert ("compensation", "release_inventory", "done") in saga_steps(order)
    assert s.item(item)["available"] == 4 and s.item(item)["reserved"] == 0


def test_payment_timeout_with_unknown_outcome_stays_pending_and_holds_stock(system: System) -> None:
    s = system
    item = sku()
    s.put_item(item, available=4)
    s.pause("payment")  # SIGSTOP: the charge is sent and never answered
    try:
        order = s.place([(item, 1)]).json()
    finally:
        s.resume("payment")
    assert order["status"] == "PENDING"
    assert order["pending_reason"] == "payment_outcome_unknown"
    assert order["failure_reason"] is None
    assert saga_steps(order)[-1] == ("step", "process_payment", "unknown")
    # Never compensated on a guess: the stock stays held while the charge may have landed.
    assert s.item(item)["reserved"] == 1
    assert order["reservation"] == "held"


def test_circuit_breaker_flow_with_fallback_and_recovery(system: System) -> None:
    s = system
    item, unseen = sku(), sku()
    s.put_item(item, available=3, unit_price=500)
    s.place([(item, 1)])  # a live answer: OrderService now knows this SKU's stock and price
    s.kill("inventory")

    # The check fails, then the circuit opens: every order goes on fallback data to payment.
    orders = [s.place([(item, 1)]).json() for _ in range(2)]
    for order in orders:
        assert order["status"] == "PLACED", order
        assert order["inventory_check"] == "fallback"
        assert order["reservation"] == "deferred"
        assert order["total_amount"] == 500
        assert saga_steps(order) == [
            ("step", "check_inventory", "done"),
            ("step", "reserve_inventory", "skipped"),
            ("step", "process_payment", "done"),
        ]
        assert s.payments(order["id"])[0]["status"] == "SUCCEEDED"
    # The last known stock was 2, and the two fallback orders took it: the next one is refused.
    short = s.place([(item, 1)]).json()
    assert short["status"] == "REJECTED" and short["failure_reason"] == "insufficient_fallback_stock"
    assert s.payments(short["id"]) == []
    # A SKU OrderService has never seen has no fallback data: rejected, nothing charged.
    unknown = s.place([(unseen, 1)]).json()
    assert unknown["status"] == "REJECTED" and unknown["failure_reason"] == "no_fallback_data"
    assert s.payments(unknown["id"]) == []

    errors = [s.place([(unseen, 1)]).json()["saga"][0]["detail"]["live"]["error"] for _ in range(10)]
    # Open, refusing calls at once; after each wait in open a probe tries and fails, and it opens again.
    assert errors.count("circuit_open") >= 7, errors
    breaker = s.breakers()["inventory"]
    assert breaker["state"] in ("open", "half_open")
    assert breaker["not_permitted_calls"] >= 7

    # InventoryService comes back; after the wait in open, a probe closes the breaker.
    s.start("inventory")
    s.put_item(item, available=10, unit_price=500)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        order = s.place([(item, 1)]).json()
        if order["inventory_check"] == "live" and s.breakers()["inventory"]["state"] == "closed":
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"breaker did not close: {s.breakers()}")
    assert order["status"] == "PLACED" and order["reservation"] == "held"


def test_metrics_count_sagas_steps_and_breakers(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=5)
    s.place([(item, 1)], method="pm_card_chargeDeclined")
    text = s.http.get(f"{s.url('order')}/metrics").text
    assert 'oms_sagas_ended_total{saga="order",status="PAYMENT_FAILED"}' in text
    assert (
        'oms_saga_step_seconds_count{kind="compensation",name="release_inventory",outcome="done",saga="order"}' in text
    )
    assert 'oms_breaker_state{downstream="inventory"} 0.0' in text
