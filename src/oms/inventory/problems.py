"""How InventoryService's errors are answered (``oms.problems.answer_to``)."""

from __future__ import annotations

from oms.inventory.errors import AlreadyReleased, OutOfStock, ReservationMismatch
from oms.problems import Problem, answer_to


@answer_to(OutOfStock)
def _out_of_stock(error: OutOfStock) -> Problem:
    return Problem(
        409, "Out of stock", f"Not enough stock for {error}.", type_="/problems/out-of-stock",
        shortages=[{"sku": s.sku, "requested": s.requested, "available": s.available} for s in error.shortages],
    )  # fmt: skip


@answer_to(AlreadyReleased)
def _already_released(error: AlreadyReleased) -> Problem:
    return Problem(
        409, "Reservation released",
        f"The reservation of order {error.order_id} was released; it cannot be made again.",
        type_="/problems/reservation-released",
    )  # fmt: skip


@answer_to(ReservationMismatch)
def _reservation_mismatch(error: ReservationMismatch) -> Problem:
    return Problem(
        409, "Reservation differs", f"Order {error.order_id} already holds a reservation of other items.",
        type_="/problems/reservation-mismatch",
    )  # fmt: skip
