"""An order's saga log as a sequence diagram (oms.orders.diagram), from hand-made logs shaped as
the order sagas write them: the specification's three flows arrow by arrow, and what it does not
show (out of stock, a call's tries, a timeout and the query that settled it, an outcome still
unknown, a compensation's attempts, the later sagas), in both notations."""

from __future__ import annotations

import itertools
from typing import Any
from xml.etree import ElementTree

import pytest

from oms.orders.diagram import Arrow, Note, Section, render, sequence, to_mermaid, to_text
from sequence import FLOWS, PARTICIPANTS, Parsed, balanced, parse, parse_mermaid, parse_svg, spec

_clock = itertools.count()


def row(
    name: str,
    outcome: str = "done",
    reason: str | None = None,
    *,
    kind: str = "step",
    saga: str = "order",
    attempt: int = 1,
    ms: float = 2.5,
    detail: dict[str, Any] | None = None,
    took: float | None = None,
) -> dict[str, Any]:
    """A row of the saga log as GET /orders/{id} shows it; each starts a second after the last, and
    takes ``ms`` (or ``took`` seconds, from its first try to its last)."""
    start = next(_clock)
    end = start + (ms / 1000 if took is None else took)
    return {
        "saga": saga, "kind": kind, "name": name, "outcome": outcome, "reason": reason, "attempt": attempt,
        "started_at": f"2026-01-01T00:{int(start) // 60 % 60:02d}:{start % 60:06.3f}Z",
        "ended_at": f"2026-01-01T00:{int(end) // 60 % 60:02d}:{end % 60:06.3f}Z",
        "duration_ms": ms, "detail": detail or {},
    }  # fmt: skip


def order(
    status: str, *rows: dict[str, Any], saga_status: str = "completed", pending: str | None = None
) -> dict[str, Any]:
    return {
        "id": "ord_0123456789abcdef", "status": status, "saga_status": saga_status, "pending_reason": pending,
        "items": [{"sku": "W-1", "quantity": 2}], "saga": list(rows),
    }  # fmt: skip


REQUEST = {"items": [{"sku": "W-1", "quantity": 2}]}
CHARGE = {"order_id": "ord_0123456789abcdef", "amount": 500, "currency": "USD", "payment_method": "pm_card_visa"}


def check(**extra: Any) -> dict[str, Any]:
    return row("check_inventory", detail={"request": REQUEST, "answer": [{"sku": "W-1", "available": 9}], **extra})


def reserve() -> dict[str, Any]:
    return row("reserve_inventory", detail={"request": {"order_id": "o", **REQUEST}})


def paid(**extra: Any) -> dict[str, Any]:
    return row("process_payment", detail={"request": CHARGE, "payment_id": "pay_1", "status": "SUCCEEDED", **extra})


def declined() -> dict[str, Any]:
    detail = {"request": CHARGE, "payment_id": "pay_1", "status": "DECLINED"}
    return row("process_payment", "failed", "card_declined", detail=detail)


def released(outcome: str = "done", attempt: int = 1) -> dict[str, Any]:
    if outcome == "done":
        return row("release_inventory", kind="compensation", attempt=attempt, detail={"order_id": "o"})
    detail = {"error": "connection_refused", "message": "cannot connect", "sent": 3}
    return row("release_inventory", "failed", "release_failed", kind="compensation", attempt=attempt, detail=detail)


def fallback_check(error: str = "circuit_open", **live: Any) -> dict[str, Any]:
    """A check that found InventoryService out of reach (``live``: more of what the call met,
    such as ``sent``, its tries that left OrderService) and went on with the fallback data."""
    detail = {
        "request": REQUEST,
        "live": {"error": error, "message": "...", **live},
        "fallback": {"items": [{"sku": "W-1", "available": 9, "unit_price": 250}], "missing": [], "short": []},
    }
    return row("check_inventory", reason=f"fallback:{error}", detail=detail)


def deferred() -> dict[str, Any]:
    return row("reserve_inventory", "skipped", "reservation_deferred", detail={"reservation": "deferred"})


SUCCESSFUL = order("PLACED", check(), reserve(), paid())
PAYMENT_FAILED = order("PAYMENT_FAILED", check(), reserve(), declined(), released())
CIRCUIT_OPEN = order(
    "PLACED", fallback_check(), deferred(), paid(), saga_status="waiting", pending="reservation_deferred"
)


