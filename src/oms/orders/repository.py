"""OrderService's storage: orders and their saga logs (``OrderStore``), and the fallback catalog
(``CatalogPort``). What an order's row says is decided by the domain (``oms.orders.saga.order_state``);
a storage error the service must understand comes out of here as a return value."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

import orjson

from oms.db import Batcher, Database, IntegrityError, Row, placeholders
from oms.edge.paging import Page
from oms.orders.batched import (
    NewOrder,
    SagaWrite,
    remember_statement,
    write_in_order,
    write_new_orders,
    write_sagas,
)
from oms.orders.events import (
    CREATED,
    EVENT_COLUMNS,
    EVENTS,
    event_data,
    event_filters,
    event_type,
    new_event_id,
    read_after,
)
from oms.orders.ports import ORDERS, FallbackAnswer, Item
from oms.orders.saga import ORDER, OrderContext, OrderState, OrderStatus
from oms.saga.engine import LogEntry, Logged
from oms.saga.policies import WaitingPolicy
from oms.telemetry.tracing import trace_id_of, trace_url
from oms.utc import utc_after, utc_now

ORDER_COLUMNS = (
    "id, customer_id, payment_method, lines, items, status, saga_name, saga_status, inventory_check, reservation, "
    "total_amount, currency, payment_id, failure_reason, pending_reason, created_at, updated_at, trace_context"
)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def order_view(row: Row, log: Sequence[Row] | None = None, *, trace_url_template: str | None = None) -> dict[str, Any]:
    """An order as the API shows it; with ``trace_url_template``, its ``trace_url`` too."""
    if row["items"]:
        items = orjson.loads(row["items"])
    else:
        items = [
            {"sku": sku, "name": None, "quantity": q, "unit_price": None, "amount": None}
            for sku, q in orjson.loads(row["lines"])
        ]
    view = {
        "id": row["id"],
        "status": row["status"],
        "saga_status": row["saga_status"],
        "customer_id": row["customer_id"],
        "payment_method": row["payment_method"],
        "items": items,
        "total_amount": row["total_amount"],
        "currency": row["currency"],
        "inventory_check": row["inventory_check"],
        "reservation": row["reservation"],
        "payment_id": row["payment_id"],
        "failure_reason": row["failure_reason"],
        "pending_reason": row["pending_reason"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "trace_id": trace_id_of(row["trace_context"]),
    }
    if trace_url_template:
        view["trace_url"] = trace_url(trace_url_template, view["trace_id"])
    if log is not None:
        view["saga"] = [
            {
                "saga": r["saga"],
                "kind": r["kind"],
                "name": r["name"],
                "outcome": r["outcome"],
                "reason": r["reason"],
                "attempt": r["attempt"],
                "started_at": r["started_at"],
                "ended_at": r["ended_at"],
                "duration_ms": r["duration_ms"],
                "detail": orjson.loads(r["detail"]),
            }
            for r in log
        ]
    return view


def _iso(entry: LogEntry) -> tuple[str, str]:
    def fmt(value: Any) -> str:
        return str(value.isoformat(timespec="microseconds").replace("+00:00", "Z"))

    return fmt(entry.started_at), fmt(entry.ended_at)


CONTEXT_COLUMNS: tuple[Literal["total_amount", "currency", "inventory_check", "payment_id", "trace_context"], ...] = (
    "total_amount", "currency", "inventory_check", "payment_id", "trace_context",
)  # fmt: skip
"""The columns of an order's row that are keys of its saga's context, when set."""


_LEASE_WRITE = {"keep": "keep", "free": "null", "retry": "set"}
"""The domain's word for what a saga write does to the lease (``saga.Lease``), as ``SagaWrite`` says it."""


