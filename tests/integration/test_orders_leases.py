"""Which OrderService process drives which saga: leases, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from oms.db import Database
from oms.fields import utc_after, utc_now
from oms.orders.repository import OrderRepository
from oms.orders.schema import metadata
from oms.saga.engine import SagaEnd, SagaStatus

ACTIVE = ("running", "waiting")


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
        await repo.record("over", None, {"lines": [("A", 1)]}, SagaEnd(SagaStatus.COMPLETED))
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


def test_renew_keeps_running_sagas_and_lets_waiting_ones_lapse(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        await create(repo, "running", "me", -1)
        await create(repo, "waiting", "me", -1)
        await repo.record("waiting", None, {"lines": [("A", 1)]}, SagaEnd(SagaStatus.WAITING, "x", "y"))
        await repo.renew("me", utc_after(30))
        assert await repo.unfinished(now=utc_now()) == ["waiting"]

    with_db(metadata, scenario)