def drawn(the_order: dict[str, Any]) -> Parsed:
    """The order's diagram in both notations, held to each other; the specification's one returned."""
    text, mermaid = parse(render(the_order)), parse_mermaid(render(the_order, "mermaid"))
    assert text.participants == mermaid.participants == PARTICIPANTS
    assert [s.title for s in text.sections] == [s.title for s in mermaid.sections]
    assert [s.compared for s in text.sections] == [s.compared for s in mermaid.sections]
    for section in (*text.sections, *mermaid.sections):
        assert balanced(section), section.lines
    return text


@pytest.mark.parametrize(
    ("flow", "the_order"), list(zip(FLOWS, (SUCCESSFUL, PAYMENT_FAILED, CIRCUIT_OPEN), strict=True)), ids=FLOWS
)
def test_the_three_flows_are_drawn_arrow_by_arrow_as_the_specification_draws_them(
    flow: str, the_order: dict[str, Any]
) -> None:
    first = drawn(the_order).sections[0]
    assert first.title == flow
    assert first.compared == spec()[flow].compared
    # The spec's own messages, whole, before what the diagram adds.
    assert [a.words for a in first.arrows] == [a.message for a in spec()[flow].arrows]


def test_what_the_diagram_adds_follows_the_specifications_words() -> None:
    arrows = drawn(PAYMENT_FAILED).sections[0].arrows
    assert arrows[0].message == "Place Order (with failure scenario) · W-1:2"
    assert [a.message for a in arrows if a.words == "Payment Failed"] == ["Payment Failed · card_declined, 2.5 ms"]
    assert any(a.message.startswith("Update Order Status (PAYMENT_FAILED) · card_declined, saga took ") for a in arrows)
    assert arrows[-1].message == "Order Failed (Payment Issue) · card_declined"


def test_the_circuit_open_check_is_drawn_as_the_spec_draws_it_with_a_note_that_nothing_was_sent() -> None:
    text = render(CIRCUIT_OPEN)
    assert "OrderService->InventoryService: Check Inventory (Circuit Open)\n" in text
    assert "InventoryService-->OrderService: Circuit Open - Using Fallback · 2.5 ms\n" in text
    assert "note over OrderService: Circuit open: no request left OrderService\n" in text
    assert "note over OrderService: Reserve Inventory skipped" in text  # a note, not an arrow
    assert "note over OrderService: Still to come: the reconcile saga, to make the deferred reservation\n" in text


def test_a_fallback_after_an_unreachable_inventory_says_so_with_the_tries() -> None:
    the_order = order("PLACED", fallback_check("connection_refused", sent=3), deferred(), paid())
    first = drawn(the_order).sections[0]
    assert first.title == "Circuit Breaker Scenario"
    assert first.arrows[3].message == "Unreachable - Using Fallback · connection_refused, 2.5 ms"
    assert "note over OrderService: InventoryService out of reach: connection_refused (3 tries)" in first.lines


def test_a_circuit_that_opened_during_the_call_says_tries_were_sent() -> None:
    the_order = order("PLACED", fallback_check("circuit_open", sent=2), deferred(), paid())
    first = drawn(the_order).sections[0]
    assert first.compared == spec()["Circuit Breaker Scenario"].compared
    assert "note over OrderService: Circuit open: no request left OrderService" not in first.lines
    assert (
        "note over OrderService: 2 tries failed, then the circuit opened: the last try never left OrderService"
        in first.lines
    )
    assert "note over OrderService: Circuit open: no request left OrderService" in drawn(CIRCUIT_OPEN).sections[0].lines


def test_out_of_stock_is_answered_with_the_shortage() -> None:
    detail = {"request": REQUEST, "answer": [{"sku": "W-1", "available": 3}], "owed_to_fallback_orders": {"W-1": 2}}
    the_order = order("OUT_OF_STOCK", row("check_inventory", "failed", "out_of_stock", detail=detail))
    [section] = drawn(the_order).sections
    assert section.title == "Order Saga · OUT_OF_STOCK, out_of_stock"
    assert section.compared == [
        ("Client", "->", "OrderService", "Place Order (with failure scenario)"),
        ("OrderService", "->", "OrderService", "Create Order (PENDING)"),
        ("OrderService", "->", "InventoryService", "Check Inventory"),
        ("InventoryService", "-->", "OrderService", "Out of Stock"),
        ("OrderService", "->", "OrderService", "Update Order Status (OUT_OF_STOCK)"),
        ("OrderService", "-->", "Client", "Order Failed (Out of Stock)"),
    ]
    assert (
        "note over InventoryService: W-1: 2 wanted, 3 available, 2 of them owed to orders placed on fallback data"
        in section.lines
    )


