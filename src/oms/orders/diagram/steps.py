"""Each step and compensation of the order's sagas, from its row of the saga log, as the calls
it made (arrows) and what the specification does not show (notes).

A row as an admin reads it says what each call met in its ``detail``; a row of a customer's view
(``oms.orders.views``) has none, only a reason in the customer's words (and, for a shortage, the
SKUs): its calls are drawn from that reason alone, so the drawing tells no more than the view."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from oms.orders.diagram.notation import INVENTORY, ORDERS, PAYMENTS, Pen
from oms.orders.saga import CANCEL, CHECK, ORDER, PAY, RECONCILE, RESERVE
from oms.orders.views import FALLBACK, INTERNAL_ERROR, UNAVAILABLE

Row = Mapping[str, Any]
"""A row of the saga log, as ``GET /orders/{id}`` shows it."""


def _ms(row: Row) -> str:
    return f"{float(row.get('duration_ms') or 0):.1f} ms"


def span(rows: Sequence[Row]) -> str:
    """Wall time from the first row's start to the last row's end."""
    try:
        seconds = (
            datetime.fromisoformat(str(rows[-1]["ended_at"])) - datetime.fromisoformat(str(rows[0]["started_at"]))
        ).total_seconds()
    except (KeyError, IndexError, ValueError):
        return ""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"


def detail_of(row: Row) -> Mapping[str, Any]:
    detail = row.get("detail")
    return detail if isinstance(detail, Mapping) else {}


def _error(detail: Mapping[str, Any]) -> str | None:
    """What a failed call met: its error (circuit_open, timeout, ...) or the problem answered."""
    found = detail.get("error") or detail.get("problem")
    return str(found) if found else None


def _tries(detail: Mapping[str, Any]) -> str | None:
    """A call retried (``sent``: its tries that left OrderService, as the client counts them)."""
    sent = detail.get("sent")
    return f"{sent} tries" if isinstance(sent, int) and sent > 1 else None


def _unreached(error: str | None) -> str:
    """A failed call's reply: never delivered, or delivered with no answer."""
    return "Unreachable" if error in ("connection_refused", "circuit_open") else "No Answer"


def _failed(detail: Mapping[str, Any], reason: Any) -> str:
    """A failed call's reply from what it met; in a customer's view, which does not say, from its
    reason: ``Unavailable`` for a service out of reach."""
    error = _error(detail)
    if error is None and reason in UNAVAILABLE:
        return "Unavailable"
    return _unreached(error)


def _circuit_open(pen: Pen, detail: Mapping[str, Any], target: str, request: str, reply: str, *extras: object) -> None:
    """A call the open circuit refused, as the specification draws it: the breaker answered."""
    pen.call(target, f"{request} (Circuit Open)", reply, *extras)
    sent = detail.get("sent")
    if not sent:  # 0, or not counted (rows written before the client counted its tries)
        pen.note(ORDERS, "Circuit open: no request left OrderService")
    else:
        tries = "1 try" if sent == 1 else f"{sent} tries"
        pen.note(ORDERS, f"{tries} failed, then the circuit opened: the last try never left OrderService")


def _check(pen: Pen, row: Row) -> None:
    detail = detail_of(row)
    live, fallback = detail.get("live"), detail.get("fallback")
    reason = str(row.get("reason") or "")
    if reason == FALLBACK:  # a customer's view: went on with the last known stock, nothing of it said
        pen.call(INVENTORY, "Check Inventory", "Unavailable - Using Fallback", _ms(row))
        pen.own("Proceed with fallback data")
        return
    if live is not None or fallback is not None or reason.startswith("fallback:"):
        error = _error(live) if isinstance(live, Mapping) else reason.partition(":")[2]
        if error == "circuit_open":
            _circuit_open(pen, live or {}, INVENTORY, "Check Inventory", "Circuit Open - Using Fallback", _ms(row))
        else:
            pen.call(INVENTORY, "Check Inventory", f"{_unreached(error)} - Using Fallback", error, _ms(row))
            tries = _tries(live) if isinstance(live, Mapping) else None
            pen.note(ORDERS, f"InventoryService out of reach: {error}" + (f" ({tries})" if tries else ""))
        fallback = fallback if isinstance(fallback, Mapping) else {}
        known = ", ".join(f"{i.get('sku')} {i.get('available')}" for i in fallback.get("items") or ())
        if row.get("outcome") == "done":
            pen.own("Proceed with fallback data", f"last known stock {known}" if known else None)
            return
        pen.own("Fallback Refused", row.get("reason"))
        missing, short = fallback.get("missing") or [], fallback.get("short") or []
        pen.note(
            ORDERS,
            f"No last known stock of {', '.join(missing)}" if missing else None,
            f"Short of {', '.join(short)} (last known stock {known})" if short else None,
        )
        return
    outcome = row.get("outcome")
    if outcome == "done":
        pen.call(INVENTORY, "Check Inventory", "Inventory Available", _ms(row))
        if detail.get("reservation"):
            pen.note(ORDERS, f"The check said {detail.get('refused')}, but the order holds its reservation already")
    elif reason == "out_of_stock":
        pen.call(INVENTORY, "Check Inventory", "Out of Stock", _ms(row))
        pen.note(INVENTORY, *_shortages(detail))
    elif outcome == "failed" and not (_error(detail) is None and reason in UNAVAILABLE):
        pen.call(INVENTORY, "Check Inventory", "Inventory Refused", reason, _error(detail), _ms(row))
    else:
        pen.call(INVENTORY, "Check Inventory", _failed(detail, reason), reason, _error(detail), _ms(row))


