"""The test suite's one set of fakes: the order saga's participants and fallback catalog
(``oms.orders.ports``) and the saga log (``oms.saga.engine.SagaLog``), in memory.

Each answers as the real thing does, call for call, and tests/integration/test_contracts.py holds
it to that, running the same cases against the fake and against the real one on SQLite and on
PostgreSQL:

- ``FakeInventory``: InventoryService (``oms.inventory.store`` behind its API) as
  ``InventoryClient`` sees it: a reservation per order, made whole or refused, the same answer when
  repeated; released once, for good (a release before the reservation refuses it later).
- ``FakePayments``: PaymentService (``oms.payments.store``) as ``PaymentClient`` sees it: at most
  one charge per order, declined by the payment method as the store declines it, a repeat answered
  with the first charge; a void before any charge makes sure none is ever made.
- ``FakeCatalog``: ``SqlCatalog``, the fallback catalog: last known stock less the units held for
  orders placed on it.
- ``MemoryLog``: ``OrderRepository.record``: rows in the order written, an unknown outcome asked
  again (the same step, the same reason) counted on its row instead of written again.

What no fake has of its own is a transport: the failures of a call (``Unavailable``, ``NoAnswer``)
are set on the fake by the test (``check_error``, ``reserve_error``, ``release_failures``,
``charge_error``, ``answer_lost``, ``find_error``), and then raised in place of the call or, for
``answer_lost``, after it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from oms.orders.ports import CheckAnswer, FallbackAnswer, Item, Lines, Payment, Refused, Unavailable
from oms.payments.store import PaymentStatus, decline_code
from oms.saga.engine import LogEntry, Logged, SagaEnd

RESERVED = "RESERVED"
RELEASED = "RELEASED"


class FakeInventory:
    """``InventoryPort``, answering as InventoryService does."""

    def __init__(self, items: Iterable[Item] = ()) -> None:
        self.stock: dict[str, Item] = {item.sku: item for item in items}
        """The catalog, with the units not reserved as ``available``."""
        self.reservations: dict[str, tuple[str, list[tuple[str, int]]]] = {}
        """Per order: RESERVED or RELEASED, and the lines (by SKU; none for a release that came first)."""
        self.check_error: Exception | None = None
        """Raised by check and reservation: InventoryService out of reach for what OrderService asks."""
        self.reserve_error: Exception | None = None
        self.release_failures = 0
        """Releases that fail (circuit open) before one gets through."""
        self.calls: list[str] = []

    def put(self, item: Item) -> None:
        """Create or replace an item (PUT /items/{sku}); the units reserved stay reserved."""
        self.stock[item.sku] = item

    @property
    def reserved(self) -> dict[str, list[tuple[str, int]]]:
        """The lines of each reservation in place."""
        return {order: lines for order, (status, lines) in self.reservations.items() if status == RESERVED}

    async def check(self, lines: Lines) -> CheckAnswer:
        self.calls.append("check")
        if self.check_error:
            raise self.check_error
        return CheckAnswer(
            [self.stock[s] for s, _ in lines if s in self.stock], [s for s, _ in lines if s not in self.stock]
        )

    def _now(self, skus: Iterable[str]) -> list[Item]:
        return [self.stock[sku] for sku in skus if sku in self.stock]

    async def reserve(self, order_id: str, lines: Lines) -> list[Item]:
        self.calls.append("reserve")
        if self.reserve_error:
            raise self.reserve_error
        ordered = sorted(lines)
        made = self.reservations.get(order_id)
        if made is not None:
            status, held = made
            if status == RELEASED:
                raise Refused(409, "reservation-released")
            if held != ordered:
                raise Refused(409, "reservation-mismatch")
            return self._now(sku for sku, _ in ordered)  # the first answer: nothing taken again
        unknown = [sku for sku, _ in ordered if sku not in self.stock]
        if unknown:
            raise Refused(422, "unknown-sku", body={"skus": unknown})
        short = [(sku, q) for sku, q in ordered if self.stock[sku].available < q]
        if short:
            shortages = [{"sku": sku, "requested": q, "available": self.stock[sku].available} for sku, q in short]
            raise Refused(409, "out-of-stock", body={"shortages": shortages})
        for sku, quantity in ordered:
            self.stock[sku] = replace(self.stock[sku], available=self.stock[sku].available - quantity)
        self.reservations[order_id] = (RESERVED, ordered)
        return self._now(sku for sku, _ in ordered)

    async def release(self, order_id: str) -> None:
        self.calls.append("release")
        if self.release_failures:
            self.release_failures -= 1
            raise Unavailable("inventory", "circuit_open")
        made = self.reservations.get(order_id)
        if made is None:
            self.reservations[order_id] = (RELEASED, [])  # refuses a reservation that arrives later
            return
        status, lines = made
        if status == RESERVED:
            for sku, quantity in lines:
                if sku in self.stock:
                    self.stock[sku] = replace(self.stock[sku], available=self.stock[sku].available + quantity)
            self.reservations[order_id] = (RELEASED, lines)

    async def reservation(self, order_id: str) -> str | None:
        self.calls.append("reservation")
        if self.check_error:
            raise self.check_error
        made = self.reservations.get(order_id)
        return None if made is None else made[0]

    async def get_item(self, sku: str) -> Item | None:
        return self.stock.get(sku)

    async def list_items(self, cursor: str | None = None, *, limit: int = 1000) -> tuple[list[Item], str | None]:
        """The cursor is the page's last SKU here; InventoryService's is opaque."""
        skus = sorted(sku for sku in self.stock if cursor is None or sku > cursor)
        return [self.stock[sku] for sku in skus[:limit]], (skus[limit - 1] if len(skus) > limit else None)


class FakePayments:
    """``PaymentPort``, answering as PaymentService does."""

    def __init__(self) -> None:
        self.payments: dict[str, Payment] = {}
        """Per order: its one payment; VOIDED when voided before any charge (none is ever made then)."""
        self.charge_error: Exception | None = None
        """Raised in place of a charge: it never got there."""
        self.answer_lost: Exception | None = None
        """Raised after a charge that was made: its answer was lost on the way back."""
        self.find_error: Exception | None = None
        self.calls: list[str] = []
        self._ids = itertools.count(1)

    @property
    def voided(self) -> list[str]:
        """The orders voided before any charge."""
        return [order for order, payment in self.payments.items() if payment.status == PaymentStatus.VOIDED]

    async def charge(self, order_id: str, amount: int, currency: str, payment_method: str) -> Payment:
        self.calls.append("charge")
        if self.charge_error:
            raise self.charge_error
        payment = self.payments.get(order_id)
        if payment is None:
            code = decline_code(payment_method)
            status = PaymentStatus.DECLINED if code else PaymentStatus.SUCCEEDED
            payment = self.payments[order_id] = Payment(f"pay_{next(self._ids)}", status, code, amount, currency)
        elif payment.status == PaymentStatus.VOIDED:
            raise Refused(409, "order-voided")
        elif (payment.amount, payment.currency) != (amount, currency):
            raise Refused(409, "charge-mismatch")
        if self.answer_lost:
            raise self.answer_lost
        return payment

    async def find(self, order_id: str) -> Payment | None:
        self.calls.append("find")
        if self.find_error:
            raise self.find_error
        payment = self.payments.get(order_id)
        return None if payment is None or payment.status == PaymentStatus.VOIDED else payment

    async def void(self, order_id: str) -> Payment | None:
        self.calls.append("void")
        payment = self.payments.get(order_id)
        if payment is None:
            self.payments[order_id] = Payment(f"void_{next(self._ids)}", PaymentStatus.VOIDED, None, 0, "XXX")
            return None
        return None if payment.status == PaymentStatus.VOIDED else payment

    async def refund(self, order_id: str) -> Payment:
        self.calls.append("refund")
        payment = self.payments.get(order_id)
        if payment is None or payment.status == PaymentStatus.VOIDED:
            raise Refused(404, "about:blank")  # PaymentService's "No payment" problem has no type of its own
        if payment.status == PaymentStatus.SUCCEEDED:
            payment = self.payments[order_id] = replace(payment, status=PaymentStatus.REFUNDED)
        if payment.status != PaymentStatus.REFUNDED:
            raise Refused(409, "not-refundable")
        return payment


class FakeCatalog:
    """``CatalogPort``, answering as ``SqlCatalog`` does."""

    def __init__(self, items: Iterable[Item] = ()) -> None:
        self.items: dict[str, Item] = {}
        """Last known stock and price, as synced from InventoryService (holds not taken off)."""
        self.holds: dict[str, dict[str, int]] = {}
        """Per order placed on fallback data: the units it holds, per SKU."""
        self.remember(items)

    def remember(self, items: Iterable[Item]) -> None:
        """Take the items as last known (``SqlCatalog.remember``); the holds stay."""
        for item in items:
            self.items[item.sku] = item

    def _held(self, sku: str) -> int:
        return sum(held.get(sku, 0) for held in self.holds.values())

    async def hold(self, order_id: str, lines: Lines) -> FallbackAnswer:
        skus = [sku for sku, _ in lines]
        mine = self.holds.get(order_id, {})
        items = {
            sku: replace(item, available=item.available - self._held(sku) + mine.get(sku, 0))
            for sku, item in self.items.items()
            if sku in skus
        }
        missing = [sku for sku in skus if sku not in items]
        short = [sku for sku, q in lines if sku in items and items[sku].available < q]
        if not missing and not short:
            held = self.holds.setdefault(order_id, {})
            for sku, quantity in lines:
                held.setdefault(sku, quantity)  # what the order holds already stays as it is
        return FallbackAnswer([items[s] for s in skus if s in items], missing, short)

    async def unhold(self, order_id: str) -> None:
        self.holds.pop(order_id, None)

    async def held(self, skus: Sequence[str] | None = None) -> dict[str, int]:
        """As SqlCatalog, an empty ``skus`` means every SKU, as None does."""
        owed: dict[str, int] = {}
        for held in self.holds.values():
            for sku, quantity in held.items():
                if not skus or sku in skus:
                    owed[sku] = owed.get(sku, 0) + quantity
        return owed


class MemoryLog:
    """``SagaLog``, keeping what ``OrderRepository.record`` keeps of it."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []
        """Every row, in the order written (all sagas)."""
        self.rows: dict[str, list[tuple[str, LogEntry]]] = {}
        """Per saga id: (saga name, row), as the order's saga log holds them."""
        self.ends: list[SagaEnd] = []
        self.end: SagaEnd | None = None
        """The last end written."""
        self.status: dict[str, str] = {}
        """Per saga id: its saga status (an end's, or ``running``), as the order's row holds it."""
        self.context: dict[str, Any] = {}
        """The context of the last write."""
        self.writes = 0

    async def record(
        self,
        saga_id: str,
        entry: LogEntry | None,
        context: Mapping[str, Any],
        end: SagaEnd | None,
        *,
        earlier: Sequence[LogEntry] = (),
    ) -> None:
        saga = str(context.get("saga", "order"))
        rows = self.rows.setdefault(saga_id, [])
        folded = False
        if entry is not None and entry.outcome == "unknown" and rows:
            # The same question, unanswered again: counted on the saga's last row.
            last_saga, last = rows[-1]
            asked = (saga, entry.name, "unknown", entry.reason or "")
            if (last_saga, last.name, last.outcome, last.reason or "") == asked:
                again = replace(
                    last,
                    attempt=last.attempt + 1,
                    ended_at=entry.ended_at,
                    duration_ms=entry.duration_ms,
                    detail=entry.detail,
                )
                rows[-1] = (saga, again)
                for i in range(len(self.entries) - 1, -1, -1):
                    if self.entries[i] is last:
                        self.entries[i] = again
                        break
                folded = True
        new = [*earlier, *([entry] if entry is not None and not folded else [])]
        rows.extend((saga, row) for row in new)
        self.entries.extend(new)
        if end is not None:
            self.ends.append(end)
            self.end = end
        self.status[saga_id] = end.status.value if end is not None else "running"
        self.context = dict(context)
        self.writes += 1

    def names(self) -> list[tuple[str, str, str]]:
        return [(e.kind, e.name, e.outcome) for e in self.entries]

    def logged(self, saga_id: str, saga: str = "order") -> list[Logged]:
        """The saga's rows as recovery reads them back (``OrderRepository.load_saga``)."""
        return [Logged(e.kind, e.name, e.outcome, e.reason) for s, e in self.rows.get(saga_id, []) if s == saga]


class Crash(Exception):
    """The process died: what was not written is lost."""


class CrashingLog(MemoryLog):
    """Writes like MemoryLog, but dies once, at write number ``crash_at`` (0: the first)."""

    def __init__(self, crash_at: int | None) -> None:
        super().__init__()
        self.crash_at = crash_at

    async def record(
        self,
        saga_id: str,
        entry: LogEntry | None,
        context: Mapping[str, Any],
        end: SagaEnd | None,
        *,
        earlier: Sequence[LogEntry] = (),
    ) -> None:
        if self.crash_at is not None and self.writes >= self.crash_at:
            self.crash_at = None
            raise Crash
        await super().record(saga_id, entry, context, end, earlier=earlier)