def test_odd_rows_are_drawn_not_refused() -> None:
    """A row short of what it usually holds still draws (the endpoint must not fail on its log)."""
    detail = {"answer": [{"sku": "W-1", "available": -1}], "owed_to_fallback_orders": {"W-1": 1}}
    odd = order(
        "OUT_OF_STOCK",
        row("check_inventory", "failed", "out_of_stock", detail=detail),
        row("mystery_step", "done", kind="step"),
        row("mystery_undo", "failed", "why", kind="compensation"),
    )
    odd["saga"].append({"saga": "order", "kind": "step", "name": "process_payment", "outcome": "done"})
    text = drawn(odd)
    assert all(line != "note over InventoryService: " for s in text.sections for line in s.lines)
    assert (
        "note over InventoryService: W-1: 0 wanted, -1 available, 1 of them owed to orders placed on fallback data"
        in (text.sections[0].lines)
    )


def test_a_timed_out_charge_and_the_query_that_settled_it() -> None:
    landed = paid(error="timeout", message="no answer within 5.0s", asked="SUCCEEDED")
    section = drawn(order("PLACED", check(), reserve(), landed)).sections[0]
    assert section.title == "Successful Order Flow"
    assert [a.message for a in section.arrows[6:10]] == [
        "Process Payment",
        "No Answer · timeout",
        "Query Payment (outcome unknown)",
        "Payment Successful · found, 2.5 ms",
    ]
    assert "note over PaymentService: The charge may have landed: asked for before anything is decided" in section.lines


def test_a_timed_out_charge_that_never_landed_is_voided_then_compensated() -> None:
    detail = {"request": CHARGE, "error": "timeout", "message": "...", "asked": "no payment", "voided": True}
    never = row("process_payment", "failed", "payment_timeout", detail=detail)
    section = drawn(order("PAYMENT_FAILED", check(), reserve(), never, released())).sections[0]
    assert section.title == "Failure Handling with Compensating Transactions"
    assert [a.compared[1:] for a in section.arrows[6:14]] == [
        ("->", "PaymentService", "Process Payment"),
        ("-->", "OrderService", "No Answer"),
        ("->", "PaymentService", "Query Payment (outcome unknown)"),
        ("-->", "OrderService", "No Payment"),
        ("->", "PaymentService", "Void Payment"),
        ("-->", "OrderService", "Payment Voided"),
        ("->", "InventoryService", "Release Inventory (Compensating Transaction)"),
        ("-->", "OrderService", "Inventory Released"),
    ]
    assert section.arrows[-1].message == "Order Failed (Payment Issue) · payment_timeout"


def test_an_unknown_outcome_waits_then_a_later_section_settles_it() -> None:
    detail = {"request": CHARGE, "error": "timeout", "message": "...", "settle": {"error": "connection_refused"}}
    checked, reserved = check(), reserve()
    unknown = row("process_payment", "unknown", "payment_outcome_unknown", attempt=4, detail=detail, took=30)
    waiting = order("PENDING", checked, reserved, unknown, saga_status="waiting", pending="payment_outcome_unknown")
    [section] = drawn(waiting).sections
    assert section.title == "Order Saga · PENDING, waiting on payment_outcome_unknown"
    assert [a.message for a in section.arrows[-6:]] == [
        "Process Payment",
        "No Answer · timeout",
        "Query Payment (outcome unknown)",
        "Unreachable · connection_refused, 2.5 ms",
        "Update Order Status (PENDING) · waiting on payment_outcome_unknown, saga took 32.0 s",
        "Order Pending · payment_outcome_unknown",
    ]
    assert (
        "note over OrderService: Outcome unknown (payment_outcome_unknown): asked 4 times over 30.0 s; "
        "the saga waits and asks again" in section.lines
    )

    found = row("process_payment", detail={"asked": "SUCCEEDED", "payment_id": "pay_1", "status": "SUCCEEDED"})
    settled = order("PLACED", checked, reserved, unknown, found)
    first, later = drawn(settled).sections
    assert first.title == "Order Saga · PENDING, waiting on payment_outcome_unknown"
    assert later.title == "Order Saga Resumed · PLACED"
    assert later.compared == [
        ("OrderService", "->", "PaymentService", "Query Payment (outcome unknown)"),
        ("PaymentService", "-->", "OrderService", "Payment Successful"),
        ("OrderService", "->", "OrderService", "Update Order Status (PLACED)"),
    ]
    assert "note over OrderService: Driven on from its saga log, by recovery or by oms order retry" in later.lines


