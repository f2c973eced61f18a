"""What PaymentService refuses; each is about one order's payment."""

from __future__ import annotations

from oms.errors import DomainError


class PaymentError(DomainError):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id


class OrderVoided(PaymentError):
    """The order was voided before this charge arrived; it is never charged."""


class ChargeMismatch(PaymentError):
    """The order was charged already, for another amount or currency."""


class NoPayment(PaymentError):
    """The order has no payment (a voided order has none)."""


class NotRefundable(PaymentError):
    """The order's payment did not succeed."""
