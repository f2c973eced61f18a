"""A database URL naming several hosts (``host1:port1,host2:port2``, ``target_session_attrs=read-write``),
as for a primary and its hot standby: the migrations and the services' pool both connect to the host
that takes writes, passing over a host that is down and one that is a standby."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.migration import MigrationContext

import pgserver
from oms import db
from oms.migrations import migrate

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pair(postgres_server: pgserver.PostgresServer) -> Iterator[tuple[pgserver.PostgresServer, pgserver.PostgresServer]]:
    """A primary and its (asynchronous) hot standby. ``postgres_server`` first: it finds the binaries,
    or skips or fails the test as the suite is told to."""
    primary = pgserver.start_primary(postgres_server.bindir)
    try:
        standby = primary.standby("multi_host_standby")
        try:
            yield primary, standby
        finally:
            standby.stop()
    finally:
        primary.stop()


def revision(url: str) -> str | None:
    found: str | None = asyncio.run(db.run_sync(url, lambda c: MigrationContext.configure(c).get_current_revision()))
    return found


def test_a_host_that_is_down_and_a_standby_are_passed_over_for_the_primary(pair: Any) -> None:
    primary, standby = pair
    primary.create_database("multi_host")
    # Until the standby has replayed the new database, a connection to it fails (no such database),
    # and asyncpg takes that for an answer rather than trying the next host.
    assert _wait_for_database(standby, "multi_host")
    down = f"{pgserver.HOST}:{pgserver._free_port()}"  # nothing listens there: connection refused
    hosts = f"{down},{pgserver.HOST}:{standby.port},{pgserver.HOST}:{primary.port}"
    url = f"postgresql+asyncpg://{pgserver.SUPERUSER}@{hosts}/multi_host?target_session_attrs=read-write"

    asyncio.run(migrate(url, "payment"))  # SQLAlchemy and Alembic, on the primary
    assert revision(url) == revision(primary.url("multi_host")) is not None

    async def write_through_the_pool() -> tuple[int, bool]:
        database = await db.connect(url, pool_size=2)
        try:
            await database.execute_one("CREATE TABLE written (n INTEGER)")
            await database.execute_one("INSERT INTO written VALUES (?)", 7)
            row = await database.fetch_one("SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby")
            assert row is not None
            return int(row["port"]), bool(row["standby"])
        finally:
            await database.close()

    assert asyncio.run(write_through_the_pool()) == (primary.port, False)
    assert primary.fetch("multi_host", "SELECT n FROM written") == [{"n": 7}]


def test_without_target_session_attrs_the_first_host_that_answers_is_taken_even_a_standby(pair: Any) -> None:
    """Why the URL must say ``target_session_attrs=read-write``: without it, a standby listed first
    takes the connections, and every write fails."""
    primary, standby = pair
    primary.create_database("multi_host_any")
    hosts = f"{pgserver.HOST}:{standby.port},{pgserver.HOST}:{primary.port}"
    url = f"postgresql+asyncpg://{pgserver.SUPERUSER}@{hosts}/multi_host_any"

    async def where() -> bool:
        database = await db.connect(url, pool_size=1)
        try:
            row = await database.fetch_one("SELECT pg_is_in_recovery() AS standby")
            return bool(row and row["standby"])
        finally:
            await database.close()

    # The standby has the new database once it has replayed it (no synchronous replication here).
    assert _wait_for_database(standby, "multi_host_any")
    assert asyncio.run(where()) is True


def test_options_in_the_query_string_reach_asyncpg_in_migrations_too(postgres_server: Any) -> None:
    """SQLAlchemy's own URL handling would hand ``sslmode`` to asyncpg.connect() as an argument it has not."""
    url = postgres_server.create_database("multi_host_options") + "?sslmode=disable&target_session_attrs=read-write"
    asyncio.run(migrate(url, "inventory"))
    assert revision(url) is not None


def _wait_for_database(server: pgserver.PostgresServer, name: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.fetch("postgres", "SELECT 1 FROM pg_database WHERE datname = $1", name):
            return True
        time.sleep(0.05)
    return False