class OrderRepository:
    def __init__(
        self,
        db: Database,
        *,
        waiting: WaitingPolicy = WaitingPolicy(),
        trace_url_template: str | None = None,
    ) -> None:
        self.db = db
        self.trace_url_template = trace_url_template
        """Turns an order's trace id into its ``trace_url`` (``{trace_id}`` in it), when set."""
        # Orders whose POST is waiting for the saga here: the row and log rows as last written, so
        # the answer needs no read of what was just written (the same order_view makes it).
        self.watched: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        # What an order's events show of it that no saga write changes (id, customer_id, lines,
        # created_at, trace_context), for each order whose saga this process drives: kept from the
        # create or the load of the saga to the write that stops it.
        self._fixed: dict[str, dict[str, Any]] = {}
        self._news: asyncio.Event | None = None
        """Set (and dropped) by this process's next write that may have written an event (``news``)."""
        self.waiting = waiting
        """When a waiting saga (an outcome not learnt yet) is driven on again."""
        # Where a statement is a round trip and a commit (PostgreSQL), the writes of concurrent sagas
        # go together, a statement for many (group commit; SQLite's is in its transactions).
        self._new_orders: Batcher[NewOrder] | None = None
        self._sagas: Batcher[SagaWrite] | None = None
        if db.writes_in_one_statement:
            self._new_orders = Batcher(lambda batch: write_new_orders(db, batch))
            self._sagas = Batcher(lambda batch: write_sagas(db, batch))

    async def create(
        self,
        *,
        order_id: str,
        idempotency_key: str | None,
        request_hash: str,
        customer_id: str,
        payment_method: str,
        lines: Sequence[tuple[str, int]],
        owner: str | None = None,
        lease_until: str | None = None,
        watch: bool = False,
        trace_context: str | None = None,
    ) -> bool:
        """Store the order PENDING, its saga leased to ``owner`` until ``lease_until``; with the span
        of the request that placed it, when tracing is on.

        False, storing nothing, when the idempotency key is taken."""
        now = utc_now()
        lines_json = _dumps([list(line) for line in lines])
        row = {
            "id": order_id, "customer_id": customer_id, "payment_method": payment_method,
            "lines": lines_json, "items": None, "status": OrderStatus.PENDING, "saga_name": ORDER,
            "saga_status": "running", "inventory_check": None, "reservation": "none", "total_amount": None,
            "currency": None, "payment_id": None, "failure_reason": None, "pending_reason": None,
            "created_at": now, "updated_at": now, "trace_context": trace_context,
        }  # fmt: skip
        event_id, data = new_event_id(), event_data(order_view(row))
        try:
            if self._new_orders is not None:
                values = {
                    "id": order_id, "idempotency_key": idempotency_key, "request_hash": request_hash,
                    "customer_id": customer_id, "payment_method": payment_method, "lines": lines_json,
                    "status": OrderStatus.PENDING, "now": now, "lease_owner": owner, "lease_until": lease_until,
                    "trace_context": trace_context, "event_id": event_id, "event_data": data,
                }  # fmt: skip
                await self._new_orders.submit(NewOrder(values))
            else:
                await self.db.write_all([
                    (
                        "INSERT INTO orders (id, idempotency_key, request_hash, customer_id, payment_method, lines, "
                        "status, saga_status, reservation, created_at, updated_at, lease_owner, lease_until, "
                        "trace_context, event_sequence, last_event) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, 'running', 'none', ?, ?, ?, ?, ?, 1, ?)",
                        [order_id, idempotency_key, request_hash, customer_id, payment_method,
                         lines_json, OrderStatus.PENDING, now, now, owner, lease_until, trace_context, event_id],
                    ),
                    (
                        "INSERT INTO events (id, order_id, sequence, type, time, data) VALUES (?, ?, 1, ?, ?, ?)",
                        [event_id, order_id, CREATED, now, data],
                    ),
                ])  # fmt: skip
        except IntegrityError:
            if idempotency_key is None:
                raise  # ids are unique: only the key can clash
            return False
        self._fixed[order_id] = _fixed(row)
        self._tell()
        if watch:
            self.watched[order_id] = (row, [])
        return True

    def take_watched(self, order_id: str) -> dict[str, Any] | None:
        """The order as last written by this process, if it was being watched (and stop watching)."""
        watched = self.watched.pop(order_id, None)
        return order_view(watched[0], watched[1], trace_url_template=self.trace_url_template) if watched else None

    def news(self) -> asyncio.Event:
        """Set once this process next writes an order (it may have written an event): what a feed
        waiting for events waits on, besides a look now and then for other processes' events."""
        if self._news is None:
            self._news = asyncio.Event()
        return self._news

    def _tell(self) -> None:
        news, self._news = self._news, None
        if news is not None:
            news.set()

    async def events(
        self,
        *,
        limit: int,
        after: Sequence[int] | None = None,
        type_: str | None = None,
        order_id: str | None = None,
        customer_id: str | None = None,
    ) -> Page[Row]:
        """Events, oldest first (``(tx, position)``): the ``limit`` after the key ``after``; of one
        type, of one order, of one customer's orders, when given."""
        conditions, params = event_filters(
            visible=self.db.writes_in_one_statement,  # PostgreSQL: wait for older transactions
            type_=type_,
            order_id=order_id,
            customer_id=customer_id,
        )
        sql, values = read_after(EVENT_COLUMNS, conditions, params, after, limit + 1)
        rows = await self.db.fetch_all(sql, *values)
        return EVENTS.page(rows, limit, key=lambda r: (str(r["tx"]), str(r["position"])))

    async def prune_events(self, *, before: str, batch: int = 1000) -> int:
        """Delete up to ``batch`` events written before ``before``, oldest first (how many). A
        batch a statement: no statement holds the table long, however many are due."""
        return await self.db.execute_one(
            "DELETE FROM events WHERE position IN (SELECT position FROM events WHERE time < ? ORDER BY time LIMIT ?)",
            before,
            batch,
        )

    async def prune_attempts(self, *, before: str, batch: int = 1000) -> int:
        """Delete up to ``batch`` webhook tries (``webhook_attempts``) made before ``before``, oldest
        first (how many): the record of deliveries is kept as long as the events."""
        return await self.db.execute_one(
            "DELETE FROM webhook_attempts WHERE id IN "
            "(SELECT id FROM webhook_attempts WHERE at < ? ORDER BY at LIMIT ?)",
            before,
            batch,
        )

    async def by_key(self, key: str) -> Row | None:
        return await self.db.fetch_one("SELECT id, request_hash, created_at FROM orders WHERE idempotency_key = ?", key)

    async def forget_key(self, order_id: str, key: str) -> None:
        """The key no longer names this order (it expired): a new order may take it."""
        await self.db.execute_one(
            "UPDATE orders SET idempotency_key = NULL WHERE id = ? AND idempotency_key = ?", order_id, key
        )

    async def get(self, order_id: str, *, with_saga: bool = True) -> dict[str, Any] | None:
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?", order_id)
            if row is None:
                return None
            log = None
            if with_saga:
                log = await tx.fetchall("SELECT * FROM saga_log WHERE order_id = ? ORDER BY id", order_id)
        return order_view(row, log, trace_url_template=self.trace_url_template)

    async def recent(
        self,
        *,
        status: str | None,
        limit: int,
        offset: int = 0,
        customer_id: str | None = None,
        after: Sequence[str] | None = None,
    ) -> Page[dict[str, Any]]:
        """Orders, newest first: the ``limit`` after the key (created_at, id) ``after``, or after
        ``offset`` rows; of one status, of one customer, when given."""
        conditions, params = [], []
        if status:
            conditions.append("status = ?")
            params.append(status)
        if customer_id is not None:
            conditions.append("customer_id = ?")
            params.append(customer_id)
        if after:
            # The first term alone can use the indexes on created_at; the second picks within it.
            conditions.append("created_at <= ? AND (created_at < ? OR id < ?)")
            params += [after[0], after[0], after[1]]
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        rows = await self.db.fetch_all(
            f"SELECT {ORDER_COLUMNS} FROM orders {where}ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            *params,
            limit + 1,
            offset,
        )
        template = self.trace_url_template
        return ORDERS.page(
            [order_view(r, trace_url_template=template) for r in rows], limit, key=lambda o: (o["created_at"], o["id"])
        )

    async def activity(
        self, *, since: str, customer_id: str | None = None, sample: int = 20_000
    ) -> tuple[list[Row], list[Row], list[Row]]:
        """For the dashboard's chart (``oms.dashboard.stats``): orders created since ``since`` by
        10-second bucket (bucket, orders); the creation and the order saga's last end of the newest
        ``sample`` of them that are past PENDING (created_at, ended_at); every order by status
        (status, orders). Of one customer's orders, when given."""
        mine, params = ("AND customer_id = ? ", [customer_id]) if customer_id is not None else ("", [])
        # Three reads, no transaction: on SQLite a transaction would queue behind the writers' commits.
        counts = await self.db.fetch_all(
            "SELECT substr(created_at, 1, 18) AS bucket, count(*) AS orders FROM orders "
            f"WHERE created_at >= ? {mine}GROUP BY substr(created_at, 1, 18)",
            since, *params,
        )  # fmt: skip
        durations = await self.db.fetch_all(
            "SELECT o.created_at, max(l.ended_at) AS ended_at FROM orders o "
            "JOIN saga_log l ON l.order_id = o.id AND l.saga = 'order' "
            f"WHERE o.created_at >= ? AND o.status <> 'PENDING' {mine.replace('customer_id', 'o.customer_id')}"
            "GROUP BY o.id, o.created_at ORDER BY o.created_at DESC LIMIT ?",
            since, *params, sample,
        )  # fmt: skip
        where = "WHERE customer_id = ? " if customer_id is not None else ""
        statuses = await self.db.fetch_all(
            f"SELECT status, count(*) AS orders FROM orders {where}GROUP BY status", *params
        )
        return counts, durations, statuses

    async def unfinished(self, *, now: str, limit: int = 100, skip: Sequence[str] = ()) -> list[str]:
        """Sagas that are not over and that no live process holds: the recovery's work list.
        ``skip`` names sagas not to be driven now."""
        skipping = f"AND saga_name NOT IN ({placeholders(skip)}) " if skip else ""
        rows = await self.db.fetch_all(
            "SELECT id FROM orders WHERE saga_status IN ('running', 'waiting') "
            f"AND (lease_until IS NULL OR lease_until < ?) {skipping}ORDER BY created_at LIMIT ?",
            now,
            *skip,
            limit,
        )
        return [r["id"] for r in rows]

    async def claim(self, order_id: str, *, owner: str, until: str, now: str, statuses: Sequence[str]) -> bool:
        """Take the saga's lease if it is free or lapsed (or ours). True when this process now drives it."""
        taken = await self.db.execute_one(
            f"UPDATE orders SET lease_owner = ?, lease_until = ? WHERE id = ? "
            f"AND saga_status IN ({placeholders(statuses)}) "
            f"AND (lease_owner IS NULL OR lease_owner = ? OR lease_until IS NULL OR lease_until < ?)",
            owner, until, order_id, *statuses, owner, now,
        )  # fmt: skip
        return bool(taken == 1)

    async def let_go(self, order_id: str, owner: str) -> None:
        """Give up this process's lease on a saga, so recovery takes it up at its next pass."""
        await self.db.execute_one(
            "UPDATE orders SET lease_until = NULL WHERE id = ? AND lease_owner = ?", order_id, owner
        )

    async def free_leases_of(self, prefix: str) -> int:
        """Let go of every lease whose owner starts with ``prefix`` (a dead process's)."""
        theirs = self.db.locked(
            "SELECT id FROM orders WHERE saga_status IN ('running', 'waiting') "
            "AND lease_owner LIKE ? ESCAPE '\\' ORDER BY id"
        )
        freed = await self.db.execute_one(
            f"UPDATE orders SET lease_until = NULL WHERE id IN ({theirs})",
            prefix.replace("%", r"\%").replace("_", r"\_") + "%",
        )
        return int(freed)

    async def renew(self, owner: str, until: str, order_ids: Sequence[str]) -> None:
        # Only running sagas: a waiting one's lease lapses, so recovery asks again after lease_ttl.
        # Only the ones named: a saga whose driver stopped (its write failed) must lapse even if the
        # process lives on. A row a saga write holds right now is skipped (PostgreSQL): renewed at
        # the next pass, and this statement never waits on one, so the two never deadlock.
        for start in range(0, len(order_ids), 500):  # a statement's parameters are limited in number
            some = order_ids[start : start + 500]
            mine = self.db.locked(
                "SELECT id FROM orders WHERE lease_owner = ? AND saga_status = 'running' "
                f"AND id IN ({placeholders(some)}) ORDER BY id",
                skip_locked=True,
            )
            await self.db.execute_one(f"UPDATE orders SET lease_until = ? WHERE id IN ({mine})", until, owner, *some)

    async def begin(self, order_id: str, saga: str, *, status: str, owner: str, until: str, now: str) -> bool:
        """Start saga ``saga`` on an order of ``status`` whose saga is over, or waits with its lease free."""
        started = await self.db.execute_one(
            "UPDATE orders SET saga_name = ?, saga_status = 'running', lease_owner = ?, lease_until = ?, "
            "pending_reason = NULL, updated_at = ? WHERE id = ? AND status = ? AND (saga_status = 'completed' "
            "OR (saga_status = 'waiting' AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)))",
            saga, owner, until, now, order_id, status, now, owner,
        )  # fmt: skip
        return bool(started == 1)

    async def load_saga(self, order_id: str) -> tuple[OrderContext, list[Logged]] | None:
        """The saga's context, rebuilt from the order's row, and its log as recovery reads it."""
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?", order_id)
            if row is None:
                return None
            rows = await tx.fetchall(
                "SELECT kind, name, outcome, reason FROM saga_log WHERE order_id = ? AND saga = ? ORDER BY id",
                order_id,
                row["saga_name"],
            )
        self._fixed[order_id] = _fixed(row)
        context = OrderContext(
            saga=row["saga_name"],
            order_id=order_id,
            lines=[tuple(line) for line in orjson.loads(row["lines"])],
            payment_method=row["payment_method"],
            reservation=row["reservation"],
        )
        if row["items"]:
            context["items"] = orjson.loads(row["items"])
        for key in CONTEXT_COLUMNS:
            if row[key] is not None:
                context[key] = row[key]
        return context, [Logged(r["kind"], r["name"], r["outcome"], r["reason"]) for r in rows]

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
        """The saga's rows, the order's new state and the catalog's last known stock, in one
        transaction (``OrderStore.record``): written as told (``OrderLog`` decides the state)."""
        now = utc_now()
        written: list[dict[str, Any]] = []
        folded: dict[str, Any] | None = None
        lease, until = _LEASE_WRITE[state.lease], None
        changes = {
            "items": _dumps(state.items) if state.items else None,
            "status": state.status, "saga_name": state.saga, "saga_status": state.saga_status,
            "inventory_check": state.inventory_check, "reservation": state.reservation,
            "total_amount": state.total_amount, "currency": state.currency,
            "payment_id": state.payment_id, "failure_reason": state.failure_reason,
            "pending_reason": state.pending_reason, "updated_at": now,
        }  # fmt: skip
        # The event of a change of status; written only if the row's status is another (the row decides).
        fixed = self._fixed.get(order_id) if state.saga_status == "running" else self._fixed.pop(order_id, None)
        if fixed is None:
            found = await self.db.fetch_one(f"SELECT {FIXED_COLUMNS} FROM orders WHERE id = ?", order_id)
            fixed = _fixed(found or {"id": order_id, "customer_id": "", "lines": "[]", "created_at": now})
        event = (new_event_id(), event_type(state.status), event_data(order_view({**fixed, **changes})))
        if entry is None or entry.outcome != "unknown":
            # The usual write: new log rows, the catalog, the order, as one statement on PostgreSQL.
            rows = [*earlier, *([entry] if entry is not None else [])]
            written = [log_row(saga, row) for row in rows]
            if lease == "set":
                until = utc_after(self.waiting.pause(1))
            write = SagaWrite(order_id, written, catalog, changes, lease, until, now, *event)
            if self._sagas is not None:
                await self._sagas.submit(write)
            else:
                await write_in_order(self.db, write.statements())
        else:
            async with self.db.transaction() as tx:
                for row in earlier:
                    written.append(log_row(saga, row))
                # The same question unanswered again: one row that counts the tries keeps the log
                # short and readable however long a service stays away.
                fold = {"ended_at": _iso(entry)[1], "duration_ms": entry.duration_ms, "detail": _dumps(entry.detail)}
                again = await tx.fetchone(
                    "UPDATE saga_log SET attempt = attempt + 1, ended_at = ?, duration_ms = ?, detail = ? "
                    "WHERE id = (SELECT MAX(id) FROM saga_log WHERE order_id = ?) AND saga = ? AND name = ? "
                    "AND outcome = 'unknown' AND COALESCE(reason, '') = ? RETURNING attempt",
                    *fold.values(), order_id, saga, entry.name, entry.reason or "",
                )  # fmt: skip
                attempts = 1
                if again is not None:
                    attempts = int(again["attempt"])
                    folded = {**fold, "attempt": attempts}
                else:
                    written.append(log_row(saga, entry))
                if lease == "set":
                    # Asked again after a pause that doubles with each unanswered try.
                    until = utc_after(self.waiting.pause(attempts))
                write = SagaWrite(order_id, written, catalog, changes, lease, until, now, *event)
                for sql, values in write.statements():
                    await tx.execute(sql, *values)
        self._tell()
        watched = self.watched.get(order_id)
        if watched is not None:
            watched[0].update(changes)
            if folded and watched[1]:
                watched[1][-1].update(folded)
            watched[1].extend(written)