def test_a_failed_compensation_shows_its_attempts_and_a_retry_its_own_section() -> None:
    attempts = [released("failed", n) for n in (1, 2, 4, 8, 11)]
    gave_up = order("COMPENSATION_FAILED", check(), reserve(), declined(), *attempts)
    [section] = drawn(gave_up).sections
    assert section.title == "Failure Handling with Compensating Transactions · COMPENSATION_FAILED, release_failed"
    releases = [a for a in section.arrows if a.words.startswith("Release Inventory")]
    assert len(releases) == 1, "one call, its attempts in a note"
    assert section.arrows[9].message == "Unreachable · release_failed, connection_refused, 3 tries, 2.5 ms"
    note = next(
        line for line in section.lines if line.startswith("note over OrderService: release_inventory: 11 tries")
    )
    assert "(logged: 1 failed, 2 failed, 4 failed, 8 failed, 11 failed)" in note
    assert "Gave up: COMPENSATION_FAILED" in note
    assert section.arrows[-1].message == "Order Failed (Compensation Failed) · release_failed"

    retried = order("PAYMENT_FAILED", check(), reserve(), declined(), *attempts, released())
    first, retry = drawn(retried).sections
    assert first.title.endswith("COMPENSATION_FAILED, release_failed")
    assert retry.title == "Order Saga Resumed · PAYMENT_FAILED, card_declined"
    assert retry.compared == [
        ("OrderService", "->", "InventoryService", "Release Inventory (Compensating Transaction)"),
        ("InventoryService", "-->", "OrderService", "Inventory Released"),
        ("OrderService", "->", "OrderService", "Update Order Status (PAYMENT_FAILED)"),
    ]


def test_a_compensation_still_being_retried_is_under_way() -> None:
    retrying = order("PENDING", check(), reserve(), declined(), released("failed", 1), saga_status="running")
    [section] = drawn(retrying).sections
    assert section.title == "Failure Handling with Compensating Transactions · under way"
    assert "note over OrderService: Under way" in section.lines
    assert section.arrows[-2].words == "Release Inventory (Compensating Transaction)"
    assert not any(a.words.startswith(("Update Order Status", "Order ")) for a in section.arrows)


def test_reconcile_after_the_fallback_is_a_section_of_its_own() -> None:
    waited = row(
        "reserve_deferred", "unknown", "inventory_unavailable", saga="reconcile", attempt=3,
        detail={"request": {}, "error": "circuit_open", "message": "..."},
    )  # fmt: skip
    made = row("reserve_deferred", saga="reconcile", detail={"request": {}})
    the_order = order("PLACED", fallback_check(), deferred(), paid(), waited, made)
    first, reconcile, again = drawn(the_order).sections
    assert first.title == "Circuit Breaker Scenario"
    assert reconcile.title == "Reconcile Saga · PLACED, waiting on inventory_unavailable"
    assert reconcile.compared[:2] == [
        ("OrderService", "->", "InventoryService", "Reserve Inventory (deferred) (Circuit Open)"),
        ("InventoryService", "-->", "OrderService", "Circuit Open"),
    ]
    assert not any("Client" in (a[0], a[2]) for a in reconcile.compared + again.compared)
    assert again.title == "Reconcile Saga Resumed · PLACED"
    assert again.compared[:2] == [
        ("OrderService", "->", "InventoryService", "Reserve Inventory (deferred)"),
        ("InventoryService", "-->", "OrderService", "Inventory Reserved"),
    ]


def test_stock_gone_after_the_fallback_refunds_and_cancels() -> None:
    gone = row(
        "reserve_deferred", "failed", "out_of_stock_after_fallback", saga="reconcile",
        detail={"request": {}, "answer": 409, "problem": "out-of-stock", "message": "..."},
    )  # fmt: skip
    refunded = row("refund_payment", kind="compensation", saga="reconcile", detail={"order_id": "o"})
    unheld = row("release_fallback_hold", kind="compensation", saga="reconcile")
    the_order = order("CANCELLED", fallback_check(), deferred(), paid(), gone, refunded, unheld)
    _, reconcile = drawn(the_order).sections
    assert reconcile.title == "Reconcile Saga · CANCELLED, out_of_stock_after_fallback"
    assert [a.compared[1:] for a in reconcile.arrows] == [
        ("->", "InventoryService", "Reserve Inventory (deferred)"),
        ("-->", "OrderService", "Out of Stock"),
        ("->", "PaymentService", "Refund Payment (Compensating Transaction)"),
        ("-->", "OrderService", "Payment Refunded"),
        ("->", "OrderService", "Release Fallback Hold (Compensating Transaction)"),
        ("->", "OrderService", "Update Order Status (CANCELLED)"),
    ]


