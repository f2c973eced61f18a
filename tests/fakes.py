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
- ``MemoryLog``: ``OrderRepository.record`` behind ``OrderLog``, as the engine's saga log: rows
  in the order written, an unknown outcome asked again (the same step, the same reason) counted on
  its row instead of written again.
- ``MemoryOrders``: ``OrderRepository``, the order store (``OrderStore``): orders as the API shows
  them, their saga logs, leases and idempotency keys; the stock a saga write learnt goes to the
  ``FakeCatalog`` it is given, as the repository writes it to the catalog in the same database.

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

import orjson

from oms.db import IntegrityError
from oms.edge.paging import Page
from oms.inventory.store import ReservationStatus
from oms.orders.ports import ORDERS, CheckAnswer, FallbackAnswer, Item, Lines, Payment, Refused, Unavailable
from oms.orders.repository import CONTEXT_COLUMNS, log_row, order_view
from oms.orders.saga import ORDER, OrderContext, OrderState, OrderStatus
from oms.payments.store import PaymentStatus, decline_code
from oms.saga.engine import LogEntry, Logged, SagaEnd
from oms.saga.policies import WaitingPolicy
from oms.utc import utc_after, utc_now


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
        return {
            order: lines for order, (status, lines) in self.reservations.items() if status == ReservationStatus.RESERVED
        }

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
            if status == ReservationStatus.RELEASED:
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
        self.reservations[order_id] = (ReservationStatus.RESERVED, ordered)
        return self._now(sku for sku, _ in ordered)

    async def release(self, order_id: str) -> None:
        self.calls.append("release")
        if self.release_failures:
            self.release_failures -= 1
            raise Unavailable("inventory", "circuit_open")
        made = self.reservations.get(order_id)
        if made is None:
            self.reservations[order_id] = (ReservationStatus.RELEASED, [])  # refuses a reservation that arrives later
            return
        status, lines = made
        if status == ReservationStatus.RESERVED:
            for sku, quantity in lines:
                if sku in self.stock:
                    self.stock[sku] = replace(self.stock[sku], available=self.stock[sku].available + quantity)
            self.reservations[order_id] = (ReservationStatus.RELEASED, lines)

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
        self.learn(items)

    def learn(self, items: Iterable[Item]) -> None:
        """Take the items as last known, at once (what ``remember`` does, and a saga write's stock)."""
        for item in items:
            self.items[item.sku] = item

    async def remember(self, items: Sequence[Item]) -> None:
        self.learn(items)

    async def prices(self) -> dict[str, int]:
        return {sku: item.unit_price for sku, item in self.items.items()}

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


def _free(row: dict[str, Any], owner: str, now: str) -> bool:
    """The row's lease is free, lapsed, or ``owner``'s."""
    return row["lease_owner"] in (None, owner) or row["lease_until"] is None or row["lease_until"] < now