def _shortages(detail: Mapping[str, Any]) -> list[str]:
    if "skus" in detail:  # a customer's view: which SKUs, not how many
        return [f"{sku}: out of stock" for sku in detail["skus"]]
    request = detail.get("request")
    wanted = {i["sku"]: i["quantity"] for i in request.get("items", ())} if isinstance(request, Mapping) else {}
    owed = detail.get("owed_to_fallback_orders") or {}
    lines = []
    for item in detail.get("answer") or ():
        sku, available = item.get("sku"), int(item.get("available", 0))
        if available - int(owed.get(sku, 0)) < int(wanted.get(sku, 0)):
            held = f", {owed[sku]} of them owed to orders placed on fallback data" if owed.get(sku) else ""
            lines.append(f"{sku}: {wanted.get(sku, 0)} wanted, {available} available{held}")
    return lines


def _reserve(pen: Pen, row: Row, request: str = "Reserve Inventory") -> None:
    detail, outcome, reason = detail_of(row), row.get("outcome"), row.get("reason")
    error = detail.get("error")
    if outcome == "skipped":
        pen.note(ORDERS, "Reserve Inventory skipped: the reservation is deferred until InventoryService answers")
    elif outcome == "done":
        pen.call(INVENTORY, request, "Inventory Reserved", _ms(row))
    elif error == "circuit_open":
        _circuit_open(pen, detail, INVENTORY, request, "Circuit Open", reason, _ms(row))
    elif error:
        pen.call(INVENTORY, request, _unreached(str(error)), reason, error, _tries(detail), _ms(row))
        if outcome == "uncertain":
            pen.note(ORDERS, "It may have been reserved: released below, to be sure")
    elif reason in ("out_of_stock", "out_of_stock_after_fallback"):
        pen.call(INVENTORY, request, "Out of Stock", reason, _ms(row))
    elif reason in UNAVAILABLE:
        pen.call(INVENTORY, request, "Unavailable", reason, _ms(row))
    else:
        pen.call(INVENTORY, request, "Reservation Refused", reason, _error(detail), _ms(row))


def _found(asked: Any, reason: Any) -> tuple[str, str | None]:
    """The reply to a query for the order's payment."""
    if isinstance(asked, Mapping):
        return _unreached(_error(asked)), _error(asked)
    return {
        "SUCCEEDED": ("Payment Successful", "found"),
        "DECLINED": ("Payment Failed", f"found, {reason}"),
        "REFUNDED": ("Payment Refunded", "found"),
        "no payment": ("No Payment", None),
    }.get(str(asked), (str(asked), None))


_CHARGE, _QUERY, _VOID = "Process Payment", "Query Payment (outcome unknown)", "Void Payment"


def _pay(pen: Pen, row: Row) -> None:
    detail, reason = detail_of(row), row.get("reason")
    calls: list[tuple[str, str, str | None]] = []  # (request, reply, what the reply adds)
    charged = "request" in detail
    # Recovery asks first (its detail starts with what it was told); a charge asks after a timeout.
    if next(iter(detail), None) == "asked":
        calls.append((_QUERY, *_found("no payment" if charged else detail["asked"], reason)))
    error = detail.get("error") if charged else None
    if charged and error is None:
        paid = detail.get("status") == "SUCCEEDED"
        problem = f"{reason}, {detail['problem']}" if detail.get("problem") else reason
        calls.append((_CHARGE, "Payment Successful", None) if paid else (_CHARGE, "Payment Failed", problem))
    elif charged and error in ("circuit_open", "connection_refused"):
        calls.append((_CHARGE, _unreached(error), f"{reason}, {error}"))
    elif charged:
        calls.append((_CHARGE, "No Answer", error))
        settle = detail.get("settle")
        if "asked" in detail:
            calls.append((_QUERY, *_found(detail["asked"], reason)))
        elif isinstance(settle, Mapping):
            calls.append((_QUERY, *_found(settle, reason)))
        if "voided" in detail:
            landed = _found(detail.get("status"), reason)  # the void answered a charge that had landed
            calls.append((_VOID, *(("Payment Voided", "no charge can land") if detail["voided"] else landed)))
        elif isinstance(settle, Mapping) and "asked" in detail:
            calls.append((_VOID, *_found(settle, reason)))
    elif not calls and row.get("outcome") == "done":  # a customer's view: what was asked is not said
        calls.append((_CHARGE, "Payment Successful", None))
    elif not calls:  # no call on record: OrderService failed before it could make one; or a customer's view
        reply = "Error" if reason == INTERNAL_ERROR or str(reason).startswith("error:") else "Payment Failed"
        calls.append((_CHARGE, "Unavailable" if reason in UNAVAILABLE else reply, str(reason)))
    for index, (request, reply, added) in enumerate(calls):
        took = _ms(row) if index == len(calls) - 1 else None
        if request == _CHARGE and error == "circuit_open":
            _circuit_open(pen, detail, PAYMENTS, request, "Circuit Open", added, took)
            continue
        tries = _tries(detail) if request == _CHARGE and error else None
        pen.call(PAYMENTS, request, reply, added, tries, took)
        if request == _CHARGE and reply == "No Answer":
            pen.note(PAYMENTS, "The charge may have landed: asked for before anything is decided")


