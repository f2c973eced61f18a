"""GET /orders/{id}/diagram against the three services as real processes: the specification's
three flows run end to end and drawn arrow by arrow as docs/spec/order-saga.txt draws them (see
tests/sequence.py for how arrows are compared), out of stock, a customer's own diagram and
another's, the Mermaid form, a cancel's section of its own, and ``oms order diagram``."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
from system import System

from sequence import PARTICIPANTS, Parsed, balanced, parse, parse_mermaid, spec

PROBLEM = "application/problem+json"
TEXT = "text/plain; charset=utf-8"


def sku() -> str:
    return "SKU-" + uuid.uuid4().hex[:8].upper()


def drawn(s: System, order_id: str) -> Parsed:
    """The order's diagram, read; its layout checked on the way."""
    answer = s.http.get(f"{s.url('order')}/orders/{order_id}/diagram")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == TEXT
    parsed = parse(answer.text)
    assert parsed.title is not None and parsed.title.startswith(f"Order {order_id} (")
    assert parsed.participants == PARTICIPANTS
    for section in parsed.sections:
        assert balanced(section), section.lines
    return parsed


def test_a_successful_order_is_drawn_as_the_spec_draws_it(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=10, unit_price=1250)
    order = s.place([(item, 2)]).json()
    assert order["status"] == "PLACED"
    [section] = drawn(s, order["id"]).sections
    assert section.title == "Successful Order Flow"
    assert section.compared == spec()["Successful Order Flow"].compared
    assert section.arrows[0].message == f"Place Order · {item}:2"


def test_a_payment_failure_and_its_compensation_are_drawn_as_the_spec_draws_them(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=5)
    order = s.place([(item, 1)], method="pm_card_chargeDeclined").json()
    assert order["status"] == "PAYMENT_FAILED"
    [section] = drawn(s, order["id"]).sections
    flow = "Failure Handling with Compensating Transactions"
    assert section.title == flow
    assert section.compared == spec()[flow].compared
    failed = next(a for a in section.arrows if a.words == "Payment Failed")
    assert failed.message.startswith("Payment Failed · card_declined, ") and failed.message.endswith(" ms")
    assert section.arrows[-1].message == "Order Failed (Payment Issue) · card_declined"


def test_the_circuit_breaker_flow_is_drawn_as_the_spec_draws_it_then_reconcile(system: System) -> None:
    s = system
    item = sku()
    s.put_item(item, available=10, unit_price=500)
    s.place([(item, 1)])  # a live answer: OrderService now knows this SKU's stock and price
    s.kill("inventory")
    orders = []
    for _ in range(8):
        orders.append(s.place([(item, 1)]).json())
        live = orders[-1]["saga"][0]["detail"]["live"]
        if live["error"] == "circuit_open" and live["sent"] == 0:
            break
    else:
        raise AssertionError(f"the breaker never opened: {[o['saga'][0]['detail'] for o in orders]}")
    flow = "Circuit Breaker Scenario"
    for order in orders:
        assert order["status"] == "PLACED" and order["inventory_check"] == "fallback", order
    [section] = drawn(s, orders[-1]["id"]).sections
    assert section.title == flow
    assert section.compared == spec()[flow].compared
    assert "note over OrderService: Circuit open: no request left OrderService" in section.lines
    # An order that tried InventoryService and found it gone: drawn the spec's way, saying so.
    for order in orders:
        live = order["saga"][0]["detail"]["live"]
        if live["error"] == "connection_refused":
            first = drawn(s, order["id"]).sections[0]
            assert first.title == flow
            assert [a.compared[:3] for a in first.arrows] == [a.compared[:3] for a in spec()[flow].arrows]
            assert first.arrows[3].words == "Unreachable - Using Fallback"
            tries = f" ({live['sent']} tries)" if live["sent"] > 1 else ""
            assert f"note over OrderService: InventoryService out of reach: connection_refused{tries}" in first.lines

    # InventoryService comes back: the reconcile saga makes the reservation, in a section of its own.
    s.start("inventory")
    order = s.wait_reservation(orders[-1]["id"])
    assert order["reservation"] == "held", order
    sections = drawn(s, order["id"]).sections
    assert sections[0].title == flow
    assert all(section.title.startswith("Reconcile Saga") for section in sections[1:]), sections
    last = sections[-1]
    assert last.title in ("Reconcile Saga · PLACED", "Reconcile Saga Resumed · PLACED")
    assert last.compared == [
        ("OrderService", "->", "InventoryService", "Reserve Inventory (deferred)"),
        ("InventoryService", "-->", "OrderService", "Inventory Reserved"),
        ("OrderService", "->", "OrderService", "Update Order Status (PLACED)"),
    ]


