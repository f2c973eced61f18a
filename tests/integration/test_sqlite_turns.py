"""Processes (here: connections with lock files of their own) sharing one SQLite file take turns."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from pathlib import Path

import pytest

from oms.db import SqliteDatabase


async def _write(db: SqliteDatabase, value: int) -> None:
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t VALUES (?)", value)


async def _until_turn_taken(path: str) -> None:
    """Until some connection holds the file's turn (its flock on ``<path>-writer``): a probe on a
    descriptor of its own cannot take it."""
    probe = os.open(path + "-writer", os.O_RDWR)
    try:
        for _ in range(1000):
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            fcntl.flock(probe, fcntl.LOCK_UN)
            await asyncio.sleep(0.005)
        raise AssertionError("no connection took the turn within 5 s")
    finally:
        os.close(probe)


def test_two_writers_on_one_file_take_turns_and_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")

    async def main() -> list[int]:
        a, b = SqliteDatabase(path), SqliteDatabase(path)
        try:
            async with a.transaction() as tx:
                await tx.execute("CREATE TABLE t (x INTEGER)")
            await asyncio.gather(*(_write(a if i % 2 else b, i) for i in range(400)))
            return sorted(r["x"] for r in await b.fetch_all("SELECT x FROM t"))
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(main()) == list(range(400))


def test_a_writer_cancelled_while_waiting_gives_its_turn_back(tmp_path: Path) -> None:
    """Waiting out a writer that takes no turns (a tool), then cancelled: the next process to write
    must not wait on the idle one."""
    path = str(tmp_path / "shared.db")

    async def main() -> None:
        a, b = SqliteDatabase(path), SqliteDatabase(path)
        async with a.transaction() as tx:
            await tx.execute("CREATE TABLE t (x INTEGER)")
        tool = sqlite3.connect(path, isolation_level=None)
        tool.execute("BEGIN IMMEDIATE")
        try:
            stuck = asyncio.create_task(_write(a, 1))
            await _until_turn_taken(path)  # a has the turn and waits for the tool's write lock
            stuck.cancel()
            await asyncio.gather(stuck, return_exceptions=True)
            tool.execute("COMMIT")
            await asyncio.wait_for(_write(b, 2), timeout=5)
        finally:
            tool.close()
            await a.close()  # closing lets go of a turn held by mistake, so a failure cannot hang
            await b.close()

    asyncio.run(main())


@pytest.mark.parametrize("moment", ["batch open", "commit under way"])
def test_close_waits_for_the_transactions_it_has_taken(tmp_path: Path, moment: str) -> None:
    """A service that stops while a transaction is between its block and its commit: the caller
    was promised a durable write, so close() commits it and only then closes (closing the
    connection under a commit in its thread failed the write, or crashed the process)."""
    path = str(tmp_path / "closing.db")

    async def main() -> None:
        db = SqliteDatabase(path)
        await db.execute_one("CREATE TABLE t (x INTEGER)")
        if moment == "commit under way":
            commit = db._commit

            def slow_commit() -> None:
                time.sleep(0.05)  # in the commit's thread: close() comes meanwhile
                commit()

            db._commit = slow_commit  # type: ignore[method-assign]
        writing = asyncio.create_task(_write(db, 7))
        await asyncio.sleep(0)  # the block has run; its commit is scheduled
        if moment == "commit under way":
            await asyncio.sleep(0.01)  # the commit has begun in its thread
        await db.close()
        await writing  # succeeds: its row is on disk

    asyncio.run(main())
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT x FROM t").fetchall() == [(7,)]
