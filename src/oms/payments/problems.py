"""How PaymentService's errors are answered (``oms.problems.answer_to``)."""

from __future__ import annotations

from oms.payments.errors import ChargeMismatch, NoPayment, NotRefundable, OrderVoided
from oms.problems import Problem, answer_to


@answer_to(OrderVoided)
def _order_voided(error: OrderVoided) -> Problem:
    return Problem(
        409, "Order voided", f"Order {error.order_id} was voided; it is never charged.", type_="/problems/order-voided"
    )


@answer_to(ChargeMismatch)
def _charge_mismatch(error: ChargeMismatch) -> Problem:
    return Problem(
        409, "Charge differs", f"Order {error.order_id} was already charged another amount.",
        type_="/problems/charge-mismatch",
    )  # fmt: skip


@answer_to(NoPayment)
def _no_payment(error: NoPayment) -> Problem:
    return Problem(404, "No payment", f"Order {error.order_id} has no payment.")


@answer_to(NotRefundable)
def _not_refundable(error: NotRefundable) -> Problem:
    return Problem(
        409, "Not refundable", f"The payment of order {error.order_id} did not succeed.",
        type_="/problems/not-refundable",
    )  # fmt: skip
