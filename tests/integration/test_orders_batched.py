"""OrderService's group writes on PostgreSQL: many orders' saga writes a statement, and the row
locks they take in the same order as every other statement that locks several rows."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
from test_orders_repository import create

from oms.db import Database
from oms.orders.batched import RECORD_SQL, SagaWrite, _record_arrays
from oms.orders.ports import Item
from oms.orders.repository import OrderRepository
from oms.orders.schema import metadata

pytestmark = pytest.mark.postgres

CHANGES = {
    "items": None, "status": "PENDING", "saga_name": "order", "saga_status": "running", "inventory_check": None,
    "reservation": "none", "total_amount": None, "currency": None, "payment_id": None, "failure_reason": None,
    "pending_reason": None, "updated_at": "2026-01-01T00:00:00.000000Z",
}  # fmt: skip


@pytest.fixture
def database_url(request: pytest.FixtureRequest, postgres_server: Any) -> Iterator[str]:
    """PostgreSQL only: the group writes are PostgreSQL's (SQLite has its own group commit)."""
    name = f"batched_{request.node.name.lower().replace('[', '_').replace(']', '')}"[:63]
    url: str = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


async def _outcome(db: Database, writes: list[SagaWrite]) -> str:
    try:
        await db.execute_one(RECORD_SQL, *_record_arrays(writes))
        return "ok"
    except Exception as exc:
        return type(exc).__name__


def test_concurrent_batches_upserting_the_same_skus_never_deadlock(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        for k in range(3):
            await create(repo, f"ord-{k}")
        skus = [f"S{i:03d}" for i in range(200)]
        outcomes: list[str] = []
        for round_ in range(8):
            writes = []
            for k in range(3):
                order = skus[:]
                random.Random(round_ * 10 + k).shuffle(order)
                items = [Item(s, s, 100, "USD", 5) for s in order]
                writes.append(SagaWrite(f"ord-{k}", [], items, CHANGES, "keep", None, "2026-01-01T00:00:00.000000Z"))
            outcomes += await asyncio.gather(*(_outcome(db, [w]) for w in writes))
        assert set(outcomes) == {"ok"}, outcomes

    with_db(metadata, scenario, pool_size=8)


def test_batched_writes_and_lease_renewal_never_deadlock(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        repo = OrderRepository(db)
        ids = [f"o{i:04d}" for i in range(256)]
        for order_id in ids:
            await create(repo, order_id, owner="me", lease_until="2030-01-01T00:00:00Z")
        rng = random.Random(1)

        async def batch(k: int) -> str:
            part = ids[k * 64 : (k + 1) * 64]
            rng.shuffle(part)
            return await _outcome(
                db, [SagaWrite(i, [], [], CHANGES, "keep", None, "2026-01-01T00:00:00.000000Z") for i in part]
            )

        async def renew() -> str:
            try:
                await repo.renew("me", "2031-01-01T00:00:00Z", ids)
                return "ok"
            except Exception as exc:
                return type(exc).__name__

        outcomes: list[str] = []
        for _ in range(10):
            outcomes += await asyncio.gather(batch(0), batch(1), renew(), batch(2), batch(3))
        assert set(outcomes) == {"ok"}, outcomes

    with_db(metadata, scenario, pool_size=8)