def test_out_of_stock_is_drawn_with_its_shortage(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=1)
    order = s.place([(item, 2)]).json()
    assert order["status"] == "OUT_OF_STOCK"
    [section] = drawn(s, order["id"]).sections
    assert section.title == "Order Saga · OUT_OF_STOCK, out_of_stock"
    assert section.compared == [
        ("Client", "->", "OrderService", "Place Order (with failure scenario)"),
        ("OrderService", "->", "OrderService", "Create Order (PENDING)"),
        ("OrderService", "->", "InventoryService", "Check Inventory"),
        ("InventoryService", "-->", "OrderService", "Out of Stock"),
        ("OrderService", "->", "OrderService", "Update Order Status (OUT_OF_STOCK)"),
        ("OrderService", "-->", "Client", "Order Failed (Out of Stock)"),
    ]
    assert f"note over InventoryService: {item}: 2 wanted, 1 available" in section.lines


def test_a_customer_reads_its_own_diagrams_and_no_one_elses(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=5)
    alice, bob = s.customer(f"alice-{uuid.uuid4().hex[:6]}"), s.customer(f"bob-{uuid.uuid4().hex[:6]}")
    body = {"items": [{"sku": item, "quantity": 1}], "payment_method": "pm_card_visa"}
    placed = alice.post(f"{s.url('order')}/orders", json=body)
    assert placed.status_code == 201, placed.text
    path = f"{s.url('order')}/orders/{placed.json()['id']}/diagram"
    own = alice.get(path)
    assert own.status_code == 200 and own.headers["content-type"] == TEXT
    assert parse(own.text).sections[0].title == "Successful Order Flow"
    for query in ("", "?format=mermaid"):
        other = bob.get(path + query)
        assert other.status_code == 404 and other.headers["content-type"] == PROBLEM, other.text
    missing = alice.get(f"{s.url('order')}/orders/ord_000000000000000000000000/diagram")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert httpx.get(path).status_code == 401


def test_the_mermaid_form_has_the_same_sections_and_arrows(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=5)
    order = s.place([(item, 1)], method="pm_card_chargeDeclined").json()
    path = f"{s.url('order')}/orders/{order['id']}/diagram"
    answer = s.http.get(path, params={"format": "mermaid"})
    assert answer.status_code == 200 and answer.headers["content-type"] == TEXT
    assert answer.text.startswith("sequenceDiagram\n")
    mermaid, text = parse_mermaid(answer.text), drawn(s, order["id"])
    assert mermaid.participants == PARTICIPANTS
    assert [(m.title, m.compared) for m in mermaid.sections] == [(t.title, t.compared) for t in text.sections]
    assert all(balanced(section) for section in mermaid.sections)
    for value in ("png", "", "MERMAID", "mermaid;"):
        refused = s.http.get(path, params={"format": value})
        assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM, (value, refused.text)
        assert "format" in refused.json()["detail"]


def test_a_cancel_adds_a_section_of_its_own(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=5)
    order = s.place([(item, 2)]).json()
    cancelled = s.http.post(f"{s.url('order')}/orders/{order['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED", cancelled.text
    first, cancel = drawn(s, order["id"]).sections
    assert first.title == "Successful Order Flow"
    assert first.compared == spec()["Successful Order Flow"].compared
    assert cancel.title == "Cancel Saga · CANCELLED"
    assert cancel.compared == [
        ("Client", "->", "OrderService", "Cancel Order"),
        ("OrderService", "->", "PaymentService", "Refund Payment"),
        ("PaymentService", "-->", "OrderService", "Payment Refunded"),
        ("OrderService", "->", "InventoryService", "Release Inventory"),
        ("InventoryService", "-->", "OrderService", "Inventory Released"),
        ("OrderService", "->", "OrderService", "Update Order Status (CANCELLED)"),
        ("OrderService", "-->", "Client", "Order Cancelled"),
    ]


def test_oms_order_diagram_prints_the_diagram(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=5)
    order_id = s.place([(item, 1)]).json()["id"]
    path = f"{s.url('order')}/orders/{order_id}/diagram"
    command = [sys.executable, "-m", "oms", "order", "diagram", order_id, "--url", s.url("order"), "--token", s.token]
    for flags, query in (([], {}), (["--mermaid"], {"format": "mermaid"})):
        printed = subprocess.run(command + flags, capture_output=True, text=True, timeout=60, env=s.env)
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout == s.http.get(path, params=query).text
    unknown = command.copy()
    unknown[5] = "ord_000000000000000000000000"
    missing = subprocess.run(unknown, capture_output=True, text=True, timeout=60, env=s.env)
    assert missing.returncode == 1 and "404" in missing.stdout
