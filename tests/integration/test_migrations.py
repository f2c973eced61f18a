"""Each service's migrations build exactly the schema its code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from oms import db
from oms.migrations import metadata_of, migrate

SERVICES = ["order", "inventory", "payment"]


def differences(url: str, service: str) -> list[Any]:
    def compare(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata_of(service)))

    return list(asyncio.run(db.run_sync(url, compare)))


def revision(url: str) -> str | None:
    found: str | None = asyncio.run(db.run_sync(url, lambda c: MigrationContext.configure(c).get_current_revision()))
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_build_the_declared_schema_and_run_again_harmlessly(database_url: str, service: str) -> None:
    asyncio.run(migrate(database_url, service))
    assert revision(database_url) is not None
    assert differences(database_url, service) == []
    asyncio.run(migrate(database_url, service))
    assert differences(database_url, service) == []


def test_replicas_starting_at_once_migrate_once(database_url: str) -> None:
    async def together() -> None:
        await asyncio.gather(*(migrate(database_url, "order") for _ in range(4)))

    asyncio.run(together())
    assert differences(database_url, "order") == []


def test_tables_made_before_migrations_are_adopted(database_url: str) -> None:
    asyncio.run(db.create_schema(database_url, metadata_of("payment")))
    assert revision(database_url) is None
    asyncio.run(migrate(database_url, "payment"))
    assert revision(database_url) == "0001"
    assert differences(database_url, "payment") == []


def test_order_0002_counts_the_holds_made_before_it(database_url: str) -> None:
    """catalog.held starts as the sum of the fallback holds already there."""
    from alembic import command

    from oms.migrations import config

    def at_0001(connection: sa.Connection) -> None:
        command.upgrade(config("order", connection), "0001")
        connection.execute(
            sa.text(
                "INSERT INTO catalog (sku, name, unit_price, currency, available, synced_at) VALUES "
                "('A', 'Alpha', 100, 'USD', 9, 't'), ('B', 'Beta', 100, 'USD', 9, 't')"
            )
        )
        connection.execute(
            sa.text("INSERT INTO fallback_holds (order_id, sku, quantity) VALUES ('o1', 'A', 2), ('o2', 'A', 3)")
        )

    asyncio.run(db.run_sync(database_url, at_0001))
    asyncio.run(migrate(database_url, "order"))
    held = asyncio.run(
        db.run_sync(database_url, lambda c: dict(c.execute(sa.text("SELECT sku, held FROM catalog")).all()))
    )
    assert held == {"A": 5, "B": 0}
    assert differences(database_url, "order") == []
