"""What OrderService and the order saga need from the world, as protocols: the two participants,
the local fallback catalog, and the order store. The HTTP clients, ``SqlCatalog`` and
``OrderRepository`` implement them; unit tests use the fakes of tests/fakes.py.

Errors of a call, by what the caller can know::

    CallError
    +-- Unavailable    never delivered: circuit open, connection refused (after retries)
    +-- NoAnswer       may have been processed: timeout, dropped connection, 5xx answer
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from oms.edge.paging import Keyset, Page
from oms.errors import CallFailure

if TYPE_CHECKING:
    from oms.orders.saga import OrderContext, OrderState
    from oms.saga.engine import LogEntry, Logged

Lines = Sequence[tuple[str, int]]


class CallError(CallFailure):
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


class Refused(CallFailure):
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

    async def remember(self, items: Sequence[Item]) -> None:
        """Take the items as last known (a catalog sync, an answer of InventoryService); holds stay."""

    async def prices(self) -> dict[str, int]:
        """The last known unit price of every SKU."""


ORDERS = Keyset("orders", ("created_at", "id"))
"""How ``OrderStore.recent`` pages: newest first, and by id among orders made in the same microsecond."""


class OrderStore(Protocol):
    """Orders, their saga logs and their sagas' leases, as OrderService keeps them. Orders are
    answered as the API shows them (``OrderRepository.order_view``'s dicts); times are the ISO-8601
    UTC text of ``oms.utc.utc_now``, compared as text."""

    async def create(
        self,
        *,
        order_id: str,
        idempotency_key: str | None,
        request_hash: str,
        customer_id: str,
        payment_method: str,
        lines: Lines,
        owner: str | None = None,
        lease_until: str | None = None,
        watch: bool = False,
        trace_context: str | None = None,
    ) -> bool:
        """Store the order PENDING, its order saga running, leased to ``owner`` until ``lease_until``.
        False, storing nothing, when ``idempotency_key`` names an order already. ``watch``: keep the
        order as written in memory for ``take_watched``."""

    def take_watched(self, order_id: str) -> dict[str, Any] | None:
        """The order as last written by this process, if it was watched (and stop watching it)."""

    async def by_key(self, key: str) -> Mapping[str, Any] | None:
        """The order the idempotency key names: its ``id``, ``request_hash`` and ``created_at``."""

    async def forget_key(self, order_id: str, key: str) -> None:
        """The key no longer names this order (it expired): a new order may take it."""

    async def get(self, order_id: str, *, with_saga: bool = True) -> dict[str, Any] | None: ...
    async def recent(
        self,
        *,
        status: str | None,
        limit: int,
        offset: int = 0,
        customer_id: str | None = None,
        after: Sequence[str] | None = None,
    ) -> Page[dict[str, Any]]:
        """Orders by ``ORDERS``, without their saga logs: of one status, of one customer, when given."""

    async def activity(
        self, *, since: str, customer_id: str | None = None, sample: int = 20_000
    ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """The dashboard's figures (``oms.dashboard.stats``), see ``OrderRepository.activity``."""

    async def record(
        self,
        order_id: str,
        saga: str,
        entry: LogEntry | None,
        state: OrderState,
        *,
        earlier: Sequence[LogEntry] = (),
        catalog: Sequence[Item] = (),
    ) -> None:
        """Write saga ``saga``'s rows (``earlier``, then ``entry``), the order's new ``state`` and the
        catalog's last known stock, all or nothing. An unknown outcome asked again (the same step,
        the same reason, on the saga's last row) is counted on that row instead of written again."""

    async def load_saga(self, order_id: str) -> tuple[OrderContext, list[Logged]] | None:
        """The context of the saga in charge, rebuilt from the order, and that saga's log rows."""

    async def unfinished(self, *, now: str, limit: int = 100, skip: Sequence[str] = ()) -> list[str]:
        """Sagas running or waiting whose lease is free or lapsed, oldest order first; none named in ``skip``."""

    async def claim(self, order_id: str, *, owner: str, until: str, now: str, statuses: Sequence[str]) -> bool:
        """Take the saga's lease if its status is one of ``statuses`` and the lease is free, lapsed or ours."""

    async def begin(self, order_id: str, saga: str, *, status: str, owner: str, until: str, now: str) -> bool:
        """Start saga ``saga`` on an order of ``status`` whose saga is over, or waits with its lease
        free (leased to ``owner`` until ``until``). False when the order is not in that state."""

    async def let_go(self, order_id: str, owner: str) -> None:
        """Give up ``owner``'s lease on the saga, so recovery takes it up at its next pass."""

    async def free_leases_of(self, prefix: str) -> int:
        """Free the leases of running or waiting sagas whose owner starts with ``prefix``. Returns how many."""

    async def renew(self, owner: str, until: str, order_ids: Sequence[str]) -> None:
        """Extend ``owner``'s leases on the running sagas of ``order_ids``, the ones it is driving now
        (a waiting saga's lease is left to lapse, and so is one whose driver stopped)."""
