"""What the order saga needs from the world, as protocols: the two participants and the local
fallback catalog. The HTTP clients implement them; unit tests use fakes.

Errors of a call, by what the caller can know::

    CallError
    +-- Unavailable    never delivered: circuit open, connection refused (after retries)
    +-- NoAnswer       may have been processed: timeout, dropped connection, 5xx answer
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

Lines = Sequence[tuple[str, int]]


class CallError(Exception):
    def __init__(self, service: str, reason: str, detail: str = "", *, sent: int | None = None) -> None:
        super().__init__(f"{service}: {reason}" + (f" ({detail})" if detail else ""))
        self.service = service
        self.reason = reason
        self.detail = detail
        self.sent = sent
        """How many tries of the call left OrderService (the breaker refuses a try before it is
        sent: ``circuit_open`` with 0 sent nothing at all); None when not counted."""


class Unavailable(CallError):
    """The request never reached the service: nothing happened there."""


class NoAnswer(CallError):
    """The request may have been processed: its outcome is unknown."""


class Refused(Exception):
    """The service answered 4xx: it understood and said no. ``code`` is its problem type."""

    def __init__(self, status: int, code: str, detail: str = "", body: dict[str, object] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body or {}


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    unit_price: int
    currency: str
    available: int


@dataclass(frozen=True)
class CheckAnswer:
    items: list[Item]
    unknown: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Payment:
    id: str
    status: str
    decline_code: str | None
    amount: int
    currency: str


class InventoryPort(Protocol):
    async def check(self, lines: Lines) -> CheckAnswer: ...
    async def reserve(self, order_id: str, lines: Lines) -> list[Item]:
        """The items' stock after the reservation. Raises Refused("out-of-stock" | "unknown-sku" | ...)."""

    async def release(self, order_id: str) -> None: ...
    async def reservation(self, order_id: str) -> str | None:
        """The status of the order's reservation (RESERVED, RELEASED), or None if it has none."""

    async def get_item(self, sku: str) -> Item | None: ...
    async def list_items(self, cursor: str | None = None, *, limit: int = 1000) -> tuple[list[Item], str | None]:
        """A page of the catalog, by SKU, from ``cursor`` (the first page without one), and the
        cursor of the page after it (None after the last)."""


class PaymentPort(Protocol):
    async def charge(self, order_id: str, amount: int, currency: str, payment_method: str) -> Payment: ...
    async def find(self, order_id: str) -> Payment | None: ...
    async def void(self, order_id: str) -> Payment | None:
        """The order's payment if there is one; None once voided, so no charge can land later."""

    async def refund(self, order_id: str) -> Payment: ...


@dataclass(frozen=True)
class FallbackAnswer:
    items: list[Item]
    missing: list[str] = field(default_factory=list)
    short: list[str] = field(default_factory=list)


class CatalogPort(Protocol):
    """Last known stock and price per SKU, kept by OrderService for when InventoryService is out of reach."""

    async def hold(self, order_id: str, lines: Lines) -> FallbackAnswer:
        """Take the lines from the last known stock if all of it is there (idempotent per order)."""

    async def unhold(self, order_id: str) -> None: ...
    async def held(self, skus: Sequence[str] | None = None) -> dict[str, int]:
        """Units owed to orders placed on fallback data whose reservations are still to be made."""
