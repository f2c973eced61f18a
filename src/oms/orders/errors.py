"""What OrderService refuses."""

from __future__ import annotations

from oms.errors import DomainError, UnknownSkus

__all__ = [
    "Busy",
    "KeyReused",
    "NotCancellable",
    "NothingToRetry",
    "OrderError",
    "Overloaded",
    "TooLarge",
    "UnknownSkus",
]


class OrderError(DomainError):
    pass


class TooLarge(OrderError):
    """The order's total is over the largest amount PaymentService charges: it could never be paid."""

    def __init__(self, total: int) -> None:
        super().__init__(f"{total} minor units")
        self.total = total


class KeyReused(OrderError):
    """The idempotency key was used for another request body."""


class Overloaded(OrderError):
    """This process drives as many sagas as it may at once; the caller should come back shortly."""


class NotCancellable(OrderError):
    """Only a PLACED order can be cancelled."""

    def __init__(self, order_id: str, status: str) -> None:
        super().__init__(status)
        self.order_id = order_id
        self.status = status


class NothingToRetry(OrderError):
    """The order's sagas are over: there is nothing to try again."""

    def __init__(self, order_id: str, status: str) -> None:
        super().__init__(status)
        self.order_id = order_id
        self.status = status


class Busy(OrderError):
    """Another saga of this order is under way (here or in another OrderService process)."""

    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id
