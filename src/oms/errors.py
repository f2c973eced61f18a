"""One tree of errors: every exception oms raises on purpose is an ``OmsError``. Under it, the domain's
refusals (``DomainError``; each service package raises its own: ``oms.orders.errors``,
``oms.inventory.errors``, ``oms.payments.errors``), faults of what a service needs (``Fault``), and a
call to another service that did not do what was asked (``CallFailure``: not reached, no answer, or
refused). None of them knows HTTP: one mapping in the API layer (``oms.edge.problems``) answers each with
its problem+json."""

from __future__ import annotations

from collections.abc import Sequence


class OmsError(Exception):
    """The root of every error oms raises on purpose."""


class DomainError(OmsError):
    """Something the domain refuses on purpose (bad input, a conflict), as opposed to a fault."""


class Fault(OmsError):
    """Something the service needs failed, not the request: its database (``oms.db.Unavailable``).
    Retried later; answered 503 at the edge."""


class CallFailure(OmsError):
    """A call to another service did not do what was asked: ``oms.orders.ports.CallError`` (not reached,
    or no answer: the outcome unknown) or ``oms.orders.ports.Refused`` (it answered no)."""


class UnknownSkus(DomainError):
    """No item has these SKUs (OrderService and InventoryService both refuse them)."""

    def __init__(self, skus: Sequence[str]) -> None:
        super().__init__(", ".join(skus))
        self.skus = list(skus)
