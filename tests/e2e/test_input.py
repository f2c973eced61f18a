"""Input every service refuses with a 422 problem+json and without storing anything, on SQLite and
PostgreSQL alike: hidden characters in ids, names, methods and keys, currencies that are not ISO
4217, a free item, and an order whose total no payment could be."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from system import System
from test_bad_input import assert_problem
from test_paging import read_all

from oms.fields import MAX_AMOUNT

HIDDEN = {
    "NUL": "\x00",
    "BEL": "\x07",
    "TAB": "\t",
    "ESC": "\x1b",
    "DEL": "\x7f",
    "C1 PAD": "\x80",
    "C1 NEL": "\x85",
    "C1 APC": "\x9f",
    "ALM": "\u061c",
    "LRM": "\u200e",
    "RLM": "\u200f",
    "LRE": "\u202a",
    "RLE": "\u202b",
    "PDF": "\u202c",
    "LRO": "\u202d",
    "RLO": "\u202e",
    "LRI": "\u2066",
    "RLI": "\u2067",
    "FSI": "\u2068",
    "PDI": "\u2069",
    "ZWSP": "\u200b",
    "ZWNJ": "\u200c",
    "ZWJ": "\u200d",
    "WJ": "\u2060",
    "BOM": "\ufeff",
}
# One of each kind, for the fields where every character is not worth a request of its own.
KINDS = {name: HIDDEN[name] for name in ("NUL", "C1 NEL", "RLO", "LRI", "ZWSP", "BOM")}
KIND_WORDS = {"control": "control character", "bidi": "bidirectional", "zero-width": "zero-width"}


def kind_of(char: str) -> str:
    if char in "\x00\x07\t\x1b\x7f\x80\x85\x9f":
        return KIND_WORDS["control"]
    if char in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        return KIND_WORDS["bidi"]
    return KIND_WORDS["zero-width"]


SKU = "INPUT-1"


@pytest.fixture
def s(shared_system: System) -> Iterator[System]:
    """The module's system, with one item in stock, and a check after the test that every bad
    request left all three databases as they were."""
    system = shared_system
    system.put_item(SKU, available=10)
    before = stored(system)
    yield system
    assert stored(system) == before


def stored(s: System) -> dict[str, Any]:
    """What the three services hold: orders, payments, reservations and items."""
    return {
        "orders": {o["id"]: o["status"] for o in read_all(s.http, f"{s.url('order')}/orders", {"limit": 1000})},
        "payments": {p["id"] for p in read_all(s.http, f"{s.url('payment')}/payments", {"limit": 1000})},
        "reservations": {
            r["order_id"]: r["status"] for r in read_all(s.http, f"{s.url('inventory')}/reservations", {"limit": 1000})
        },
        "items": read_all(s.http, f"{s.url('inventory')}/items", {"limit": 1000}),
    }


def order(**changes: Any) -> dict[str, Any]:
    return {"customer_id": "c1", "items": [{"sku": SKU, "quantity": 1}], "payment_method": "pm_card_visa", **changes}


def refused(response: httpx.Response, field: str, char: str | None = None) -> None:
    problem = assert_problem(response, 422, field)
    if char is not None:
        assert kind_of(char) in problem["detail"], problem
        assert f"U+{ord(char):04X}" in problem["detail"], problem


@pytest.mark.parametrize("name", list(HIDDEN))
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_customer_ids_with_hidden_characters_are_refused(s: System, name: str, where: str) -> None:
    char = HIDDEN[name]
    customer = {"start": f"{char}c1", "middle": f"c{char}1", "end": f"c1{char}"}[where]
    refused(s.http.post(f"{s.url('order')}/orders", json=order(customer_id=customer)), "customer_id", char)


@pytest.mark.parametrize("name", list(HIDDEN))
def test_item_names_with_hidden_characters_are_refused(s: System, name: str) -> None:
    char = HIDDEN[name]
    body = {"name": f"Wid{char}get", "unit_price": 100, "currency": "USD", "available": 1}
    refused(s.http.put(f"{s.url('inventory')}/items/{SKU}", json=body), "name", char)
    refused(s.http.put(f"{s.url('inventory')}/items/INPUT-NEW-1", json=body), "name", char)


@pytest.mark.parametrize("name", list(KINDS))
def test_payment_methods_with_hidden_characters_are_refused(s: System, name: str) -> None:
    char = KINDS[name]
    method = f"pm_card_visa{char}"
    refused(s.http.post(f"{s.url('order')}/orders", json=order(payment_method=method)), "payment_method", char)
    charge = {"order_id": "ord_input_1", "amount": 100, "currency": "USD", "payment_method": method}
    refused(s.http.post(f"{s.url('payment')}/payments", json=charge), "payment_method", char)


@pytest.mark.parametrize("name", list(KINDS))
def test_order_ids_with_hidden_characters_are_refused(s: System, name: str) -> None:
    char = KINDS[name]
    bad = f"ord_{char}1"
    seg = quote(bad, safe="")  # in a path: percent-encoded, as the service decodes it
    order_url, inventory, payment = s.url("order"), s.url("inventory"), s.url("payment")
    refused(s.http.get(f"{order_url}/orders/{seg}"), "order_id", char)
    refused(s.http.post(f"{order_url}/orders/{seg}/cancel"), "order_id", char)
    refused(s.http.post(f"{order_url}/orders/{seg}/retry"), "order_id", char)
    refused(s.http.get(f"{inventory}/reservations/{seg}"), "order_id", char)
    refused(s.http.post(f"{inventory}/reservations/{seg}/release"), "order_id", char)  # no tombstone either
    refused(s.http.post(f"{inventory}/reservations", json={"order_id": bad, "items": [{"sku": SKU, "quantity": 1}]}),
            "order_id", char)  # fmt: skip
    charge = {"order_id": bad, "amount": 100, "currency": "USD", "payment_method": "pm_card_visa"}
    refused(s.http.post(f"{payment}/payments", json=charge), "order_id", char)
    refused(s.http.post(f"{payment}/payments/void", json={"order_id": bad}), "order_id", char)
    refused(s.http.post(f"{payment}/payments/refund", json={"order_id": bad}), "order_id", char)
    refused(s.http.get(f"{payment}/payments", params={"order_id": bad}), "order_id", char)


@pytest.mark.parametrize("name", list(KINDS))
def test_skus_with_hidden_characters_are_refused(s: System, name: str) -> None:
    char = KINDS[name]
    bad = f"INPUT{char}-1"
    refused(s.http.post(f"{s.url('order')}/orders", json=order(items=[{"sku": bad, "quantity": 1}])), "sku", char)
    body = {"name": "Widget", "unit_price": 100, "currency": "USD", "available": 1}
    refused(s.http.put(f"{s.url('inventory')}/items/{quote(bad, safe='')}", json=body), "sku", char)
    refused(s.http.get(f"{s.url('inventory')}/items/{quote(bad, safe='')}"), "sku", char)


# Header bytes as a client sends them: the service reads them as Latin-1, so a UTF-8 character is
# several bytes there (a BOM, EF BB BF, is three printable Latin-1 characters).
KEYS = {
    "TAB": (b"key\t1", "\t"),
    "C1 NEL (Latin-1)": (b"key\x851", "\x85"),
    "RLO (UTF-8)": ("key\u202e1".encode(), "\u202e"),
    "LRI (UTF-8)": ("key\u20661".encode(), "\u2066"),
    "ZWSP (UTF-8)": ("key\u200b1".encode(), "\u200b"),
    "BOM (UTF-8)": ("key\ufeff1".encode(), "\ufeff"),
}


@pytest.mark.parametrize("name", list(KEYS))
def test_idempotency_keys_with_hidden_characters_are_refused(s: System, name: str) -> None:
    raw, char = KEYS[name]
    response = s.http.post(f"{s.url('order')}/orders", json=order(), headers={"Idempotency-Key": raw})
    refused(response, "Idempotency-Key", char)


def test_an_idempotency_key_of_other_printable_characters_is_taken(shared_system: System) -> None:
    s = shared_system
    s.put_item(SKU, available=10)
    # UTF-8 read as Latin-1 by the service: "ā" is C4 81 there, and 81 alone would be a C1 control.
    key = "clé-ā-ж-1".encode()
    first = s.http.post(f"{s.url('order')}/orders", json=order(), headers={"Idempotency-Key": key})
    again = s.http.post(f"{s.url('order')}/orders", json=order(), headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
    assert first.json()["id"] == again.json()["id"]


@pytest.mark.parametrize("currency", ["ABC", "usd", "Usd", "US", "USDX", "", "XYZ", "EURO", 840, None])
def test_currencies_must_be_iso_4217(s: System, currency: Any) -> None:
    body = {"name": "Widget", "unit_price": 100, "currency": currency, "available": 1}
    refused(s.http.put(f"{s.url('inventory')}/items/{SKU}", json=body), "currency")
    refused(s.http.put(f"{s.url('inventory')}/items/INPUT-NEW-2", json=body), "currency")
    charge = {"order_id": "ord_input_2", "amount": 100, "currency": currency, "payment_method": "pm_card_visa"}
    refused(s.http.post(f"{s.url('payment')}/payments", json=charge), "currency")


@pytest.mark.parametrize("currency", ["EUR", "JPY", "CHF", "XCG", "ZWG"])
def test_active_iso_4217_currencies_are_taken(shared_system: System, currency: str) -> None:
    s = shared_system
    body = {"name": "Widget", "unit_price": 100, "currency": currency, "available": 1}
    assert s.http.put(f"{s.url('inventory')}/items/INPUT-{currency}", json=body).status_code in (200, 201)


@pytest.mark.parametrize("price", [0, -1])
def test_an_item_costs_at_least_one_minor_unit(s: System, price: int) -> None:
    body = {"name": "Widget", "unit_price": price, "currency": "USD", "available": 1}
    refused(s.http.put(f"{s.url('inventory')}/items/{SKU}", json=body), "unit_price")
    refused(s.http.put(f"{s.url('inventory')}/items/INPUT-NEW-3", json=body), "unit_price")


@pytest.fixture
def dear(shared_system: System) -> str:
    """An item at the largest price a payment may be."""
    shared_system.put_item("INPUT-DEAR-1", available=10, unit_price=MAX_AMOUNT)
    shared_system.put_item("INPUT-HALF-1", available=10, unit_price=MAX_AMOUNT // 2 + 1)
    return "INPUT-DEAR-1"


@pytest.mark.parametrize(
    "lines",
    [
        [("INPUT-DEAR-1", 2)],
        [("INPUT-HALF-1", 2)],
        [("INPUT-HALF-1", 1), ("INPUT-DEAR-1", 1)],
        [("INPUT-DEAR-1", 10_000)],
    ],
)
def test_an_order_too_large_to_charge_is_refused(dear: str, s: System, lines: list[tuple[str, int]]) -> None:
    body = order(items=[{"sku": sku, "quantity": q} for sku, q in lines])
    problem = assert_problem(s.http.post(f"{s.url('order')}/orders", json=body), 422, "charged")
    assert problem["type"] == "/problems/amount-too-large"
    assert problem["total_amount"] > problem["max_amount"] == MAX_AMOUNT


def test_an_order_of_the_largest_chargeable_amount_is_placed(dear: str, shared_system: System) -> None:
    s = shared_system
    placed = s.http.post(f"{s.url('order')}/orders", json=order(items=[{"sku": dear, "quantity": 1}])).json()
    assert (placed["status"], placed["total_amount"]) == ("PLACED", MAX_AMOUNT), placed


def test_a_price_dropped_since_it_was_last_known_does_not_refuse_the_order(shared_system: System) -> None:
    """OrderService refuses on the prices it knows; before refusing, it asks for today's."""
    s = shared_system
    s.put_item("INPUT-DROP-1", available=10, unit_price=MAX_AMOUNT)
    too_large = order(items=[{"sku": "INPUT-DROP-1", "quantity": 2}])
    assert s.http.post(f"{s.url('order')}/orders", json=too_large).status_code == 422  # now known at that price
    s.put_item("INPUT-DROP-1", available=10, unit_price=500)
    placed = s.http.post(f"{s.url('order')}/orders", json=too_large).json()
    assert (placed["status"], placed["total_amount"]) == ("PLACED", 1000), placed
