"""What InventoryService refuses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from oms.errors import DomainError, UnknownSkus

__all__ = ["AlreadyReleased", "InventoryError", "OutOfStock", "ReservationMismatch", "Shortage", "UnknownSkus"]


class InventoryError(DomainError):
    pass


@dataclass(frozen=True)
class Shortage:
    sku: str
    requested: int
    available: int


class OutOfStock(InventoryError):
    def __init__(self, shortages: Sequence[Shortage]) -> None:
        super().__init__(", ".join(s.sku for s in shortages))
        self.shortages = list(shortages)


class ReservationRefused(InventoryError):
    """A reservation of order ``order_id`` that cannot be made."""

    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id


class AlreadyReleased(ReservationRefused):
    """The order's reservation was released (or released before it was made): it cannot be made now."""


class ReservationMismatch(ReservationRefused):
    """The order already holds a reservation of other lines."""
