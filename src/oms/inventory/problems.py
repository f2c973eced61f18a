"""How InventoryService's errors are answered (``oms.edge.problems``)."""

from __future__ import annotations

from oms.edge.problems import Problem, answer_simply, answer_to
from oms.inventory.errors import AlreadyReleased, OutOfStock, ReservationMismatch


@answer_to(OutOfStock)
def _out_of_stock(error: OutOfStock) -> Problem:
    return Problem(
        409, "Out of stock", f"Not enough stock for {error}.", type_="/problems/out-of-stock",
        shortages=[{"sku": s.sku, "requested": s.requested, "available": s.available} for s in error.shortages],
    )  # fmt: skip


answer_simply(
    AlreadyReleased, 409, "Reservation released", "/problems/reservation-released",
    lambda e: f"The reservation of order {e.order_id} was released; it cannot be made again.",
)  # fmt: skip
answer_simply(
    ReservationMismatch, 409, "Reservation differs", "/problems/reservation-mismatch",
    lambda e: f"Order {e.order_id} already holds a reservation of other items.",
)  # fmt: skip
