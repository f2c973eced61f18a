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
    with pgserver.replicated(postgres_server.bindir, standby_name="multi_host_standby", synchronous=False) as pair:
        yield pair


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


def test_a_write_on_a_standby_and_a_lost_connection_are_not_refusals_of_the_statement(pair: Any) -> None:
    """``db.refusals`` mean the statement was refused for what it is (nothing of it stands, and it
    would fail again anywhere): a store then writes a batch's rows again one at a time. A standby
    that takes no writes, and a connection lost in the middle of a statement (after which a write
    may have committed), are not: they are asyncpg.PostgresErrors all the same."""
    import asyncpg

    primary, standby = pair
    primary.create_database("refusals")
    assert _wait_for_database(standby, "refusals")

    async def errors() -> list[Exception]:
        seen: list[Exception] = []
        on_primary = await db.connect(primary.url("refusals"), pool_size=2)
        on_standby = await db.connect(standby.url("refusals"), pool_size=1)
        try:
            await on_primary.execute_one("CREATE TABLE numbers (n INTEGER)")
            try:  # a value the column cannot take: a refusal
                await on_primary.execute_one("INSERT INTO numbers VALUES (CAST(? AS INTEGER))", "not a number")
            except Exception as exc:
                seen.append(exc)
            try:  # a standby in recovery: read-only
                await on_standby.execute_one("CREATE TABLE elsewhere (n INTEGER)")
            except Exception as exc:
                seen.append(exc)

            async def cut() -> None:  # the server ends the session in the middle of a statement
                deadline = time.monotonic() + 30
                while not await on_primary.execute_one(  # once the statement runs there
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
                ):
                    assert time.monotonic() < deadline, "the statement never started"

            try:
                await asyncio.gather(on_primary.execute_one("SELECT pg_sleep(10)"), cut())
            except Exception as exc:
                seen.append(exc)
            return seen
        finally:
            await on_primary.close()
            await on_standby.close()

    async def refusals() -> tuple[type[Exception], ...]:
        database = await db.connect(primary.url("refusals"), pool_size=1)
        await database.close()
        return database.refusals

    bad_value, read_only, cut = asyncio.run(errors())
    refused = asyncio.run(refusals())
    assert isinstance(bad_value, asyncpg.DataError) and isinstance(bad_value, refused)
    # Both come out of the port as Unavailable (a 503), with what the driver said as their cause.
    assert isinstance(read_only, db.Unavailable) and read_only.kind == "read_only", repr(read_only)
    assert isinstance(read_only.__cause__, asyncpg.ReadOnlySQLTransactionError)
    assert not isinstance(read_only, refused)
    assert isinstance(cut, db.Unavailable) and cut.kind == "unreachable", repr(cut)
    assert isinstance(cut.__cause__, asyncpg.PostgresError) and not isinstance(cut, refused), repr(cut)
