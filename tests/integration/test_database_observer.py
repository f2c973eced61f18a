"""What a real database tells its observer (oms.db.Observer): each fault once, whichever caller met
it, and on SQLite whether a write met it, and the first write that commits after."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from oms.db import Unavailable, connect, create_schema
from oms.db.sqlite import SqliteDatabase

metadata = sa.MetaData()
sa.Table("t", metadata, sa.Column("v", sa.Text))


class Told:
    def __init__(self) -> None:
        self.faults: list[tuple[str, bool]] = []
        self.wrote = 0

    def failed(self, error: Unavailable, *, writing: bool) -> None:
        self.faults.append((error.kind, writing))

    def wrote_(self) -> None:
        self.wrote += 1


def observer(told: Told) -> Any:
    class Observer:
        def failed(self, error: Unavailable, *, writing: bool) -> None:
            told.failed(error, writing=writing)

        def wrote(self) -> None:
            told.wrote_()

    return Observer()


async def _insert(db: SqliteDatabase, rows: int) -> None:
    async with db.transaction() as tx:
        for _ in range(rows):
            await tx.execute("INSERT INTO t VALUES (?)", "x" * 2000)


def test_sqlite_tells_a_full_file_as_a_write_fault_once_then_the_next_write_that_commits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'full.db'}"

    async def main() -> None:
        await create_schema(url, metadata)
        db = await connect(url)
        assert isinstance(db, SqliteDatabase)
        told = Told()
        db.observer = observer(told)
        try:
            await _insert(db, 1)
            assert told.faults == [] and told.wrote == 0  # nothing told while all goes well
            pages = (await db.fetch_all("PRAGMA page_count"))[0]["page_count"]
            # The file may not grow (SQLITE_FULL, as on a full disk), on the writing connection.
            db._conn.execute(f"PRAGMA max_page_count = {pages}")
            callers = [asyncio.ensure_future(_insert(db, 20)) for _ in range(3)]
            outcomes = await asyncio.gather(*callers, return_exceptions=True)
            assert all(isinstance(o, Unavailable) and o.kind == "disk_full" for o in outcomes), outcomes
            assert told.faults and set(told.faults) == {("disk_full", True)}
            assert len(told.faults) <= len(callers)  # one per fault met, not one per layer it crossed
            await db.ping()  # a read does not show it
            db._conn.execute(f"PRAGMA max_page_count = {pages * 100}")
            await _insert(db, 20)
            assert told.wrote == 1
            await _insert(db, 1)
            assert told.wrote == 1  # the first write after a failed one only
            await db.ping(write=True)  # a write that commits, and changes nothing
            assert (await db.fetch_all("SELECT count(*) AS n FROM t"))[0]["n"] == 22
        finally:
            await db.close()

    asyncio.run(main())


@pytest.mark.postgres
def test_postgres_tells_a_statement_that_times_out_as_a_read(postgres_server: Any) -> None:
    url = postgres_server.create_database("observer_timeout")

    async def main() -> None:
        db = await connect(url, statement_timeout=0.2)
        told = Told()
        db.observer = observer(told)
        try:
            await db.ping(write=True)  # a primary: it takes writes
            with pytest.raises(Unavailable) as raised:
                await db.fetch_all("SELECT pg_sleep(2)")
            assert raised.value.kind == "timeout"
            assert told.faults == [("timeout", False)]
        finally:
            await db.close()

    try:
        asyncio.run(main())
    finally:
        postgres_server.drop_database("observer_timeout")
