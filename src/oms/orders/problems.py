"""How OrderService's errors are answered (``oms.edge.problems``)."""

from __future__ import annotations

from oms.edge.problems import Problem, answer_simply, answer_to
from oms.fields import MAX_AMOUNT
from oms.orders.errors import Busy, KeyReused, NotCancellable, NothingToRetry, Overloaded, TooLarge


@answer_to(TooLarge)
def _too_large(error: TooLarge) -> Problem:
    return Problem(
        422, "Order too large", f"The order's total, {error.total} minor units at the last known prices, is "
        f"over the most a payment may be ({MAX_AMOUNT}); it could never be charged.",
        type_="/problems/amount-too-large", total_amount=error.total, max_amount=MAX_AMOUNT,
    )  # fmt: skip


@answer_to(Overloaded)
def _overloaded(error: Overloaded) -> Problem:
    return Problem(
        503, "Busy", "OrderService is driving as many sagas as it may at once; retry shortly.",
        type_="/problems/overloaded", headers={"Retry-After": "1"},
    )  # fmt: skip


answer_simply(
    KeyReused, 422, "Idempotency key reused", "/problems/idempotency-key-reused",
    lambda e: "This Idempotency-Key was used with a different request body.",
)  # fmt: skip
answer_simply(
    NotCancellable, 409, "Not cancellable", "/problems/not-cancellable",
    lambda e: f"Order {e.order_id} is {e.status}; only a PLACED order can be cancelled.",
)  # fmt: skip
answer_simply(
    Busy, 409, "Order busy", "/problems/order-busy",
    lambda e: f"Another saga of order {e.order_id} is under way; try again shortly.",
)  # fmt: skip
answer_simply(
    NothingToRetry, 409, "Nothing to retry", "/problems/nothing-to-retry",
    lambda e: f"Order {e.order_id} is {e.status} and its sagas are over.",
)  # fmt: skip