def _refund(pen: Pen, row: Row) -> None:
    detail, outcome = detail_of(row), row.get("outcome")
    if outcome == "done":
        pen.call(PAYMENTS, "Refund Payment", "Payment Refunded", _ms(row))
    elif outcome == "skipped":
        pen.call(PAYMENTS, "Refund Payment", "Nothing to Refund", _error(detail), _ms(row))
    else:
        reason = row.get("reason")
        pen.call(PAYMENTS, "Refund Payment", _failed(detail, reason), reason, _error(detail), _ms(row))


def _release(pen: Pen, row: Row) -> None:
    detail, outcome = detail_of(row), row.get("outcome")
    if outcome == "skipped":
        pen.note(ORDERS, "Release Inventory skipped: the order holds no stock")
    elif outcome == "done":
        pen.call(INVENTORY, "Release Inventory", "Inventory Released", _ms(row))
    else:
        error, reason = _error(detail), row.get("reason")
        pen.call(INVENTORY, "Release Inventory", _failed(detail, reason), reason, error, _ms(row))


def _reserve_deferred(pen: Pen, row: Row) -> None:
    _reserve(pen, row, "Reserve Inventory (deferred)")


def _other(pen: Pen, row: Row) -> None:
    pen.own(str(row.get("name")), row.get("outcome"), row.get("reason"), _ms(row))


_STEPS = {
    (ORDER, CHECK): _check,
    (ORDER, RESERVE): _reserve,
    (ORDER, PAY): _pay,
    (RECONCILE, "reserve_deferred"): _reserve_deferred,
    (CANCEL, "refund_payment"): _refund,
    (CANCEL, "release_stock"): _release,
}


def step(pen: Pen, saga: str, row: Row) -> None:
    """A step of saga ``saga`` from its row: the calls it made, and what they were answered."""
    _STEPS.get((saga, str(row.get("name"))), _other)(pen, row)


# A compensation: whom it calls, its request, its reply when done and when not.
_UNDO = {
    "release_inventory": (INVENTORY, "Release Inventory (Compensating Transaction)", "Inventory Released"),
    "refund_payment": (PAYMENTS, "Refund Payment (Compensating Transaction)", "Payment Refunded"),
    "release_fallback_hold": (ORDERS, "Release Fallback Hold (Compensating Transaction)", ""),
}


def undo(pen: Pen, group: Sequence[Row], gave_up: bool) -> None:
    """A compensation from its consecutive attempts' rows: its call, and a note of its tries."""
    final = group[-1]
    name, detail, done = str(final.get("name")), detail_of(final), final.get("outcome") == "done"
    target, request, reply = _UNDO.get(name, (ORDERS, f"{name} (Compensating Transaction)", ""))
    failed = () if done else (final.get("reason"), _error(detail), _tries(detail))
    if target == ORDERS:
        pen.own(request, *(("done",) if done else failed), _ms(final))
    else:
        pen.call(target, request, reply if done else _failed(detail, final.get("reason")), *failed, _ms(final))
    tries = int(final.get("attempt") or 1)
    if tries > 1 or len(group) > 1:
        logged = ", ".join(f"{r.get('attempt')} {r.get('outcome')}" for r in group)
        pen.note(
            ORDERS,
            f"{name}: {tries} tries over {span(group)} (logged: {logged})",
            "Gave up: COMPENSATION_FAILED; oms order retry tries again" if gave_up else None,
        )


def waited(pen: Pen, row: Row) -> None:
    """A step whose outcome could not be learnt: the saga waits, and asks again later."""
    tries = int(row.get("attempt") or 1)
    asked = f"asked {tries} times over {span([row])}" if tries > 1 else "asked once"
    pen.note(ORDERS, f"Outcome unknown ({row.get('reason')}): {asked}; the saga waits and asks again")
