"""Error answers: RFC 9457 problem+json (``Problem``), and the one mapping from the domain's errors to
theirs (``problem_for``). Every status code a domain error gets is decided here; the domain only
raises (``oms.errors``)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from oms.db import Unavailable
from oms.errors import DomainError, OmsError, UnknownSkus
from oms.fields import MAX_AMOUNT
from oms.inventory.errors import AlreadyReleased, OutOfStock, ReservationMismatch
from oms.orders.errors import Busy, KeyReused, NotCancellable, NothingToRetry, Overloaded, TooLarge
from oms.payments.errors import ChargeMismatch, NoPayment, NotRefundable, OrderVoided

PROBLEM = "application/problem+json"


class Problem(OmsError):
    """An error answer: raised in an ``api.py``, turned into problem+json by the app's handler."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.headers = headers
        self.extra = extra


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if instance:
        body["instance"] = instance
    body.update(problem.extra)
    return Response(orjson.dumps(body), status_code=problem.status, media_type=PROBLEM, headers=problem.headers)


DATABASE_RETRY_AFTER = "2"
"""Seconds a client is told to wait after a 503 for a database that is unavailable: a restarted or
promoted server takes a second or two to answer again."""


def problem_for_fault(exc: BaseException, request_id: str) -> Problem | None:
    """The answer to a fault that is not the service's own, when ``exc`` is one: the database
    unavailable (503 with ``Retry-After``). None for any other exception, which is a 500."""
    if isinstance(exc, Unavailable):
        return Problem(
            503, "Database unavailable",
            f"The service cannot use its database just now ({exc.kind}). Retry after the time given: a "
            "request retried with the same Idempotency-Key answers the one order, whether or not this "
            "one made it; a GET changes nothing.",
            type_="/problems/database-unavailable", headers={"Retry-After": DATABASE_RETRY_AFTER},
            reason=exc.kind, request_id=request_id,
        )  # fmt: skip
    return None


def problem_for(error: DomainError) -> Problem:
    """The answer to a domain error, whichever service raised it."""
    match error:
        case UnknownSkus(skus=skus):
            return Problem(422, "Unknown SKU", f"No item has SKU {error}.", type_="/problems/unknown-sku", skus=skus)
        # OrderService
        case TooLarge(total=total):
            return Problem(
                422, "Order too large", f"The order's total, {total} minor units at the last known prices, is "
                f"over the most a payment may be ({MAX_AMOUNT}); it could never be charged.",
                type_="/problems/amount-too-large", total_amount=total, max_amount=MAX_AMOUNT,
            )  # fmt: skip
        case Overloaded():
            return Problem(
                503, "Busy", "OrderService is driving as many sagas as it may at once; retry shortly.",
                type_="/problems/overloaded", headers={"Retry-After": "1"},
            )  # fmt: skip
        case KeyReused():
            return Problem(
                422, "Idempotency key reused", "This Idempotency-Key was used with a different request body.",
                type_="/problems/idempotency-key-reused",
            )  # fmt: skip
        case NotCancellable(order_id=order_id, status=status):
            return Problem(
                409, "Not cancellable", f"Order {order_id} is {status}; only a PLACED order can be cancelled.",
                type_="/problems/not-cancellable",
            )  # fmt: skip
        case Busy(order_id=order_id):
            return Problem(
                409, "Order busy", f"Another saga of order {order_id} is under way; try again shortly.",
                type_="/problems/order-busy",
            )  # fmt: skip
        case NothingToRetry(order_id=order_id, status=status):
            return Problem(
                409, "Nothing to retry", f"Order {order_id} is {status} and its sagas are over.",
                type_="/problems/nothing-to-retry",
            )  # fmt: skip
        # InventoryService
        case OutOfStock(shortages=shortages):
            return Problem(
                409, "Out of stock", f"Not enough stock for {error}.", type_="/problems/out-of-stock",
                shortages=[{"sku": s.sku, "requested": s.requested, "available": s.available} for s in shortages],
            )  # fmt: skip
        case AlreadyReleased(order_id=order_id):
            return Problem(
                409, "Reservation released",
                f"The reservation of order {order_id} was released; it cannot be made again.",
                type_="/problems/reservation-released",
            )  # fmt: skip
        case ReservationMismatch(order_id=order_id):
            return Problem(
                409, "Reservation differs", f"Order {order_id} already holds a reservation of other items.",
                type_="/problems/reservation-mismatch",
            )  # fmt: skip
        # PaymentService
        case OrderVoided(order_id=order_id):
            return Problem(
                409, "Order voided", f"Order {order_id} was voided; it is never charged.",
                type_="/problems/order-voided",
            )  # fmt: skip
        case ChargeMismatch(order_id=order_id):
            return Problem(
                409, "Charge differs", f"Order {order_id} was already charged another amount.",
                type_="/problems/charge-mismatch",
            )  # fmt: skip
        case NoPayment(order_id=order_id):
            return Problem(404, "No payment", f"Order {order_id} has no payment.")
        case NotRefundable(order_id=order_id):
            return Problem(
                409, "Not refundable", f"The payment of order {order_id} did not succeed.",
                type_="/problems/not-refundable",
            )  # fmt: skip
    raise error  # a domain error without an answer is a bug: the Gate answers 500 and logs it
