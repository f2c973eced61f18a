"""A database that is away answers ``Unavailable`` through the port, whichever driver is under it,
within ``statement_timeout``, and the same ``Database`` works again once the server is back: a
PostgreSQL server of this test's own, crashed, started again and hung (its processes stopped)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

import pgfaults
import pgserver
from oms import db
from oms.db import Conflict, Unavailable

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_server() -> Iterator[pgserver.PostgresServer]:
    with pgfaults.own_server() as server:
        yield server


def test_postgres_away_crashed_and_hung_is_unavailable_and_then_usable_again(
    own_server: pgserver.PostgresServer,
) -> None:
    url = own_server.url()

    async def scenario() -> None:
        database = await db.connect(url, pool_size=2, statement_timeout=0.5)
        try:
            await database.execute_one("CREATE TABLE t (k INTEGER PRIMARY KEY)")
            await database.execute_one("INSERT INTO t VALUES (1)")
            with pytest.raises(db.IntegrityError):  # a refusal stays a refusal, not a fault
                await database.execute_one("INSERT INTO t VALUES (1)")

            own_server.kill()
            for call in (database.ping(), database.execute_one("INSERT INTO t VALUES (2)")):
                with pytest.raises(Unavailable) as away:
                    await call
                assert away.value.kind == "unreachable", away.value
            with pytest.raises(Unavailable):
                async with database.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES (3)")

            await asyncio.to_thread(own_server.start_again)  # it waits with an event loop of its own
            await _until_usable(database)
            assert [r["k"] for r in await database.fetch_all("SELECT k FROM t ORDER BY k")] == [1]

            with pgfaults.hung(own_server):
                began = time.monotonic()
                with pytest.raises(Unavailable) as hung:
                    await database.execute_one("INSERT INTO t VALUES (4)")
                waited = time.monotonic() - began
            assert hung.value.kind in ("timeout", "unreachable"), hung.value
            assert waited < 5, waited  # bounded by statement_timeout (0.5 s), never for ever
            await _until_usable(database)
            await database.execute_one("INSERT INTO t VALUES (5)")
            # The hung statement may have run once the server went on; nothing else did.
            assert {r["k"] for r in await database.fetch_all("SELECT k FROM t")} - {4} == {1, 5}
        finally:
            await database.close()

    asyncio.run(scenario())


async def _until_usable(database: db.Database, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            await database.ping()
            return
        except Unavailable:
            assert time.monotonic() < deadline, "the database never came back"
            await asyncio.sleep(0.05)


def test_a_serialization_failure_is_a_conflict_and_a_refusal(own_server: pgserver.PostgresServer) -> None:
    async def scenario() -> None:
        database = await db.connect(own_server.url(), pool_size=2)
        try:
            await database.execute_one("CREATE TABLE c (k INTEGER PRIMARY KEY, v INTEGER)")
            await database.execute_one("INSERT INTO c VALUES (1, 0)")
            with pytest.raises(Conflict) as conflict:
                async with database.transaction() as first:
                    await first.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                    await first.fetchone("SELECT v FROM c WHERE k = 1")
                    await database.execute_one("UPDATE c SET v = 1 WHERE k = 1")
                    await first.execute("UPDATE c SET v = 2 WHERE k = 1")
            assert isinstance(conflict.value, database.refusals)
        finally:
            await database.close()

    asyncio.run(scenario())
