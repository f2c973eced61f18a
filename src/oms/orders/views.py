"""What a customer is shown of its own order: :func:`for_customer`, which the API applies to
``GET /orders/{id}``, to each order of ``GET /orders`` and to the order ``GET /orders/{id}/diagram``
draws, when the caller is a customer (an admin sees the order as stored).

A customer learns each step of its sagas, its outcome, a reason in the words below and how long it
took; never what the services told each other (a row's ``detail``: stock levels, a circuit
breaker's or an exception's message, a URL, a host). The fields shown are named here, so a field
added to the order later reaches a customer only once it is named here too; a reason not known here
is shown as ``internal_error``. The diagram is drawn from this view, so it cannot show more than it.

The customer's reasons (``REASONS``):

- ``out_of_stock``, ``unknown_sku``: with the row's ``detail`` ``{"skus": [...]}``, which of the
  order's own SKUs, when known (never how many there are); ``mixed_currencies``.
- ``card_declined``, ``insufficient_funds``, ``invalid_payment_method``, or ``payment_declined``
  for a decline without a code of these; ``payment_refunded``.
- ``inventory_unavailable``, ``payment_unavailable``: the service was out of reach (or did not
  answer), and the order could not go on; ``..._retrying``: the saga waits and asks again.
- ``inventory_unavailable_fallback``: the stock was checked against the last known stock;
  ``reservation_deferred``: the stock is reserved once InventoryService answers again.
- ``rejected``: a service refused the request for another reason; ``refund_failed``,
  ``nothing_to_refund``, ``nothing_held`` (a cancel); ``internal_error``: a fault of ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from oms.orders.saga import PAY, OrderStatus

OUT_OF_STOCK = "out_of_stock"
UNKNOWN_SKU = "unknown_sku"
MIXED_CURRENCIES = "mixed_currencies"
DECLINES = frozenset({"card_declined", "insufficient_funds", "invalid_payment_method"})
"""PaymentService's decline codes a customer is told as they are; any other decline is ``payment_declined``."""
PAYMENT_DECLINED = "payment_declined"
PAYMENT_REFUNDED = "payment_refunded"
INVENTORY_UNAVAILABLE = "inventory_unavailable"
INVENTORY_RETRYING = "inventory_unavailable_retrying"
FALLBACK = "inventory_unavailable_fallback"
RESERVATION_DEFERRED = "reservation_deferred"
PAYMENT_UNAVAILABLE = "payment_unavailable"
PAYMENT_RETRYING = "payment_unavailable_retrying"
REFUND_FAILED = "refund_failed"
NOTHING_TO_REFUND = "nothing_to_refund"
NOTHING_HELD = "nothing_held"
REJECTED = "rejected"
INTERNAL_ERROR = "internal_error"

UNAVAILABLE = frozenset({INVENTORY_UNAVAILABLE, INVENTORY_RETRYING, PAYMENT_UNAVAILABLE, PAYMENT_RETRYING})
"""The reasons that say a service was out of reach (the diagram draws their calls unanswered)."""

REASONS = frozenset(
    {OUT_OF_STOCK, UNKNOWN_SKU, MIXED_CURRENCIES, PAYMENT_DECLINED, PAYMENT_REFUNDED, FALLBACK, RESERVATION_DEFERRED,
     REFUND_FAILED, NOTHING_TO_REFUND, NOTHING_HELD, REJECTED, INTERNAL_ERROR}
) | DECLINES | UNAVAILABLE  # fmt: skip
"""Every reason a customer may be shown."""

# The reasons the sagas write (oms.orders.saga), in the customer's words. Not here: "fallback:<error>"
# (FALLBACK), "error:<exception>" (INTERNAL_ERROR), and a decline code of PaymentService's.
_SAID = {
    "out_of_stock": OUT_OF_STOCK,
    "out_of_stock_after_fallback": OUT_OF_STOCK,
    "insufficient_fallback_stock": OUT_OF_STOCK,
    "unknown_sku": UNKNOWN_SKU,
    "mixed_currencies": MIXED_CURRENCIES,
    "payment_refunded": PAYMENT_REFUNDED,
    "no_fallback_data": INVENTORY_UNAVAILABLE,
    "inventory_unavailable": INVENTORY_UNAVAILABLE,
    "inventory_no_answer": INVENTORY_UNAVAILABLE,
    "release_failed": INVENTORY_UNAVAILABLE,
    "reservation_deferred": RESERVATION_DEFERRED,
    "payment_unavailable": PAYMENT_UNAVAILABLE,
    "payment_timeout": PAYMENT_UNAVAILABLE,
    "payment_outcome_unknown": PAYMENT_RETRYING,
    "refund_failed": REFUND_FAILED,
    "nothing_to_refund": NOTHING_TO_REFUND,
    "nothing_held": NOTHING_HELD,
    "inventory_refused": REJECTED,
    "reservation_refused": REJECTED,
    "payment_refused": REJECTED,
    "unpriced_reservation": INTERNAL_ERROR,
    **{code: code for code in DECLINES},
}
_RETRYING = {INVENTORY_UNAVAILABLE: INVENTORY_RETRYING, PAYMENT_UNAVAILABLE: PAYMENT_RETRYING}

