"""What a customer sees of its own orders, against the three services as real processes: an order
out of stock and one placed on fallback data (InventoryService's breaker switched open by an admin)
show the customer their steps, outcomes, reasons and durations, in JSON and in each diagram format,
and never a stock level or the breaker's message; an admin reads both in the same orders."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import orjson
from system import System

STOCK = re.compile(r"\b9897\d\d\b")
"""The stock level of the SKU there is plenty of (989734, less what the orders took): no customer may read it."""
BREAKER = ("call not permitted", "circuit breaker", "forced open", "Circuit Open", "circuit_open")
"""The breaker's message and its state, as the saga log and the admin's diagram say them."""
FORMATS = ("", "?format=mermaid", "?format=svg")


def sku() -> str:
    return "SKU-" + uuid.uuid4().hex[:8].upper()


def place(customer: httpx.Client, url: str, lines: list[tuple[str, int]]) -> dict[str, Any]:
    body = {"items": [{"sku": s, "quantity": q} for s, q in lines], "payment_method": "pm_card_visa"}
    answer = customer.post(f"{url}/orders", json=body, timeout=30)
    assert answer.status_code == 201, answer.text
    order: dict[str, Any] = answer.json()
    return order


def switch(s: System, state: str) -> None:
    answer = s.http.post(f"{s.url('order')}/breakers/inventory", json={"state": state})
    assert answer.status_code == 200, answer.text


def read(client: httpx.Client, url: str) -> str:
    answer = client.get(url)
    assert answer.status_code == 200, answer.text
    return answer.text


def test_a_customer_sees_its_steps_and_reasons_but_no_stock_level_and_no_breaker_message(
    shared_system: System,
) -> None:
    s = shared_system
    url = s.url("order")
    plenty, scarce, unseen = sku(), sku(), sku()
    s.put_item(plenty, available=989734)
    s.put_item(scarce, available=1)
    customer = s.customer(f"cust-{uuid.uuid4().hex[:8]}")
    short = place(customer, url, [(plenty, 1), (scarce, 2)])  # OrderService now knows both SKUs' stock
    assert short["status"] == "OUT_OF_STOCK"
    switch(s, "forced_open")
    try:
        fallback = place(customer, url, [(plenty, 1)])
        assert fallback["status"] == "PLACED" and fallback["inventory_check"] == "fallback"
        rejected = place(customer, url, [(unseen, 1)])  # no last known stock of it
        assert rejected["status"] == "REJECTED"
    finally:
        switch(s, "closed")

    for order in (short, fallback):
        placed = orjson.dumps(order).decode()  # POST /orders' own answer
        assert not STOCK.search(placed) and not [word for word in BREAKER if word in placed], placed
        path = f"{url}/orders/{order['id']}"
        admin, own = read(s.http, path), read(customer, path)
        assert STOCK.search(admin) and '"available"' in admin
        assert not STOCK.search(own) and '"available"' not in own, own
        assert not [word for word in BREAKER if word in own], own
        for query in FORMATS:
            drawn = read(customer, f"{path}/diagram{query}")
            assert not STOCK.search(drawn) and not [word for word in BREAKER if word in drawn], drawn

    # Out of stock: which of its SKUs, not how many there are; the admin reads both.
    steps = customer.get(f"{url}/orders/{short['id']}").json()["saga"]
    assert [(r["name"], r["outcome"], r["reason"], r["detail"]) for r in steps] == [
        ("check_inventory", "failed", "out_of_stock", {"skus": [scarce]})
    ]
    assert steps[0]["duration_ms"] > 0
    assert f"{scarce}: out of stock" in read(customer, f"{url}/orders/{short['id']}/diagram")
    assert f"{scarce}: 2 wanted, 1 available" in read(s.http, f"{url}/orders/{short['id']}/diagram")

    # On fallback data: the customer is told so; the admin reads the breaker's message and the stock.
    path = f"{url}/orders/{fallback['id']}"
    steps = customer.get(path).json()["saga"]
    assert [(r["name"], r["outcome"], r["reason"]) for r in steps[:2]] == [
        ("check_inventory", "done", "inventory_unavailable_fallback"),
        ("reserve_inventory", "skipped", "reservation_deferred"),
    ]
    assert "forced open by an operator; call not permitted" in read(s.http, path)
    for query in FORMATS:
        admins = read(s.http, f"{path}/diagram{query}")
        assert STOCK.search(admins) and "Circuit Open" in admins
        assert "Using Fallback" in read(customer, f"{path}/diagram{query}")

    # Cancelling answers the order as the customer may see it too.
    cancelled = customer.post(f"{path}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED", cancelled.text
    assert not STOCK.search(cancelled.text) and not [word for word in BREAKER if word in cancelled.text]

    # The list says why in the customer's words too.
    listed = {o["id"]: o for o in customer.get(f"{url}/orders", params={"limit": 10}).json()["items"]}
    assert listed[rejected["id"]]["failure_reason"] == "inventory_unavailable"
    everyone = s.http.get(f"{url}/orders", params={"customer_id": rejected["customer_id"]}).json()["items"]
    assert {o["id"]: o["failure_reason"] for o in everyone}[rejected["id"]] == "no_fallback_data"
