"""Which OrderService process drives which saga: leases, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from oms.db import Database
from oms.orders.repository import OrderRepository
from oms.orders.saga import OrderContext
from oms.orders.saga_log import OrderLog
from oms.orders.schema import metadata
from oms.saga.engine import LogEntry, SagaEnd, SagaStatus
from oms.saga.policies import WaitingPolicy
from oms.utc import utc_after, utc_now

ACTIVE = ("running", "waiting")
T0 = datetime.now(UTC)


def context(order_id: str, **more: Any) -> OrderContext:
    return cast(OrderContext, {"saga": "order", "order_id": order_id, "lines": [("A", 1)],
                               "payment_method": "pm_card_visa", **more})  # fmt: skip


async def create(repo: OrderRepository, order_id: str, owner: str | None, lease_seconds: float) -> None:
    await repo.create(
        order_id=order_id,
        idempotency_key=None,
        request_hash="h",
        customer_id="c",
        payment_method="pm_card_visa",
        lines=[("A", 1)],
        owner=owner,
        lease_until=utc_after(lease_seconds) if owner else None,
    )


def test_only_lapsed_or_free_sagas_are_recovered_and_claimed_once(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        await create(repo, "live", "host:8000/1:aa", 60)
        await create(repo, "lapsed", "host:8000/1:aa", -1)
        await create(repo, "free", None, 0)
        await create(repo, "over", None, 0)
        await OrderLog(repo).record("over", None, context("over"), SagaEnd(SagaStatus.COMPLETED))
        assert sorted(await repo.unfinished(now=utc_now())) == ["free", "lapsed"]

        claims = await asyncio.gather(
            *(
                repo.claim("lapsed", owner=f"o{i}", until=utc_after(30), now=utc_now(), statuses=ACTIVE)
                for i in range(8)
            )
        )
        assert claims.count(True) == 1
        assert not await repo.claim("live", owner="other", until=utc_after(30), now=utc_now(), statuses=ACTIVE)
        assert not await repo.claim("over", owner="other", until=utc_after(30), now=utc_now(), statuses=ACTIVE)
        assert await repo.unfinished(now=utc_now()) == ["free"]

    with_db(metadata, scenario, pool_size=8)


def test_a_restarted_instance_frees_its_predecessors_leases_only(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        await create(repo, "mine", "host:8000/111:aa", 60)
        await create(repo, "neighbour", "host:8001/222:bb", 60)
        await create(repo, "lookalike", "host:80000/333:cc", 60)
        assert await repo.free_leases_of("host:8000/") == 1
        assert await repo.unfinished(now=utc_now()) == ["mine"]

    with_db(metadata, scenario)


def test_renew_keeps_the_running_sagas_named_and_lets_waiting_and_stopped_ones_lapse(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db, waiting=WaitingPolicy(0.01))
        await create(repo, "running", "me", -1)
        await create(repo, "waiting", "me", -1)
        await OrderLog(repo).record("waiting", None, context("waiting"), SagaEnd(SagaStatus.WAITING, "x", "y"))
        await create(repo, "stopped", "me", -1)  # running, but no longer driven by this process
        await repo.renew("me", utc_after(30), ["running", "waiting"])
        # One second on (no waiting for it: the clock is a parameter): past the waiting saga's 10 ms
        # pause, well inside the running one's renewed 30 s; the saga not named is not renewed.
        assert sorted(await repo.unfinished(now=utc_after(1))) == ["stopped", "waiting"]

    with_db(metadata, scenario)


def test_an_unanswered_question_asked_again_is_one_row_and_waits_longer_each_time(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db, waiting=WaitingPolicy(10, 25))
        await create(repo, "o", "me", 30)
        pauses = []
        for _ in range(4):
            entry = LogEntry("step", "process_payment", "unknown", "payment_outcome_unknown", {}, T0, T0, 1.0)
            before = datetime.now(UTC)
            await OrderLog(repo).record("o", entry, context("o"), SagaEnd(SagaStatus.WAITING, "process_payment", "x"))
            row = await db.fetch_one("SELECT lease_until FROM orders WHERE id = ?", "o")
            assert row is not None
            pauses.append(
                round((datetime.fromisoformat(row["lease_until"].replace("Z", "+00:00")) - before).total_seconds())
            )
        order = await repo.get("o")
        assert order is not None
        assert [(e["name"], e["attempt"]) for e in order["saga"]] == [("process_payment", 4)]
        assert pauses == [10, 20, 25, 25]

    with_db(metadata, scenario)


def test_recovery_can_leave_a_kind_of_saga_alone(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        await create(repo, "paid-on-fallback", None, 0)
        await create(repo, "mid-order", None, 0)
        deferred = context("paid-on-fallback", reservation="deferred")
        await OrderLog(repo).record("paid-on-fallback", None, deferred, SagaEnd(SagaStatus.COMPLETED))
        assert sorted(await repo.unfinished(now=utc_now())) == ["mid-order", "paid-on-fallback"]
        assert await repo.unfinished(now=utc_now(), skip=["reconcile"]) == ["mid-order"]

    with_db(metadata, scenario)


def test_a_process_lets_go_of_its_own_lease_only(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        await create(repo, "mine", "me", 60)
        await create(repo, "theirs", "them", 60)
        await repo.let_go("mine", "me")
        await repo.let_go("theirs", "me")
        assert await repo.unfinished(now=utc_now()) == ["mine"]

    with_db(metadata, scenario)
