"""Nothing lost: sagas driven on from their log after a crash, asynchronous orders, a failed
compensation that is kept and retried."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
from system import System


def sku() -> str:
    return "SKU-" + uuid.uuid4().hex[:8].upper()


def place_async(s: System, item: str, method: str = "pm_card_visa", key: str | None = None) -> httpx.Response:
    body = {"customer_id": "c", "items": [{"sku": item, "quantity": 1}], "payment_method": method}
    headers = {"Prefer": "respond-async"}
    if key:
        headers["Idempotency-Key"] = key
    answer: httpx.Response = s.http.post(f"{s.url('order')}/orders", json=body, headers=headers, timeout=10)
    return answer


def test_respond_async_answers_202_at_once_and_the_saga_runs_on(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=5)
    response = place_async(s, item)
    assert response.status_code == 202
    assert response.headers["preference-applied"] == "respond-async"
    order = response.json()
    assert order["status"] == "PENDING"
    assert response.headers["location"] == f"/orders/{order['id']}"
    assert s.wait_terminal(order["id"])["status"] == "PLACED"


def test_unknown_payment_outcome_is_settled_once_payment_answers_again(system: System) -> None:
    s = system
    item = sku()
    s.put_item(item, available=4)
    s.pause("payment")
    try:
        order = s.place([(item, 1)]).json()
        assert order["status"] == "PENDING" and order["pending_reason"] == "payment_outcome_unknown"
    finally:
        s.resume("payment")
    # The charge that was stuck lands when PaymentService wakes; recovery asks and finds it.
    final = s.wait_terminal(order["id"])
    assert final["status"] == "PLACED", final
    assert [p["status"] for p in s.payments(order["id"])] == ["SUCCEEDED"]
    assert s.item(item)["reserved"] == 1


def test_sagas_in_flight_when_order_service_dies_are_finished_after_restart(system: System) -> None:
    s = system
    item = sku()
    s.put_item(item, available=20)
    s.pause("payment")
    keys = [uuid.uuid4().hex for _ in range(6)]
    methods = ["pm_card_visa", "pm_card_chargeDeclined"] * 3
    ids = [place_async(s, item, m, k).json()["id"] for m, k in zip(methods, keys, strict=True)]
    for order_id in ids:  # every saga is now waiting on a charge that PaymentService does not answer
        s.wait_step(order_id, "reserve_inventory")
    s.kill("order")
    s.resume("payment")
    s.start("order")
    finals = {i: s.wait_terminal(i) for i in ids}
    statuses = sorted(o["status"] for o in finals.values())
    assert statuses == ["PAYMENT_FAILED"] * 3 + ["PLACED"] * 3, finals
    for order_id, order in finals.items():
        charges = s.payments(order_id)
        assert len(charges) == 1
        assert (charges[0]["status"] == "SUCCEEDED") == (order["status"] == "PLACED")
    assert s.item(item)["reserved"] == 3 and s.item(item)["available"] == 17
    # A client cut off by the crash retries with its key: the one order, in its final state.
    again = place_async(s, item, methods[0], keys[0])
    assert again.status_code == 200 and again.json()["id"] == ids[0]
    assert again.json()["status"] == finals[ids[0]]["status"]


def test_compensation_that_keeps_failing_is_kept_and_retried_by_hand(make_system: Callable[..., System]) -> None:
    s = make_system({"OMS_COMPENSATION_GIVE_UP_AFTER": "1.5"})
    item = sku()
    s.put_item(item, available=3)
    s.pause("payment")
    order_id = place_async(s, item, "pm_card_chargeDeclined").json()["id"]
    s.wait_step(order_id, "reserve_inventory")  # the charge now waits on PaymentService
    s.kill("inventory")  # the release that the decline calls for cannot be delivered
    s.resume("payment")
    order = s.wait_terminal(order_id)
    assert order["status"] == "COMPENSATION_FAILED", order
    assert order["failure_reason"] is not None
    attempts = [e for e in order["saga"] if e["name"] == "release_inventory"]
    assert attempts and all(e["outcome"] == "failed" for e in attempts)
    listed = s.http.get(f"{s.url('order')}/orders", params={"status": "COMPENSATION_FAILED"}).json()["items"]
    assert order_id in [o["id"] for o in listed]

    s.start("inventory")
    assert s.item(item)["reserved"] == 1  # still held: the failed compensation was not forgotten
    retried = s.http.post(f"{s.url('order')}/orders/{order_id}/retry", timeout=30).json()
    assert retried["status"] == "PAYMENT_FAILED", retried
    assert retried["failure_reason"] == "card_declined"
    assert retried["saga"][-1]["name"] == "release_inventory" and retried["saga"][-1]["outcome"] == "done"
    assert s.item(item)["reserved"] == 0 and s.item(item)["available"] == 3


def test_fallback_order_is_reconciled_when_inventory_answers_again(system: System) -> None:
    s = system
    item = sku()
    s.put_item(item, available=5)
    s.place([(item, 1)])
    s.kill("inventory")
    order = s.place([(item, 2)]).json()
    assert order["status"] == "PLACED" and order["reservation"] == "deferred"
    assert order["pending_reason"] == "reservation_deferred"
    s.start("inventory")
    final = s.wait_reservation(order["id"])
    assert final["status"] == "PLACED" and final["reservation"] == "held"
    assert final["pending_reason"] is None
    reconcile = [(e["saga"], e["name"], e["outcome"]) for e in final["saga"] if e["saga"] == "reconcile"]
    assert reconcile[-1] == ("reconcile", "reserve_deferred", "done")
    assert s.item(item)["reserved"] == 3


def test_fallback_order_without_stock_after_all_is_refunded_and_cancelled(system: System) -> None:
    s = system
    item = sku()
    s.put_item(item, available=5)
    s.place([(item, 1)])
    s.kill("inventory")
    order = s.place([(item, 2)]).json()
    assert order["status"] == "PLACED" and order["inventory_check"] == "fallback"
    # Sold elsewhere while OrderService could not ask: through another InventoryService process on
    # the same database, which OrderService does not know of.
    s.add_replica("inventory-elsewhere", "inventory")
    body = {"name": item, "unit_price": 1000, "currency": "USD", "available": 1}
    assert s.http.put(f"{s.url('inventory-elsewhere')}/items/{item}", json=body).status_code == 200
    s.kill("inventory-elsewhere")
    s.start("inventory")
    final = s.wait_reservation(order["id"])
    assert final["status"] == "CANCELLED", final
    assert final["failure_reason"] == "out_of_stock_after_fallback"
    steps = [(e["kind"], e["name"], e["outcome"]) for e in final["saga"] if e["saga"] == "reconcile"]
    assert ("step", "reserve_deferred", "failed") in steps
    assert ("compensation", "refund_payment", "done") in steps
    assert [p["status"] for p in s.payments(order["id"])] == ["REFUNDED"]
    assert s.item(item)["available"] == 1


def test_cancel_refunds_and_releases(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=5)
    order = s.place([(item, 2)]).json()
    response = s.http.post(f"{s.url('order')}/orders/{order['id']}/cancel", timeout=30)
    assert response.status_code == 200
    cancelled = response.json()
    assert cancelled["status"] == "CANCELLED" and cancelled["reservation"] == "released"
    assert [(e["saga"], e["name"]) for e in cancelled["saga"] if e["saga"] == "cancel"] == [
        ("cancel", "refund_payment"),
        ("cancel", "release_stock"),
    ]
    assert [p["status"] for p in s.payments(order["id"])] == ["REFUNDED"]
    assert (s.item(item)["available"], s.item(item)["reserved"]) == (5, 0)
    again = s.http.post(f"{s.url('order')}/orders/{order['id']}/cancel")
    assert again.status_code == 409 and "CANCELLED" in again.json()["detail"]
    declined = s.place([(item, 1)], method="pm_card_chargeDeclined").json()
    assert s.http.post(f"{s.url('order')}/orders/{declined['id']}/cancel").status_code == 409
    assert s.http.post(f"{s.url('order')}/orders/ord_nope/cancel").status_code == 404