def test_a_cancel_is_a_section_of_its_own_asked_by_the_client() -> None:
    refund = row("refund_payment", saga="cancel", detail={"payment_id": "pay_1", "status": "REFUNDED"})
    release = row("release_stock", saga="cancel")
    first, cancel = drawn(order("CANCELLED", check(), reserve(), paid(), refund, release)).sections
    assert first.title == "Successful Order Flow"
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


def test_an_order_with_no_row_yet_is_under_way() -> None:
    [section] = drawn(order("PENDING", saga_status="running")).sections
    assert section.title == "Order Saga · under way"
    assert section.compared[:2] == [
        ("Client", "->", "OrderService", "Place Order"),
        ("OrderService", "->", "OrderService", "Create Order (PENDING)"),
    ]


def test_each_section_heading_is_the_only_note_over_orderservice_and_paymentservice() -> None:
    diagram = sequence(PAYMENT_FAILED)
    assert [line for line in diagram.lines if isinstance(line, Section)] == [Section(FLOWS[1])]
    assert all(len(line.over) == 1 for line in diagram.lines if isinstance(line, Note))
    assert all(isinstance(line, Arrow) for line in diagram.lines if getattr(line, "message", None))


def test_mermaid_escapes_what_it_cannot_take_and_both_notations_stay_on_one_line() -> None:
    odd = row("process_payment", "failed", "odd;reason#1<b>\nnext", detail={"request": CHARGE, "status": "DECLINED"})
    the_order = order("PAYMENT_FAILED", check(), reserve(), odd, released())
    mermaid = render(the_order, "mermaid")
    assert "Payment Failed · odd#59;reason#35;1#60;b#62; next, 2.5 ms" in mermaid
    assert mermaid.startswith("sequenceDiagram\n    title Order ord_0123456789abcdef (PAYMENT_FAILED)")
    assert "odd;reason#1<b> next" in render(the_order)
    drawn(the_order)  # parses, every line one statement


def test_the_text_notation_is_the_specifications() -> None:
    text = to_text(sequence(SUCCESSFUL))
    assert text.startswith("title Order ord_0123456789abcdef (PLACED) - Saga Sequence Diagram\n\nparticipant Client\n")
    assert "\nnote over OrderService, PaymentService: Successful Order Flow\nClient->OrderService: " in text
    assert to_mermaid(sequence(SUCCESSFUL)).count("\n    Note over OrderService,PaymentService: ") == 1


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="png"):
        render(SUCCESSFUL, "png")


# --- drawn as SVG (the dashboard's order page, ?format=svg) ---------------------------------------------------


@pytest.mark.parametrize(
    ("flow", "the_order"), list(zip(FLOWS, (SUCCESSFUL, PAYMENT_FAILED, CIRCUIT_OPEN), strict=True)), ids=FLOWS
)
def test_the_svg_drawing_has_the_same_arrows_as_the_text(flow: str, the_order: dict[str, Any]) -> None:
    drawing, text = parse_svg(render(the_order, "svg")), parse(render(the_order))
    assert drawing.participants == PARTICIPANTS
    assert drawing.title == text.title
    assert [s.title for s in drawing.sections] == [s.title for s in text.sections]
    assert [a.compared for s in drawing.sections for a in s.arrows] == [
        a.compared for s in text.sections for a in s.arrows
    ]
    assert [a.message for a in drawing.sections[0].arrows] == [a.message for a in text.sections[0].arrows]
    assert drawing.sections[0].compared == spec()[flow].compared


def test_the_svg_drawing_escapes_every_text_from_the_order() -> None:
    hostile = '<script>alert("x")</script>&amp;\u202e'
    the_order = order("OUT_OF_STOCK", row("check_inventory", "failed", hostile, detail={"request": REQUEST}))
    the_order["items"] = [{"sku": hostile, "quantity": 1}]
    svg = render(the_order, "svg")
    assert "<script" not in svg
    root = ElementTree.fromstring(svg)  # well-formed XML
    assert not [
        e
        for e in root.iter()
        if e.tag.rsplit("}", 1)[-1] not in {"svg", "defs", "marker", "path", "title", "g", "rect", "text", "line"}
    ]
    drawing = parse_svg(svg)
    assert any(hostile.replace("\u202e", " ") in a.message for s in drawing.sections for a in s.arrows)