FIXED_COLUMNS = "id, customer_id, lines, created_at, trace_context"
"""The columns of an order that no saga write changes (``OrderRepository._fixed``)."""


def _fixed(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"], "customer_id": row["customer_id"], "payment_method": None, "lines": row["lines"],
        "created_at": row["created_at"], "trace_context": row.get("trace_context"),
    }  # fmt: skip


def log_row(saga: str, entry: LogEntry) -> dict[str, Any]:
    """A log row, as saga_log reads it back."""
    started, ended = _iso(entry)
    return {
        "saga": saga, "kind": entry.kind, "name": entry.name, "outcome": entry.outcome, "reason": entry.reason,
        "detail": _dumps(entry.detail), "attempt": entry.attempt, "started_at": started, "ended_at": ended,
        "duration_ms": entry.duration_ms,
    }  # fmt: skip


class SqlCatalog:
    """The fallback catalog (``CatalogPort``), in OrderService's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Whether any order may be owed fallback units: while none is, a live check need not ask the
        # database. Set by this process's holds, and refreshed from the database at every catalog
        # sync (another replica's holds).
        self.maybe_held = True

    async def remember(self, items: Sequence[Item]) -> None:
        now = utc_now()
        for start in range(0, len(items), 500):  # a statement's parameters are limited in number
            await self.db.write_all([remember_statement(items[start : start + 500], now)])

    async def skus(self) -> set[str]:
        return {r["sku"] for r in await self.db.fetch_all("SELECT sku FROM catalog")}

    async def prices(self) -> dict[str, int]:
        """The last known unit price of every SKU."""
        return {r["sku"]: int(r["unit_price"]) for r in await self.db.fetch_all("SELECT sku, unit_price FROM catalog")}

    async def hold(self, order_id: str, lines: Sequence[tuple[str, int]]) -> FallbackAnswer:
        skus = [sku for sku, _ in lines]
        async with self.db.transaction() as tx:
            mine = {
                r["sku"]: int(r["quantity"])
                for r in await tx.fetchall("SELECT sku, quantity FROM fallback_holds WHERE order_id = ?", order_id)
            }
            # Concurrent holds of one SKU queue on its catalog row (PostgreSQL), so two orders
            # never both take the last known units. What this order holds already is its own.
            rows = await tx.fetchall(
                self.db.locked(
                    "SELECT sku, name, unit_price, currency, available - held AS available FROM catalog "
                    f"WHERE sku IN ({placeholders(skus)}) ORDER BY sku"
                ),
                *skus,
            )
            items = {
                r["sku"]: Item(
                    r["sku"], r["name"], r["unit_price"], r["currency"], r["available"] + mine.get(r["sku"], 0)
                )
                for r in rows
            }
            missing = [sku for sku in skus if sku not in items]
            short = [sku for sku, q in lines if sku in items and items[sku].available < q]
            if not missing and not short:
                self.maybe_held = True
                for sku, quantity in lines:
                    if sku in mine:
                        continue
                    await tx.execute(
                        "INSERT INTO fallback_holds (order_id, sku, quantity) VALUES (?, ?, ?)", order_id, sku, quantity
                    )
                    await tx.execute("UPDATE catalog SET held = held + ? WHERE sku = ?", quantity, sku)
        return FallbackAnswer([items[s] for s in skus if s in items], missing, short)

    async def unhold(self, order_id: str) -> None:
        async with self.db.transaction() as tx:
            # Of two unholds racing on PostgreSQL, the second finds the rows gone: nothing given twice.
            gone = await tx.fetchall("DELETE FROM fallback_holds WHERE order_id = ? RETURNING sku, quantity", order_id)
            for row in sorted(gone, key=lambda r: str(r["sku"])):  # SKU order, as hold locks them
                await tx.execute("UPDATE catalog SET held = held - ? WHERE sku = ?", row["quantity"], row["sku"])

    async def held(self, skus: Sequence[str] | None = None) -> dict[str, int]:
        """Units that orders placed on fallback data are owed, per SKU (of ``skus``, or all)."""
        if not self.maybe_held:
            return {}
        where = f"AND sku IN ({placeholders(skus)}) " if skus else ""
        rows = await self.db.fetch_all(f"SELECT sku, held AS q FROM catalog WHERE held > 0 {where}", *(skus or ()))
        owed = {r["sku"]: int(r["q"]) for r in rows}
        if skus is None:
            self.maybe_held = bool(owed)
        return owed
