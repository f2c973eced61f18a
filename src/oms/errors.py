"""The root of the domain's errors. Each service package raises its own tree (``oms.orders.errors``,
``oms.inventory.errors``, ``oms.payments.errors``); none of them knows HTTP: one mapping in the API
layer (``oms.problems``) answers each with its problem+json."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """Something the domain refuses on purpose (bad input, a conflict), as opposed to a fault."""


class Fault(Exception):
    """Something the service needs failed, not the request: its database (``oms.db.Unavailable``).
    Retried later; answered 503 at the edge."""


class UnknownSkus(DomainError):
    """No item has these SKUs (OrderService and InventoryService both refuse them)."""

    def __init__(self, skus: Sequence[str]) -> None:
        super().__init__(", ".join(skus))
        self.skus = list(skus)
