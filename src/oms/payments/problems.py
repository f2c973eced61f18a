"""How PaymentService's errors are answered (``oms.edge.problems``)."""

from __future__ import annotations

from oms.edge.problems import answer_simply
from oms.payments.errors import ChargeMismatch, NoPayment, NotRefundable, OrderVoided

answer_simply(
    OrderVoided, 409, "Order voided", "/problems/order-voided",
    lambda e: f"Order {e.order_id} was voided; it is never charged.",
)  # fmt: skip
answer_simply(
    ChargeMismatch, 409, "Charge differs", "/problems/charge-mismatch",
    lambda e: f"Order {e.order_id} was already charged another amount.",
)  # fmt: skip
answer_simply(NoPayment, 404, "No payment", "about:blank", lambda e: f"Order {e.order_id} has no payment.")
answer_simply(
    NotRefundable, 409, "Not refundable", "/problems/not-refundable",
    lambda e: f"The payment of order {e.order_id} did not succeed.",
)  # fmt: skip