ORDER_FIELDS = (
    "id", "status", "saga_status", "customer_id", "payment_method", "items", "total_amount", "currency",
    "inventory_check", "reservation", "payment_id", "failure_reason", "pending_reason", "created_at", "updated_at",
    "trace_id", "saga",
)  # fmt: skip
"""The order's fields a customer is shown. Not ``trace_url``: it names the host of a tracing UI."""
LINE_FIELDS = ("sku", "name", "quantity", "unit_price", "amount")
ROW_FIELDS = ("saga", "kind", "name", "outcome", "reason", "attempt", "started_at", "ended_at", "duration_ms")
"""A saga log row's fields a customer is shown, and ``detail``: ``{}``, or the SKUs its reason is about."""


def customer_reason(reason: Any, *, waiting: bool = False, declined: bool = False) -> str | None:
    """``reason``, a saga's, in the customer's words (one of ``REASONS``, or None). ``waiting``: the
    saga waits and asks again (an ``unknown`` outcome, a ``pending_reason``); ``declined``: the
    reason is why a charge failed, so a code not known here is a decline of PaymentService's."""
    if reason is None or reason == "live_check":  # a fallback hold there was none of: nothing to say
        return None
    text = str(reason)
    said = FALLBACK if text.startswith("fallback:") else _SAID.get(text)
    if said is None:
        said = PAYMENT_DECLINED if declined and not text.startswith("error:") else INTERNAL_ERROR
    return _RETRYING.get(said, said) if waiting else said


def for_customer(order: Mapping[str, Any]) -> dict[str, Any]:
    """The order as its customer is shown it (a new dict: ``order`` is left as it is)."""
    own = [str(line.get("sku")) for line in _mappings(order.get("items"))]
    view: dict[str, Any] = {name: order[name] for name in ORDER_FIELDS if name in order}
    if "items" in view:
        view["items"] = [{name: line.get(name) for name in LINE_FIELDS} for line in _mappings(order.get("items"))]
    if "failure_reason" in view:
        failed_to_pay = order.get("status") == OrderStatus.PAYMENT_FAILED
        view["failure_reason"] = customer_reason(order["failure_reason"], declined=failed_to_pay)
    if "pending_reason" in view:
        view["pending_reason"] = customer_reason(order["pending_reason"], waiting=True)
    if "saga" in view:
        view["saga"] = [_row(row, own) for row in _mappings(order.get("saga"))]
    return view


def _row(row: Mapping[str, Any], own: list[str]) -> dict[str, Any]:
    outcome = row.get("outcome")
    declined = row.get("name") == PAY and outcome == "failed"
    reason = customer_reason(row.get("reason"), waiting=outcome == "unknown", declined=declined)
    shown = {name: row.get(name) for name in ROW_FIELDS}
    shown["reason"] = reason
    about = _skus(row.get("detail"), own) if reason in (OUT_OF_STOCK, UNKNOWN_SKU) else []
    shown["detail"] = {"skus": about} if about else {}
    return shown


def _skus(detail: Any, own: list[str]) -> list[str]:
    """The order's own SKUs that a row's detail says are short or unknown, in the order's order.
    Whatever the detail holds, nothing but the order's own SKUs comes out of here."""
    if not isinstance(detail, Mapping):
        return []
    named = set(_strings(detail.get("unknown")))
    fallback = detail.get("fallback")
    if isinstance(fallback, Mapping):
        named.update(_strings(fallback.get("short")))
    named.update(_short(detail))
    return [sku for sku in own if sku in named]


def _short(detail: Mapping[str, Any]) -> set[str]:
    """The SKUs of a live check's answer with fewer units than asked for (those owed to orders
    placed on fallback data taken off), as the order saga judged them."""
    request = detail.get("request")
    wanted: dict[str, Any] = {
        str(line.get("sku")): line.get("quantity")
        for line in _mappings(request.get("items") if isinstance(request, Mapping) else None)
    }
    owed = detail.get("owed_to_fallback_orders")
    owed = owed if isinstance(owed, Mapping) else {}
    short = set()
    for item in _mappings(detail.get("answer")):
        sku = str(item.get("sku"))
        try:
            if int(item.get("available", 0)) - int(owed.get(sku, 0)) < int(wanted.get(sku, 0)):
                short.add(sku)
        except (TypeError, ValueError, OverflowError):
            continue
    return short


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list | tuple) else []


def _strings(value: Any) -> Iterable[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list | tuple) else []