class MemoryOrders:
    """``OrderStore``, keeping what ``OrderRepository`` keeps: each order's row and saga log rows as
    the database holds them, shown through the repository's own ``order_view``."""

    def __init__(self, catalog: FakeCatalog | None = None, *, waiting: WaitingPolicy = WaitingPolicy()) -> None:
        self.catalog = catalog
        """Where the stock a saga write learnt goes (OrderRepository's catalog table)."""
        self.waiting = waiting
        self.rows: dict[str, dict[str, Any]] = {}
        """Per order: its row, with the columns of ``orders``."""
        self.logs: dict[str, list[dict[str, Any]]] = {}
        """Per order: its saga log rows, in the order written."""
        self.watched: set[str] = set()
        self.writes = 0
        """Saga writes (``record`` calls) so far."""

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
        if idempotency_key is not None and any(r["idempotency_key"] == idempotency_key for r in self.rows.values()):
            return False
        if order_id in self.rows:
            raise IntegrityError("order id taken")
        now = utc_now()
        self.rows[order_id] = {
            "id": order_id, "idempotency_key": idempotency_key, "request_hash": request_hash,
            "customer_id": customer_id, "payment_method": payment_method,
            "lines": orjson.dumps([list(line) for line in lines]).decode(), "items": None,
            "status": OrderStatus.PENDING, "saga_name": ORDER, "saga_status": "running", "inventory_check": None,
            "reservation": "none", "total_amount": None, "currency": None, "payment_id": None,
            "failure_reason": None, "pending_reason": None, "created_at": now, "updated_at": now,
            "lease_owner": owner, "lease_until": lease_until, "trace_context": trace_context,
        }  # fmt: skip
        self.logs[order_id] = []
        if watch:
            self.watched.add(order_id)
        return True

    def take_watched(self, order_id: str) -> dict[str, Any] | None:
        if order_id not in self.watched:
            return None
        self.watched.discard(order_id)
        return order_view(self.rows[order_id], self.logs[order_id])

    async def by_key(self, key: str) -> Mapping[str, Any] | None:
        for row in self.rows.values():
            if row["idempotency_key"] == key:
                return {"id": row["id"], "request_hash": row["request_hash"], "created_at": row["created_at"]}
        return None

    async def forget_key(self, order_id: str, key: str) -> None:
        row = self.rows.get(order_id)
        if row is not None and row["idempotency_key"] == key:
            row["idempotency_key"] = None

    async def get(self, order_id: str, *, with_saga: bool = True) -> dict[str, Any] | None:
        row = self.rows.get(order_id)
        if row is None:
            return None
        return order_view(row, self.logs[order_id] if with_saga else None)

    def _newest_first(self) -> list[dict[str, Any]]:
        return sorted(self.rows.values(), key=lambda r: (r["created_at"], r["id"]), reverse=True)

    async def recent(
        self,
        *,
        status: str | None,
        limit: int,
        offset: int = 0,
        customer_id: str | None = None,
        after: Sequence[str] | None = None,
    ) -> Page[dict[str, Any]]:
        rows = [
            r
            for r in self._newest_first()
            if (not status or r["status"] == status)
            and (customer_id is None or r["customer_id"] == customer_id)
            and (not after or (r["created_at"], r["id"]) < (after[0], after[1]))
        ]
        views = [order_view(r) for r in rows[offset : offset + limit + 1]]
        return ORDERS.page(views, limit, key=lambda o: (o["created_at"], o["id"]))

    async def activity(
        self, *, since: str, customer_id: str | None = None, sample: int = 20_000
    ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        mine = [r for r in self._newest_first() if customer_id is None or r["customer_id"] == customer_id]
        counts: dict[str, int] = {}
        for row in mine:
            if row["created_at"] >= since:
                counts[row["created_at"][:18]] = counts.get(row["created_at"][:18], 0) + 1
        durations: list[Mapping[str, Any]] = []
        for row in mine:
            ends = [r["ended_at"] for r in self.logs[row["id"]] if r["saga"] == ORDER]
            if row["created_at"] >= since and row["status"] != OrderStatus.PENDING and ends:
                durations.append({"created_at": row["created_at"], "ended_at": max(ends)})
        statuses: dict[str, int] = {}
        for row in mine:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        return (
            [{"bucket": b, "orders": n} for b, n in counts.items()],
            durations[:sample],
            [{"status": s, "orders": n} for s, n in statuses.items()],
        )

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
        row = self.rows.get(order_id)
        if row is None:
            raise IntegrityError("no such order")  # the log's foreign key
        log = self.logs[order_id]
        new = [log_row(saga, e) for e in earlier]
        attempts = 1
        if entry is not None:
            # The same question unanswered again, on the order's last row before this write: counted there.
            last = log[-1] if log else None
            asked = (saga, entry.name, "unknown", entry.reason or "")
            if (
                entry.outcome == "unknown"
                and last is not None
                and (last["saga"], last["name"], last["outcome"], last["reason"] or "") == asked
            ):
                attempts = last["attempt"] + 1
                again = log_row(saga, entry)
                last.update(attempt=attempts, ended_at=again["ended_at"], duration_ms=again["duration_ms"],
                            detail=again["detail"])  # fmt: skip
            else:
                new.append(log_row(saga, entry))
        log.extend(new)
        if self.catalog is not None:
            self.catalog.learn(catalog)
        now = utc_now()
        row.update(
            items=orjson.dumps(state.items).decode() if state.items else None, status=state.status,
            saga_name=state.saga, saga_status=state.saga_status, inventory_check=state.inventory_check,
            reservation=state.reservation, total_amount=state.total_amount, currency=state.currency,
            payment_id=state.payment_id, failure_reason=state.failure_reason, pending_reason=state.pending_reason,
            updated_at=now,
        )  # fmt: skip
        if state.lease == "free":
            row["lease_until"] = None
        elif state.lease == "retry":
            unknown = entry is not None and entry.outcome == "unknown"
            row["lease_until"] = utc_after(self.waiting.pause(attempts if unknown else 1))
        self.writes += 1

    async def load_saga(self, order_id: str) -> tuple[OrderContext, list[Logged]] | None:
        row = self.rows.get(order_id)
        if row is None:
            return None
        context = OrderContext(
            saga=row["saga_name"],
            order_id=order_id,
            lines=[(sku, q) for sku, q in orjson.loads(row["lines"])],
            payment_method=row["payment_method"],
            reservation=row["reservation"],
        )
        if row["items"]:
            context["items"] = orjson.loads(row["items"])
        for key in CONTEXT_COLUMNS:
            if row[key] is not None:
                context[key] = row[key]
        logged = [
            Logged(r["kind"], r["name"], r["outcome"], r["reason"])
            for r in self.logs[order_id]
            if r["saga"] == row["saga_name"]
        ]
        return context, logged

    async def unfinished(self, *, now: str, limit: int = 100, skip: Sequence[str] = ()) -> list[str]:
        rows = sorted(self.rows.values(), key=lambda r: str(r["created_at"]))
        return [
            r["id"]
            for r in rows
            if r["saga_status"] in ("running", "waiting")
            and (r["lease_until"] is None or r["lease_until"] < now)
            and r["saga_name"] not in skip
        ][:limit]

    async def claim(self, order_id: str, *, owner: str, until: str, now: str, statuses: Sequence[str]) -> bool:
        row = self.rows.get(order_id)
        if row is None or row["saga_status"] not in statuses or not _free(row, owner, now):
            return False
        row.update(lease_owner=owner, lease_until=until)
        return True

    async def begin(self, order_id: str, saga: str, *, status: str, owner: str, until: str, now: str) -> bool:
        row = self.rows.get(order_id)
        if row is None or row["status"] != status:
            return False
        if not (row["saga_status"] == "completed" or (row["saga_status"] == "waiting" and _free(row, owner, now))):
            return False
        row.update(
            saga_name=saga, saga_status="running", lease_owner=owner, lease_until=until, pending_reason=None,
            updated_at=now,
        )  # fmt: skip
        return True

    async def let_go(self, order_id: str, owner: str) -> None:
        row = self.rows.get(order_id)
        if row is not None and row["lease_owner"] == owner:
            row["lease_until"] = None

    async def free_leases_of(self, prefix: str) -> int:
        freed = 0
        for row in self.rows.values():
            owner = row["lease_owner"]
            if row["saga_status"] in ("running", "waiting") and owner is not None and owner.startswith(prefix):
                row["lease_until"] = None
                freed += 1
        return freed

    async def renew(self, owner: str, until: str, order_ids: Sequence[str]) -> None:
        for order_id in order_ids:
            row = self.rows.get(order_id)
            if row is not None and row["lease_owner"] == owner and row["saga_status"] == "running":
                row["lease_until"] = until
