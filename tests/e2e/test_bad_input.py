"""Bad input gets a 4xx problem+json that says what is wrong, and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from system import System

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    for word in words:
        assert word in body["detail"], body
    return body


def order_count(s: System) -> int:
    return len(s.http.get(f"{s.url('order')}/orders", params={"limit": 1000}).json()["items"])


GOOD = {"customer_id": "c1", "items": [{"sku": "BAD-INPUT-1", "quantity": 1}], "payment_method": "pm_card_visa"}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({**GOOD, "items": []}, ["items"]),
        ({**GOOD, "items": [{"sku": "BAD-INPUT-1", "quantity": 0}]}, ["quantity"]),
        ({**GOOD, "items": [{"sku": "BAD-INPUT-1", "quantity": -3}]}, ["quantity"]),
        ({**GOOD, "items": [{"sku": "BAD-INPUT-1", "quantity": 10**9}]}, ["quantity"]),
        ({**GOOD, "items": [{"sku": "BAD-INPUT-1", "quantity": "2"}]}, ["quantity"]),
        ({**GOOD, "items": [{"sku": "BAD-INPUT-1", "quantity": 1.5}]}, ["quantity"]),
        ({**GOOD, "items": [{"sku": "BAD-INPUT-1"}]}, ["quantity"]),
        ({**GOOD, "items": [{"sku": "BAD-INPUT-1", "quantity": 1}] * 2}, ["twice"]),
        ({"items": GOOD["items"], "payment_method": "pm_card_visa"}, ["customer_id"]),
        ({**GOOD, "payment_method": 7}, ["payment_method"]),
        ({**GOOD, "items": "BAD-INPUT-1"}, ["items"]),
        ({**GOOD, "items": [{"sku": "../etc", "quantity": 1}]}, ["sku"]),
        ({**GOOD, "surprise": True}, ["surprise"]),
        ({**GOOD, "customer_id": "c1\u0000"}, ["customer_id"]),
        ({**GOOD, "payment_method": "pm_card\u0007visa"}, ["payment_method"]),
    ],
)
def test_invalid_orders_are_422_and_store_nothing(
    shared_system: System, body: dict[str, Any], words: list[str]
) -> None:
    s = shared_system
    s.put_item("BAD-INPUT-1", available=5)
    before = order_count(s)
    response = s.http.post(f"{s.url('order')}/orders", json=body)
    problem = assert_problem(response, 422, *words)
    assert problem["errors"]
    assert order_count(s) == before
    assert s.item("BAD-INPUT-1")["reserved"] == 0


def test_malformed_json_missing_body_and_oversized_body(shared_system: System) -> None:
    s = shared_system
    before = order_count(s)
    headers = {"content-type": "application/json"}
    assert_problem(s.http.post(f"{s.url('order')}/orders", content=b'{"customer_id": ', headers=headers), 400, "JSON")
    assert_problem(s.http.post(f"{s.url('order')}/orders", headers=headers), 400)
    huge = b'{"customer_id": "' + b"x" * 200_000 + b'"}'
    assert_problem(s.http.post(f"{s.url('order')}/orders", content=huge, headers=headers), 413, "bytes")
    for name in ("inventory", "payment"):
        assert_problem(s.http.post(f"{s.url(name)}/payments", content=huge, headers=headers), 413)

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit is counted as the body comes
        yield b'{"customer_id": "'
        for _ in range(10):
            yield b"x" * 10_000

    assert_problem(s.http.post(f"{s.url('order')}/orders", content=chunked(), headers=headers), 413, "bytes")
    assert order_count(s) == before


def test_unknown_sku_is_refused_before_any_order_exists(shared_system: System) -> None:
    s = shared_system
    before = order_count(s)
    body = {**GOOD, "items": [{"sku": "NO-SUCH-SKU", "quantity": 1}]}
    problem = assert_problem(s.http.post(f"{s.url('order')}/orders", json=body), 422, "NO-SUCH-SKU")
    assert problem["skus"] == ["NO-SUCH-SKU"]
    assert order_count(s) == before


def test_order_lookups(shared_system: System) -> None:
    s = shared_system
    assert_problem(s.http.get(f"{s.url('order')}/orders/ord_nope"), 404, "ord_nope")
    assert_problem(s.http.get(f"{s.url('order')}/orders", params={"status": "LOST"}), 422, "status")
    assert_problem(s.http.get(f"{s.url('order')}/orders", params={"limit": 0}), 422, "limit")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"name": "x", "unit_price": -1, "currency": "USD", "available": 1}, ["unit_price"]),
        ({"name": "x", "unit_price": 1, "currency": "USD", "available": -1}, ["available"]),
        ({"name": "x", "unit_price": 1.99, "currency": "USD", "available": 1}, ["unit_price"]),
        ({"name": "x", "unit_price": 1, "currency": "dollars", "available": 1}, ["currency"]),
        ({"name": "", "unit_price": 1, "currency": "USD", "available": 1}, ["name"]),
        ({"unit_price": 1, "currency": "USD", "available": 1}, ["name"]),
    ],
)
def test_inventory_refuses_bad_items(shared_system: System, body: dict[str, Any], words: list[str]) -> None:
    s = shared_system
    s.put_item("BAD-ITEM-1", available=3, unit_price=700)
    assert_problem(s.http.put(f"{s.url('inventory')}/items/BAD-ITEM-1", json=body), 422, *words)
    item = s.item("BAD-ITEM-1")
    assert (item["available"], item["unit_price"]) == (3, 700)


def test_inventory_and_payment_refusals(shared_system: System) -> None:
    s = shared_system
    inventory, payment = s.url("inventory"), s.url("payment")
    assert_problem(s.http.get(f"{inventory}/items/NOPE-1"), 404, "NOPE-1")
    assert_problem(s.http.put(f"{inventory}/items/bad sku!", json={}), 422)
    reserve = {"order_id": "o-bad-1", "items": [{"sku": "NOPE-1", "quantity": 1}]}
    assert_problem(s.http.post(f"{inventory}/reservations", json=reserve), 422, "NOPE-1")
    s.put_item("BAD-RES-1", available=1)
    short = {"order_id": "o-bad-2", "items": [{"sku": "BAD-RES-1", "quantity": 2}]}
    problem = assert_problem(s.http.post(f"{inventory}/reservations", json=short), 409)
    assert problem["shortages"] == [{"sku": "BAD-RES-1", "requested": 2, "available": 1}]
    assert s.item("BAD-RES-1")["available"] == 1
    charge = {"order_id": "o-bad-3", "amount": -5, "currency": "USD", "payment_method": "pm_card_visa"}
    assert_problem(s.http.post(f"{payment}/payments", json=charge), 422, "amount")
    assert s.payments("o-bad-3") == []
    assert_problem(s.http.post(f"{payment}/payments/refund", json={"order_id": "o-bad-3"}), 404)


@pytest.mark.parametrize("code", ["XXX", "XTS", "XAU", "CHE"])
def test_a_currency_that_is_not_money_is_422_and_changes_nothing(shared_system: System, code: str) -> None:
    s = shared_system
    inventory, payment = s.url("inventory"), s.url("payment")
    s.put_item("BAD-MONEY-1", available=3, unit_price=700)
    body = {"name": "Gold bar", "unit_price": 5000, "currency": code, "available": 9}
    problem = assert_problem(
        s.http.put(f"{inventory}/items/BAD-MONEY-1", json=body), 422, "currency", code, "not money"
    )
    assert problem["errors"][0]["field"] == "currency"
    item = s.item("BAD-MONEY-1")
    assert (item["available"], item["unit_price"], item["currency"]) == (3, 700, "USD")
    assert_problem(s.http.put(f"{inventory}/items/BAD-MONEY-NEW", json=body), 422, code, "not money")
    assert_problem(s.http.get(f"{inventory}/items/BAD-MONEY-NEW"), 404)
    charge = {"order_id": f"o-bad-money-{code}", "amount": 100, "currency": code, "payment_method": "pm_card_visa"}
    assert_problem(s.http.post(f"{payment}/payments", json=charge), 422, "currency", code, "not money")
    assert s.payments(f"o-bad-money-{code}") == []
