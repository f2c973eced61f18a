"""How OrderService's errors are answered (``oms.problems.answer_to``)."""

from __future__ import annotations

from oms.fields import MAX_AMOUNT
from oms.orders.errors import Busy, KeyReused, NotCancellable, NothingToRetry, Overloaded, TooLarge
from oms.problems import Problem, answer_to


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


@answer_to(KeyReused)
def _key_reused(error: KeyReused) -> Problem:
    return Problem(
        422, "Idempotency key reused", "This Idempotency-Key was used with a different request body.",
        type_="/problems/idempotency-key-reused",
    )  # fmt: skip


@answer_to(NotCancellable)
def _not_cancellable(error: NotCancellable) -> Problem:
    return Problem(
        409, "Not cancellable", f"Order {error.order_id} is {error.status}; only a PLACED order can be cancelled.",
        type_="/problems/not-cancellable",
    )  # fmt: skip


@answer_to(Busy)
def _busy(error: Busy) -> Problem:
    return Problem(
        409, "Order busy", f"Another saga of order {error.order_id} is under way; try again shortly.",
        type_="/problems/order-busy",
    )  # fmt: skip


@answer_to(NothingToRetry)
def _nothing_to_retry(error: NothingToRetry) -> Problem:
    return Problem(
        409, "Nothing to retry", f"Order {error.order_id} is {error.status} and its sagas are over.",
        type_="/problems/nothing-to-retry",
    )  # fmt: skip
