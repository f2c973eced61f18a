"""OrderService's storage on a real database: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from oms.db import Database, IntegrityError
from oms.edge.paging import Page
from oms.orders.batched import LOG_COLUMNS, ORDER_CHANGES, SagaWrite
from oms.orders.ports import ORDERS, Item
from oms.orders.repository import OrderRepository, SqlCatalog
from oms.orders.saga import CHECK, PAY, RESERVE, OrderContext, OrderStatus
from oms.orders.saga_log import OrderLog
from oms.orders.schema import metadata
from oms.saga.engine import Kind, LogEntry, SagaEnd, SagaStatus

T0 = datetime(2025, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)

LINES = [("A", 2), ("B", 1)]
PRICED = [
    {"sku": "A", "name": "Alpha", "quantity": 2, "unit_price": 500, "amount": 1000},
    {"sku": "B", "name": "Beta", "quantity": 1, "unit_price": 250, "amount": 250},
]


async def create(repo: OrderRepository, order_id: str, key: str | None = None, **overrides: Any) -> bool:
    fields: dict[str, Any] = {
        "order_id": order_id,
        "idempotency_key": key,
        "request_hash": f"hash-of-{order_id}",
        "customer_id": "cus_42",
        "payment_method": "pm_card_visa",
        "lines": LINES,
    }
    fields.update(overrides)
    return await repo.create(**fields)


def entry(
    name: str,
    outcome: str = "done",
    *,
    kind: Kind = "step",
    reason: str | None = None,
    detail: Mapping[str, Any] | None = None,
    attempt: int = 1,
    offset_ms: int = 0,
) -> LogEntry:
    started = T0 + timedelta(milliseconds=offset_ms)
    return LogEntry(
        kind=kind,
        name=name,
        outcome=outcome,
        reason=reason,
        detail=detail or {},
        started_at=started,
        ended_at=started + timedelta(milliseconds=12.5),
        duration_ms=12.5,
        attempt=attempt,
    )


def priced_context(order_id: str, **extra: Any) -> OrderContext:
    context: dict[str, Any] = {
        "saga": "order",
        "order_id": order_id,
        "lines": LINES,
        "payment_method": "pm_card_visa",
        "items": PRICED,
        "total_amount": 1250,
        "currency": "EUR",
        "inventory_check": "live",
    }
    context.update(extra)
    return cast(OrderContext, context)


async def log_rows(db: Database, order_id: str) -> int:
    row = await db.fetch_one("SELECT COUNT(*) AS n FROM saga_log WHERE order_id = ?", order_id)
    assert row is not None
    return int(row["n"])


async def saga_status(db: Database, order_id: str) -> str:
    row = await db.fetch_one("SELECT saga_status FROM orders WHERE id = ?", order_id)
    assert row is not None
    return str(row["saga_status"])


# --- create and get ---------------------------------------------------------------------------


def test_a_new_order_is_pending_and_unpriced(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        await create(repo, "ord-1", "key-1")

        order = await repo.get("ord-1")
        assert order is not None
        assert order["id"] == "ord-1"
        assert order["status"] == OrderStatus.PENDING
        assert order["customer_id"] == "cus_42"
        assert order["payment_method"] == "pm_card_visa"
        assert order["items"] == [
            {"sku": "A", "name": None, "quantity": 2, "unit_price": None, "amount": None},
            {"sku": "B", "name": None, "quantity": 1, "unit_price": None, "amount": None},
        ]
        assert order["reservation"] == "none"
        for field in ("total_amount", "currency", "inventory_check", "payment_id", "failure_reason"):
            assert order[field] is None, field
        assert order["pending_reason"] is None
        assert order["created_at"] == order["updated_at"]
        assert order["created_at"].endswith("Z")
        assert order["saga"] == []
        assert await saga_status(db, "ord-1") == "running"

        assert "saga" not in (await repo.get("ord-1", with_saga=False) or {})
        assert await repo.get("ord-404") is None

        found = await repo.by_key("key-1")
        assert found is not None
        assert (found["id"], found["request_hash"], found["created_at"]) == (
            "ord-1",
            "hash-of-ord-1",
            order["created_at"],
        )
        assert await repo.by_key("key-404") is None
        # An expired key is forgotten: it no longer names the order, and a new order may take it.
        await repo.forget_key("ord-1", "key-1")
        assert await repo.by_key("key-1") is None

    with_db(metadata, scenario)


def test_a_taken_idempotency_key_stores_nothing_and_says_so(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        assert await create(repo, "ord-1", "key-1") is True

        assert await create(repo, "ord-2", "key-1", customer_id="someone-else") is False
        assert await repo.get("ord-2") is None
        found = await repo.by_key("key-1")
        assert found is not None and found["id"] == "ord-1"

        # Orders without a key do not clash with each other; an id that does is a storage error.
        await create(repo, "ord-3", None)
        await create(repo, "ord-4", None)
        assert await repo.get("ord-4") is not None
        with pytest.raises(IntegrityError):
            await create(repo, "ord-4", None)

    with_db(metadata, scenario)


def test_concurrent_creates_with_one_key_store_one_order(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        results = await asyncio.gather(*(create(repo, f"ord-{i}", "key-1") for i in range(8)))
        assert sorted(results) == [False] * 7 + [True]
        stored = await repo.by_key("key-1")
        assert stored is not None
        assert [o["id"] for o in (await repo.recent(status=None, limit=10)).items] == [stored["id"]]

    with_db(metadata, scenario, pool_size=8)


def test_a_caller_refused_for_a_taken_key_finds_the_order_that_took_it(with_db: Any) -> None:
    """The refusal comes only once the order that took the key can be read (on SQLite it may be in
    the same group commit, not yet committed, when the key is refused)."""

    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)

        async def place(i: int) -> str:
            if await create(repo, f"ord-{i}", "key-1"):
                return "created"
            return "replayed" if await repo.by_key("key-1") is not None else "taken but not found"

        results = await asyncio.gather(*(place(i) for i in range(6)))
        assert sorted(results) == ["created"] + ["replayed"] * 5

    with_db(metadata, scenario, pool_size=8)


def test_an_order_the_database_refuses_does_not_take_the_others_down(with_db: Any) -> None:
    """On PostgreSQL new orders are inserted many a statement: a refused batch is written again one
    order at a time, so only the order at fault fails (PostgreSQL text cannot hold NUL)."""

    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        names = ["cus_1", "cus_2", "bad\x00", "cus_4", "cus_5"]
        results = await asyncio.gather(
            *(create(repo, f"ord-{i}", f"key-{i}", customer_id=name) for i, name in enumerate(names)),
            return_exceptions=True,
        )
        good = [r for i, r in enumerate(results) if i != 2]
        assert good == [True] * 4
        stored = {o["id"] for o in (await repo.recent(status=None, limit=10)).items}
        assert {"ord-0", "ord-1", "ord-3", "ord-4"} <= stored
        if db.writes_in_one_statement:  # PostgreSQL, batched; SQLite stores the NUL
            assert isinstance(results[2], Exception) and "ord-2" not in stored

    with_db(metadata, scenario, pool_size=8)


# --- record: the saga log port ----------------------------------------------------------------

ENDS = [
    pytest.param(None, OrderStatus.PENDING, "running", None, None, id="running"),
    pytest.param(SagaEnd(SagaStatus.COMPLETED), OrderStatus.PLACED, "completed", None, None, id="completed"),
    pytest.param(
        SagaEnd(SagaStatus.COMPENSATED, PAY, "card_declined"),
        OrderStatus.PAYMENT_FAILED,
        "compensated",
        "card_declined",
        None,
        id="payment-failed",
    ),
    pytest.param(
        SagaEnd(SagaStatus.COMPENSATED, RESERVE, "out_of_stock"),
        OrderStatus.OUT_OF_STOCK,
        "compensated",
        "out_of_stock",
        None,
        id="out-of-stock",
    ),
    pytest.param(
        SagaEnd(SagaStatus.COMPENSATED, CHECK, "unknown_sku"),
        "REJECTED",
        "compensated",
        "unknown_sku",
        None,
        id="rejected",
    ),
    pytest.param(
        SagaEnd(SagaStatus.COMPENSATION_FAILED, "refund_payment", "refund_failed"),
        OrderStatus.COMPENSATION_FAILED,
        "compensation_failed",
        "refund_failed",
        None,
        id="compensation-failed",
    ),
    pytest.param(
        SagaEnd(SagaStatus.WAITING, PAY, "payment_outcome_unknown"),
        OrderStatus.PENDING,
        "waiting",
        None,
        "payment_outcome_unknown",
        id="waiting",
    ),
]


@pytest.mark.parametrize(("end", "status", "saga", "failure", "pending"), ENDS)
def test_record_writes_the_log_row_and_the_order_state_together(
    with_db: Any, end: SagaEnd | None, status: str, saga: str, failure: str | None, pending: str | None
) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        await create(repo, "ord-1")
        before = await repo.get("ord-1")
        assert before is not None

        context = priced_context("ord-1", reservation="held", payment_id="pay_123")
        step = entry(PAY, "done" if end is None else "failed", reason=None if end is None else end.reason)
        await OrderLog(repo).record("ord-1", step, context, end)

        order = await repo.get("ord-1")
        assert order is not None
        assert order["status"] == status
        assert await saga_status(db, "ord-1") == saga
        assert order["failure_reason"] == failure
        assert order["pending_reason"] == pending
        assert order["items"] == PRICED
        assert (order["total_amount"], order["currency"]) == (1250, "EUR")
        assert (order["inventory_check"], order["reservation"], order["payment_id"]) == ("live", "held", "pay_123")
        assert order["updated_at"] >= before["updated_at"]
        assert order["created_at"] == before["created_at"]
        assert [(s["kind"], s["name"], s["outcome"]) for s in order["saga"]] == [("step", PAY, step.outcome)]

    with_db(metadata, scenario)


def test_a_waiting_saga_that_completes_clears_its_pending_reason(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        await create(repo, "ord-1")
        context = priced_context("ord-1", reservation="held")
        await OrderLog(repo).record(
            "ord-1", entry(PAY, "unknown"), context, SagaEnd(SagaStatus.WAITING, PAY, "timeout")
        )
        waiting = await repo.get("ord-1")
        assert waiting is not None and (waiting["status"], waiting["pending_reason"]) == (
            OrderStatus.PENDING,
            "timeout",
        )

        # Recovery: the end alone, with no new step row.
        await OrderLog(repo).record("ord-1", None, {**context, "payment_id": "pay_9"}, SagaEnd(SagaStatus.COMPLETED))
        placed = await repo.get("ord-1")
        assert placed is not None
        assert (placed["status"], placed["pending_reason"], placed["failure_reason"]) == (
            OrderStatus.PLACED,
            None,
            None,
        )
        assert placed["payment_id"] == "pay_9"
        assert len(placed["saga"]) == 1

    with_db(metadata, scenario)


def test_get_returns_the_saga_log_in_order_with_details_decoded(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        await create(repo, "ord-1")
        await create(repo, "ord-2")
        context = priced_context("ord-1")
        steps = [
            entry(CHECK, detail={"request": {"items": [{"sku": "A", "quantity": 2}]}, "answer": [1, 2.5, None]}),
            entry(RESERVE, detail={"request": {"order_id": "ord-1"}}, offset_ms=20),
            entry(PAY, "failed", reason="card_declined", detail={"status": "DECLINED", "ok": False}, offset_ms=40),
            entry("release_inventory", kind="compensation", attempt=1, offset_ms=60),
            entry("release_inventory", "failed", kind="compensation", reason="release_failed", attempt=2, offset_ms=80),
            entry("release_inventory", kind="compensation", attempt=3, offset_ms=100),
        ]
        for i, step in enumerate(steps):
            end = SagaEnd(SagaStatus.COMPENSATED, PAY, "card_declined") if i == len(steps) - 1 else None
            await OrderLog(repo).record("ord-1", step, context, end)
        await OrderLog(repo).record(
            "ord-2", entry(CHECK, "failed", reason="unknown_sku"), priced_context("ord-2"), None
        )

        order = await repo.get("ord-1")
        assert order is not None
        assert order["status"] == OrderStatus.PAYMENT_FAILED
        assert order["saga"] == [
            {
                "saga": "order",
                "kind": step.kind,
                "name": step.name,
                "outcome": step.outcome,
                "reason": step.reason,
                "attempt": step.attempt,
                "started_at": step.started_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                "ended_at": step.ended_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                "duration_ms": 12.5,
                "detail": dict(step.detail),
            }
            for step in steps
        ]
        assert order["saga"][0]["started_at"] == "2025-03-01T12:00:00.250000Z"
        assert [s["name"] for s in (await repo.get("ord-2") or {})["saga"]] == [CHECK]

    with_db(metadata, scenario)


def test_record_is_one_transaction(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        await create(repo, "ord-1")

        # The write fails in the database after the log row was written: the catalog row that comes
        # second breaks a NOT NULL constraint (the statements run in this order, see below). Neither
        # the log row nor the order's new state stays.
        broken = priced_context("ord-1", catalog_update=[Item("A", None, 500, "EUR", 7)])  # type: ignore[arg-type]
        with pytest.raises(IntegrityError):
            await OrderLog(repo).record("ord-1", entry(CHECK), broken, SagaEnd(SagaStatus.COMPLETED))
        order = await repo.get("ord-1")
        assert order is not None
        assert (order["status"], order["saga"], order["total_amount"]) == (OrderStatus.PENDING, [], None)
        assert await log_rows(db, "ord-1") == 0

        # A log row for an order that does not exist is refused (the foreign key), and nothing is written.
        with pytest.raises(IntegrityError):
            await OrderLog(repo).record("ord-404", entry(CHECK), priced_context("ord-404"), None)
        assert await log_rows(db, "ord-404") == 0

    with_db(metadata, scenario)


def test_a_saga_write_puts_the_log_row_first() -> None:
    """What test_record_is_one_transaction relies on: the log row is written before the catalog and
    the order, so a failure in either comes after it."""
    write = SagaWrite(
        "ord-1",
        [{c: None for c in LOG_COLUMNS}],
        [Item("A", "Alpha", 1, "EUR", 1)],
        dict.fromkeys(ORDER_CHANGES),
        "keep",
        None,
        "t",
    )
    sqls = [sql for sql, _ in write.statements()]
    assert [sql.split()[:3] for sql in sqls] == [
        ["INSERT", "INTO", "saga_log"],
        ["INSERT", "INTO", "catalog"],
        ["UPDATE", "orders", "SET"],
        ["INSERT", "INTO", "events"],  # what the UPDATE decided: after it
    ]


def test_record_remembers_the_catalog_update_once(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        catalog = SqlCatalog(db)
        await create(repo, "ord-1")
        items = [Item("A", "Alpha", 500, "EUR", 7), Item("B", "Beta", 250, "EUR", 3)]
        context = priced_context("ord-1", catalog_update=items)

        await OrderLog(repo).record("ord-1", entry(CHECK), context, None)
        assert await catalog.skus() == {"A", "B"}
        assert "catalog_update" not in context

        # What the catalog learnt is what the fallback offers.
        answer = await catalog.hold("ord-2", [("A", 7)])
        assert (answer.items, answer.missing, answer.short) == ([items[0]], [], [])

    with_db(metadata, scenario)


# --- recent -----------------------------------------------------------------------------------


def test_recent_is_newest_first_and_filters_by_status(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        # Ids that sort like their creation, should two creations share a microsecond.
        for order_id in ("ord-1", "ord-2", "ord-3", "ord-4"):
            await create(repo, order_id)
        await OrderLog(repo).record("ord-2", entry(PAY), priced_context("ord-2"), SagaEnd(SagaStatus.COMPLETED))
        await OrderLog(repo).record("ord-4", entry(PAY), priced_context("ord-4"), SagaEnd(SagaStatus.COMPLETED))
        await OrderLog(repo).record(
            "ord-3",
            entry(PAY, "failed"),
            priced_context("ord-3"),
            SagaEnd(SagaStatus.COMPENSATED, PAY, "card_declined"),
        )

        def ids(page: Page[dict[str, Any]]) -> list[str]:
            return [o["id"] for o in page.items]

        assert ids(await repo.recent(status=None, limit=50)) == ["ord-4", "ord-3", "ord-2", "ord-1"]
        assert ids(await repo.recent(status=None, limit=2)) == ["ord-4", "ord-3"]
        assert ids(await repo.recent(status=OrderStatus.PLACED, limit=50)) == ["ord-4", "ord-2"]
        assert ids(await repo.recent(status=OrderStatus.PLACED, limit=1)) == ["ord-4"]
        assert ids(await repo.recent(status=OrderStatus.PENDING, limit=50)) == ["ord-1"]
        assert ids(await repo.recent(status=OrderStatus.PAYMENT_FAILED, limit=50)) == ["ord-3"]
        assert ids(await repo.recent(status=OrderStatus.OUT_OF_STOCK, limit=50)) == []
        # The list shows orders, not their logs.
        assert all("saga" not in o for o in (await repo.recent(status=None, limit=50)).items)
        # Page by page: each page's cursor names its last order, and the next page starts after it.
        first = await repo.recent(status=None, limit=3)
        assert ids(first) == ["ord-4", "ord-3", "ord-2"] and first.next is not None
        rest = await repo.recent(status=None, limit=3, after=ORDERS.after(first.next))
        assert ids(rest) == ["ord-1"] and rest.next is None
        assert (await repo.recent(status=None, limit=4)).next is None
        placed = await repo.recent(status=OrderStatus.PLACED, limit=1)
        assert ids(await repo.recent(status=OrderStatus.PLACED, limit=1, after=ORDERS.after(placed.next))) == ["ord-2"]

    with_db(metadata, scenario)


# --- the fallback catalog ---------------------------------------------------------------------

ALPHA = Item("A", "Alpha", 500, "EUR", 5)
BETA = Item("B", "Beta", 250, "EUR", 2)


def test_hold_takes_units_from_the_last_known_stock(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        catalog = SqlCatalog(db)
        await catalog.remember([ALPHA, BETA])

        first = await catalog.hold("ord-1", [("A", 3), ("B", 2)])
        assert (first.items, first.missing, first.short) == ([ALPHA, BETA], [], [])
        assert await catalog.held() == {"A": 3, "B": 2}

        # The next order sees what the first one left.
        second = await catalog.hold("ord-2", [("A", 3)])
        assert second.short == ["A"]
        assert second.items == [Item("A", "Alpha", 500, "EUR", 2)]
        assert await catalog.held() == {"A": 3, "B": 2}

        third = await catalog.hold("ord-3", [("A", 2)])
        assert third.short == [] and third.items[0].available == 2
        assert await catalog.held() == {"A": 5, "B": 2}

    with_db(metadata, scenario)


def test_hold_is_idempotent_per_order(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        catalog = SqlCatalog(db)
        await catalog.remember([ALPHA, BETA])
        await catalog.hold("ord-1", [("A", 4)])

        # Asking again for the same order: its own hold does not count against it, nor is it taken twice.
        again = await catalog.hold("ord-1", [("A", 4)])
        assert (again.missing, again.short) == ([], [])
        assert again.items == [ALPHA]
        assert await catalog.held() == {"A": 4}

    with_db(metadata, scenario)


def test_hold_reports_missing_and_short_skus_and_holds_nothing(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        catalog = SqlCatalog(db)
        await catalog.remember([ALPHA, BETA])

        missing = await catalog.hold("ord-1", [("A", 1), ("GHOST", 1), ("B", 1)])
        assert missing.missing == ["GHOST"]
        assert missing.short == []
        assert missing.items == [ALPHA, BETA]

        short = await catalog.hold("ord-2", [("A", 1), ("B", 3)])
        assert short.missing == []
        assert short.short == ["B"]

        both = await catalog.hold("ord-3", [("B", 9), ("NOPE", 1)])
        assert (both.missing, both.short) == (["NOPE"], ["B"])

        assert await catalog.held() == {}

    with_db(metadata, scenario)


def test_unhold_gives_the_units_back(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        catalog = SqlCatalog(db)
        await catalog.remember([ALPHA, BETA])
        await catalog.hold("ord-1", [("A", 5), ("B", 1)])
        await catalog.hold("ord-2", [("B", 1)])
        assert (await catalog.hold("ord-3", [("A", 1)])).short == ["A"]

        await catalog.unhold("ord-1")
        assert await catalog.held() == {"B": 1}
        await catalog.unhold("ord-1")  # idempotent
        await catalog.unhold("ord-404")
        assert await catalog.held() == {"B": 1}

        answer = await catalog.hold("ord-3", [("A", 5)])
        assert answer.short == [] and answer.items == [ALPHA]
        assert await catalog.held() == {"A": 5, "B": 1}

    with_db(metadata, scenario)


def test_remember_replaces_what_the_catalog_knew(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        catalog = SqlCatalog(db)
        await catalog.remember([ALPHA])
        await catalog.hold("ord-1", [("A", 2)])

        restocked = Item("A", "Alpha v2", 450, "EUR", 10)
        await catalog.remember([restocked, BETA])
        assert await catalog.skus() == {"A", "B"}
        # Holds still count against the new stock.
        answer = await catalog.hold("ord-2", [("A", 8)])
        assert answer.short == []
        assert answer.items == [Item("A", "Alpha v2", 450, "EUR", 8)]
        assert (await catalog.hold("ord-3", [("A", 1)])).short == ["A"]

    with_db(metadata, scenario)


def test_concurrent_holds_never_take_more_than_the_last_known_stock(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        catalog = SqlCatalog(db)
        await catalog.remember([ALPHA])  # 5 units of A

        answers = await asyncio.gather(*(catalog.hold(f"ord-{i}", [("A", 1)]) for i in range(20)))

        granted = [a for a in answers if not a.short and not a.missing]
        held = await catalog.held()
        assert held.get("A", 0) == len(granted)
        assert held.get("A", 0) <= 5, f"{held['A']} units held of 5 known"

    with_db(metadata, scenario, pool_size=20)


def test_concurrent_unholds_of_one_order_give_its_units_back_once(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        catalog = SqlCatalog(db)
        await catalog.remember([ALPHA, BETA])  # 5 of A, 2 of B
        await catalog.hold("ord-1", [("A", 3), ("B", 1)])
        await catalog.hold("ord-2", [("A", 2)])

        await asyncio.gather(*(catalog.unhold("ord-1") for _ in range(10)))

        assert await catalog.held() == {"A": 2}
        assert (await catalog.hold("ord-3", [("A", 4)])).short == ["A"]
        assert (await catalog.hold("ord-4", [("A", 3), ("B", 2)])).short == []

    with_db(metadata, scenario, pool_size=10)


def test_remember_takes_a_catalog_of_thousands_of_skus(with_db: Any) -> None:
    """More rows than one statement may carry parameters for (PostgreSQL's numbered parameters)."""

    async def scenario(db: Database) -> None:
        catalog = SqlCatalog(db)
        items = [Item(f"SKU-{i:05d}", f"Item {i}", 100 + i, "USD", i) for i in range(2_500)]
        await catalog.remember(items)
        assert len(await catalog.skus()) == 2_500
        answer = await catalog.hold("ord-1", [("SKU-02499", 2_499)])
        assert answer.short == [] and answer.items == [items[-1]]

    with_db(metadata, scenario)
