"""What a customer is shown of its order (oms.orders.views.for_customer), and the diagram drawn from
it: whatever the saga log's rows hold in their ``detail`` and their reasons (stock levels, a
breaker's or an exception's message, a URL), none of it reaches the customer; each step, its outcome,
a reason in the customer's words and its duration do."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oms.orders.diagram import FORMATS, render
from oms.orders.saga import STATUSES
from oms.orders.views import REASONS, customer_reason, for_customer

SECRET = "SECRET"
"""Every message the tests put in a detail or a reason starts with it: none may be shown."""
TEN_DIGITS = re.compile(r"\d{10}")
"""Every stock level the tests write has ten digits or more; nothing a customer is shown has as many."""
STOCK = st.integers(10**9, 10**15)
OWN = ("W-A", "G-B", "K-C")
"""The order's SKUs (its customer's own: shown as they are)."""
STEPS = ("check_inventory", "reserve_inventory", "process_payment", "reserve_deferred", "refund_payment",
         "release_stock", "release_inventory", "release_fallback_hold")  # fmt: skip
INTERNAL_REASONS = (
    "out_of_stock", "out_of_stock_after_fallback", "insufficient_fallback_stock", "unknown_sku", "mixed_currencies",
    "no_fallback_data", "inventory_unavailable", "inventory_no_answer", "inventory_refused", "reservation_refused",
    "reservation_deferred", "unpriced_reservation", "release_failed", "payment_unavailable", "payment_refused",
    "payment_timeout", "payment_outcome_unknown", "payment_refunded", "refund_failed", "nothing_to_refund",
    "nothing_held", "live_check", "card_declined", "insufficient_funds", "invalid_payment_method",
    "fallback:circuit_open", "fallback:timeout", "error:KeyError",
)  # fmt: skip

secrets = st.text(max_size=30).map(lambda text: SECRET + text)
reasons = st.one_of(
    st.none(),
    st.sampled_from(INTERNAL_REASONS),
    secrets,
    secrets.map(lambda text: "error:" + text),
    secrets.map(lambda text: "fallback:" + text),
)
skus = st.one_of(st.sampled_from(OWN), secrets)
lines = st.lists(st.fixed_dictionaries({"sku": skus, "quantity": st.integers(1, 10_000)}), max_size=3)
stock = st.lists(st.fixed_dictionaries({"sku": skus, "available": STOCK, "unit_price": STOCK}), max_size=3)
call = st.fixed_dictionaries({"error": secrets, "message": secrets}, optional={"sent": st.integers(0, 5)})
refusal = st.fixed_dictionaries({"answer": st.integers(400, 599), "problem": secrets, "message": secrets})
shaped = st.fixed_dictionaries(
    {},
    optional={
        "request": st.fixed_dictionaries({"items": lines}),
        "answer": st.one_of(stock, st.integers(400, 599)),
        "owed_to_fallback_orders": st.dictionaries(skus, STOCK, max_size=3),
        "unknown": st.lists(skus, max_size=3),
        "live": call,
        "fallback": st.fixed_dictionaries(
            {"items": stock, "missing": st.lists(skus, max_size=3), "short": st.lists(skus, max_size=3)}
        ),
        "error": secrets,
        "message": secrets,
        "problem": secrets,
        "sent": st.integers(0, 5),
        "asked": st.one_of(secrets, call, refusal),
        "settle": st.one_of(call, refusal),
        "status": st.sampled_from(["SUCCEEDED", "DECLINED", "REFUNDED"]),
        "voided": st.booleans(),
        "payment_id": secrets,
        "reservation": secrets,
        "refused": secrets,
        "skus": st.lists(skus, max_size=3),
    },
)
"""Details shaped as the sagas write them, every message a secret and every stock level ten digits."""
anything = st.recursive(
    st.one_of(st.none(), st.booleans(), STOCK, secrets, skus),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.one_of(secrets, st.sampled_from(
        ["request", "answer", "available", "sku", "items", "fallback", "short", "unknown", "live", "skus"]
    )), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
"""Any JSON at all, made of secrets, stock levels and SKUs."""


def _at(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000000Z"


@st.composite
def orders(draw: st.DrawFn) -> dict[str, Any]:
    rows = []
    for second in range(draw(st.integers(0, 8))):
        rows.append(
            {
                "saga": draw(st.sampled_from(["order", "reconcile", "cancel"])),
                "kind": draw(st.sampled_from(["step", "compensation"])),
                "name": draw(st.sampled_from(STEPS)),
                "outcome": draw(st.sampled_from(["done", "skipped", "failed", "uncertain", "unknown"])),
                "reason": draw(reasons),
                "attempt": draw(st.integers(1, 5)),
                "started_at": _at(second),
                "ended_at": _at(second + 1),
                "duration_ms": draw(st.integers(0, 99_999)) / 10,
                "detail": draw(st.one_of(shaped, anything)),
            }
        )
    own = draw(st.lists(st.sampled_from(OWN), min_size=1, unique=True))
    return {
        "id": "ord_test", "status": draw(st.sampled_from(STATUSES)),
        "saga_status": draw(st.sampled_from(["running", "waiting", "completed", "compensated", "compensation_failed"])),
        "customer_id": "cust-1", "payment_method": "pm_card_visa",
        "items": [{"sku": s, "name": "Widget", "quantity": 2, "unit_price": 250, "amount": 500} for s in own],
        "total_amount": 500 * len(own), "currency": "USD",
        "inventory_check": draw(st.sampled_from([None, "live", "fallback"])),
        "reservation": "held", "payment_id": None, "failure_reason": draw(reasons), "pending_reason": draw(reasons),
        "created_at": _at(0), "updated_at": _at(9), "trace_id": None,
        "trace_url": f"http://{SECRET}-tracing.internal:16686/trace/1", "saga": rows,
    }  # fmt: skip


def shown(view: dict[str, Any]) -> list[str]:
    """Everything a customer can read of the order: its JSON, and its diagram in each format."""
    return [json.dumps(view), *(render(view, format) for format in (None, *FORMATS))]


def leaks(texts: list[str]) -> list[str]:
    return [text for text in texts if SECRET in text or TEN_DIGITS.search(text)]


@settings(max_examples=200, deadline=None)
@given(orders())
def test_no_stock_level_and_no_message_reaches_a_customer_whatever_the_details_hold(order: dict[str, Any]) -> None:
    before = copy.deepcopy(order)
    view = for_customer(order)
    assert order == before  # the admin's order is left as it is
    assert leaks(shown(view)) == []
    assert "trace_url" not in view
    assert {view["failure_reason"], view["pending_reason"]} <= REASONS | {None}
    assert len(view["saga"]) == len(order["saga"])
    for row, stored in zip(view["saga"], order["saga"], strict=True):
        # Each step is shown: its outcome, when and how long; its reason in the customer's words.
        for name in ("saga", "kind", "name", "outcome", "attempt", "started_at", "ended_at", "duration_ms"):
            assert row[name] == stored[name]
        assert row["reason"] in REASONS | {None}
        # The detail: nothing, or which of the order's own SKUs the reason is about.
        assert row["detail"] == {} or set(row["detail"]) == {"skus"}
        assert set(row["detail"].get("skus", ())) <= {line["sku"] for line in order["items"]}


def test_the_test_sees_a_leak_in_the_order_as_an_admin_reads_it() -> None:
    """The property above can fail: the order as stored shows the stock, in JSON and drawn."""
    order = {
        "id": "ord_test", "status": "PLACED", "saga_status": "completed", "items": [{"sku": "W-A", "quantity": 1}],
        "failure_reason": None, "pending_reason": None,
        "saga": [
            {"saga": "order", "kind": "step", "name": "check_inventory", "outcome": "done",
             "reason": "fallback:circuit_open", "attempt": 1, "started_at": _at(0), "ended_at": _at(1),
             "duration_ms": 1.0, "detail": {
                 "live": {"error": "circuit_open", "message": f"{SECRET}: circuit breaker is open"},
                 "fallback": {"items": [{"sku": "W-A", "available": 9897340000}], "missing": [], "short": []}}},
        ],
    }  # fmt: skip
    assert len(leaks(shown(order))) == 4
    assert leaks(shown(for_customer(order))) == []


@pytest.mark.parametrize(
    ("reason", "outcome", "name", "said"),
    [
        ("out_of_stock", "failed", "check_inventory", "out_of_stock"),
        ("insufficient_fallback_stock", "failed", "check_inventory", "out_of_stock"),
        ("out_of_stock_after_fallback", "failed", "reserve_deferred", "out_of_stock"),
        ("fallback:circuit_open", "done", "check_inventory", "inventory_unavailable_fallback"),
        ("reservation_deferred", "skipped", "reserve_inventory", "reservation_deferred"),
        ("no_fallback_data", "failed", "check_inventory", "inventory_unavailable"),
        ("inventory_unavailable", "unknown", "reserve_deferred", "inventory_unavailable_retrying"),
        ("card_declined", "failed", "process_payment", "card_declined"),
        ("do_not_honor", "failed", "process_payment", "payment_declined"),
        ("payment_unavailable", "failed", "process_payment", "payment_unavailable"),
        ("payment_timeout", "failed", "process_payment", "payment_unavailable"),
        ("payment_outcome_unknown", "unknown", "process_payment", "payment_unavailable_retrying"),
        ("payment_refused", "failed", "process_payment", "rejected"),
        ("error:KeyError", "unknown", "process_payment", "internal_error"),
        ("error:KeyError", "failed", "process_payment", "internal_error"),
        ("something_new", "failed", "check_inventory", "internal_error"),
        ("live_check", "skipped", "release_fallback_hold", None),
        (None, "done", "process_payment", None),
    ],
)
def test_a_reason_in_the_customers_words(reason: str | None, outcome: str, name: str, said: str | None) -> None:
    row: dict[str, Any] = {"name": name, "outcome": outcome, "reason": reason, "detail": {}}
    assert for_customer({"saga": [row]})["saga"][0]["reason"] == said
    waiting = outcome == "unknown"
    assert customer_reason(reason, waiting=waiting, declined=name == "process_payment" and outcome == "failed") == said


def test_the_order_reasons_are_said_as_the_steps_are() -> None:
    failed = for_customer({"status": "PAYMENT_FAILED", "failure_reason": "do_not_honor", "pending_reason": None})
    assert failed["failure_reason"] == "payment_declined"
    waiting = for_customer({"status": "PENDING", "failure_reason": None, "pending_reason": "payment_outcome_unknown"})
    assert waiting["pending_reason"] == "payment_unavailable_retrying"
    rejected = for_customer({"status": "REJECTED", "failure_reason": "no_fallback_data", "pending_reason": None})
    assert rejected["failure_reason"] == "inventory_unavailable"


def _check(reason: str, outcome: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "saga": "order", "kind": "step", "name": "check_inventory", "outcome": outcome, "reason": reason,
        "attempt": 1, "started_at": _at(0), "ended_at": _at(1), "duration_ms": 3.5, "detail": detail,
    }  # fmt: skip


def _order(status: str, *rows: dict[str, Any]) -> dict[str, Any]:
    items = [{"sku": "W-A", "quantity": 2}, {"sku": "G-B", "quantity": 1}]
    return {"id": "ord_test", "status": status, "saga_status": "compensated", "items": items, "saga": list(rows)}


def test_a_customer_learns_which_of_its_skus_are_out_of_stock_but_not_how_many_there_are() -> None:
    detail = {
        "request": {"items": [{"sku": "W-A", "quantity": 2}, {"sku": "G-B", "quantity": 1}]},
        "answer": [{"sku": "W-A", "available": 1, "unit_price": 250}, {"sku": "G-B", "available": 7, "unit_price": 9}],
    }
    view = for_customer(_order("OUT_OF_STOCK", _check("out_of_stock", "failed", detail)))
    assert view["saga"][0]["detail"] == {"skus": ["W-A"]}
    text = render(view)
    assert "W-A: out of stock" in text and "available" not in text.replace("Inventory Available", "")
    assert "W-A: 2 wanted, 1 available" in render(_order("OUT_OF_STOCK", _check("out_of_stock", "failed", detail)))


def test_an_order_on_fallback_data_is_drawn_as_such_without_the_breaker_or_the_stock() -> None:
    detail = {
        "live": {"error": "circuit_open", "message": "circuit breaker 'inventory' is open; call not permitted"},
        "fallback": {"items": [{"sku": "W-A", "available": 989734}, {"sku": "G-B", "available": 989735}], "missing": [],
                     "short": []},
    }  # fmt: skip
    stored = _order("PLACED", _check("fallback:circuit_open", "done", detail))
    assert "Circuit Open - Using Fallback" in render(stored) and "W-A 989734" in render(stored)
    view = for_customer(stored)
    for format in (None, *FORMATS):
        drawn = render(view, format)
        assert "Circuit Breaker Scenario" in drawn  # the specification's name of the flow
        assert "Unavailable - Using Fallback" in drawn and "Proceed with fallback data" in drawn
        assert "Circuit Open" not in drawn and "circuit_open" not in drawn
        assert "98973" not in drawn


def test_a_declined_payment_is_drawn_as_a_failed_payment() -> None:
    row = {
        "saga": "order", "kind": "step", "name": "process_payment", "outcome": "failed", "reason": "card_declined",
        "attempt": 1, "started_at": _at(2), "ended_at": _at(3), "duration_ms": 4.0,
        "detail": {"request": {"amount": 500}, "payment_id": "pay_1", "status": "DECLINED"},
    }  # fmt: skip
    drawn = render(for_customer(_order("PAYMENT_FAILED", _check("", "done", {}), row)))
    assert "PaymentService-->OrderService: Payment Failed · card_declined, 4.0 ms" in drawn
