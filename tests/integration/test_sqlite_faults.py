"""SQLite's file faults on real files, while many concurrent transactions share a group commit: a
file past its size limit (``RLIMIT_FSIZE``), a full file system (a small tmpfs) and a read-only
file (``chattr +i``). Every caller is told ``Unavailable`` or its transaction stands whole; none
stands in part; and once the fault is gone the same connection writes again, and its reading
connection reads what was committed.

The size limit is set in a child process of its own (this file run as a script): it applies to
every file the process writes. The small file system and the read-only file need root (a mount, the
immutable attribute); without it those tests are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import resource
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import oms
from filesystems import fill, small_file_system
from oms.db import IntegrityError, SqliteDatabase, Unavailable

PARTS = 3
"""A transaction ``key`` writes ``1 + key % PARTS`` rows: all of them stand, or none."""

WAVE = 40
"""Concurrent transactions at a time: the group commit makes one batch, or a few, of them."""

Outcomes = dict[int, str]
"""Each transaction's outcome: ``ok``, ``refused`` (its unique key clashed) or the fault's kind."""


async def _transaction(db: SqliteDatabase, key: int) -> str:
    try:
        async with db.transaction() as tx:
            for part in range(1 + key % PARTS):
                await tx.execute("INSERT INTO t VALUES (?, ?, ?)", key, part, os.urandom(800).hex())
            if key % 7 == 0:  # now and then one clashes with a row of its own: its other rows go too
                await tx.execute("INSERT INTO t VALUES (?, 0, '')", key)
    except Unavailable as exc:
        return exc.kind
    except IntegrityError:
        return "refused"
    return "ok"


async def _waves(db: SqliteDatabase, outcomes: Outcomes, *, until: Callable[[list[str]], bool], most: int) -> None:
    """Waves of ``WAVE`` concurrent transactions, at most ``most`` of them, until ``until`` says so."""
    for _ in range(most):
        start = max(outcomes, default=-1) + 1
        wave = await asyncio.gather(*(_transaction(db, key) for key in range(start, start + WAVE)))
        outcomes.update(zip(range(start, start + WAVE), wave, strict=True))
        if until(wave):
            return
    raise AssertionError(f"not within {most} waves: {Counter(outcomes.values())}")


def _faulted(wave: list[str]) -> bool:
    """No transaction of the wave stands (a refused one never does, fault or not)."""
    return "ok" not in wave and any(outcome != "refused" for outcome in wave)


def _healthy(wave: list[str]) -> bool:
    return all(outcome in ("ok", "refused") for outcome in wave)


async def _check(db: _Watched, outcomes: Outcomes, kinds: set[str], *, in_statements: bool = False) -> None:
    """Nothing half-written, nothing of a failed transaction, everything of a successful one; the
    connection idle and its turn given back; the reading connection agreeing with a new one.
    ``in_statements``: the fault hit statements (else only COMMITs)."""
    assert (db.abandoned > 0) == in_statements, db.abandoned
    assert not db._batch_open
    assert not db._conn.in_transaction
    probe = os.open(db.path + "-writer", os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: the turn was kept
    finally:
        os.close(probe)
    faults = Counter(o for o in outcomes.values() if o not in ("ok", "refused"))
    assert faults, "no transaction met the fault"
    assert set(faults) <= kinds, faults
    with contextlib.closing(sqlite3.connect(db.path)) as fresh:
        stored = dict(fresh.execute("SELECT key, count(*) FROM t GROUP BY key").fetchall())
    read = {row["key"]: row["n"] for row in await db.fetch_all("SELECT key, count(*) AS n FROM t GROUP BY key")}
    assert read == stored
    written = {key for key, outcome in outcomes.items() if outcome == "ok"}
    assert set(stored) == written
    assert all(count == 1 + key % PARTS for key, count in stored.items())


class _Watched(SqliteDatabase):
    """Counts the batches that SQLite rolled back by itself, in a statement (``_abandon``)."""

    abandoned = 0

    def _abandon(self, error: BaseException) -> None:
        self.abandoned += 1
        super()._abandon(error)


async def _open(path: Path, cache_pages: int | None) -> _Watched:
    db = _Watched(str(path))
    if cache_pages is not None:
        # A cache this small spills the batch's pages to the WAL while its statements run: the fault
        # then hits a statement, and SQLite rolls the whole batch back there, not at COMMIT.
        db._conn.execute(f"PRAGMA cache_size={cache_pages}")
    await db.execute_one("CREATE TABLE t (key INTEGER, part INTEGER, pad TEXT, PRIMARY KEY (key, part))")
    return db


CACHES = pytest.mark.parametrize("cache_pages", [None, 10], ids=["faults at commit", "faults in a statement"])


# -- a file past RLIMIT_FSIZE -----------------------------------------------------------------------


async def _past_size_limit(path: Path, cache_pages: int | None) -> None:
    db = await _open(path, cache_pages)
    outcomes: Outcomes = {}
    await _waves(db, outcomes, until=_healthy, most=1)
    # A little room over the WAL as it is: the next waves fill it.
    wal = os.stat(str(path) + "-wal").st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (wal + 64 * 1024, resource.RLIM_INFINITY))
    await _waves(db, outcomes, until=_faulted, most=20)
    await _waves(db, outcomes, until=_faulted, most=1)  # still failing, and still telling every caller
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    await _waves(db, outcomes, until=_healthy, most=1)
    # A write past the limit fails with EFBIG, which SQLite reports as SQLITE_IOERR_WRITE (a short
    # write, as on a full disk, would be SQLITE_FULL: SQLite writes the rest and meets EFBIG).
    await _check(db, outcomes, {"io"}, in_statements=cache_pages is not None)
    await db.close()


@CACHES
def test_a_file_past_its_size_limit(tmp_path: Path, cache_pages: int | None) -> None:
    # Python ignores SIGXFSZ, so the write fails with EFBIG instead of killing the process.
    src, tests = Path(oms.__file__).parents[1], Path(__file__).parents[1]
    child = subprocess.run(
        [sys.executable, __file__, "past_size_limit", str(tmp_path / "limited.db"), str(cache_pages or "")],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(tests)])},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert child.returncode == 0, child.stdout + child.stderr


# -- a full file system ----------------------------------------------------------------------------


def _run(main: Callable[[], Awaitable[None]]) -> None:
    async def run() -> None:
        await main()

    asyncio.run(run())


@CACHES
def test_a_full_file_system(tmp_path: Path, cache_pages: int | None) -> None:
    with small_file_system(tmp_path / "small", "2m") as small:

        async def main() -> None:
            db = await _open(small / "full.db", cache_pages)
            outcomes: Outcomes = {}
            await _waves(db, outcomes, until=_healthy, most=1)
            filler = fill(small, leave=96 * 1024)
            await _waves(db, outcomes, until=_faulted, most=20)
            await _waves(db, outcomes, until=_faulted, most=1)
            filler.unlink()
            await _waves(db, outcomes, until=_healthy, most=1)
            await _check(db, outcomes, {"disk_full"}, in_statements=cache_pages is not None)  # ENOSPC: SQLITE_FULL
            await db.close()

        _run(main)


# -- a read-only file ------------------------------------------------------------------------------


def test_a_file_made_read_only(tmp_path: Path) -> None:
    """The database and its WAL made immutable (``chattr +i``: root writes through file modes) while
    open: writes fail with EPERM, which SQLite reports as SQLITE_IOERR_WRITE. Not the ``-shm``: it is
    mapped in memory, and a store to a page of an immutable file kills the process with SIGBUS."""
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root")
    path = tmp_path / "frozen.db"
    frozen = [str(path), str(path) + "-wal"]

    def chattr(flag: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["chattr", flag, *frozen], capture_output=True)

    async def main() -> None:
        db = await _open(path, None)
        outcomes: Outcomes = {}
        await _waves(db, outcomes, until=_healthy, most=1)
        made = chattr("+i")
        if made.returncode != 0:
            pytest.skip(f"chattr +i: {made.stderr.decode().strip()}")
        try:
            await _waves(db, outcomes, until=_faulted, most=1)
            await _waves(db, outcomes, until=_faulted, most=1)
        finally:
            chattr("-i")
        await _waves(db, outcomes, until=_healthy, most=1)
        await _check(db, outcomes, {"io"})
        await db.close()

    try:
        _run(main)
    finally:
        chattr("-i")  # else pytest cannot remove tmp_path


# -- a caller that goes on after a fault -----------------------------------------------------------


def test_a_caller_that_goes_on_after_sqlite_rolled_the_batch_back(tmp_path: Path) -> None:
    """SQLite answers some faults in a statement (SQLITE_FULL without a statement journal, any
    SQLITE_IOERR) by rolling the whole transaction back, the batch of every caller with it. A caller
    that catches the fault and writes on must not write outside any transaction: its rows would stand
    on their own, without the rows before, and outside the writer turn. ``max_page_count`` makes the
    file full without root or a child process."""
    path = str(tmp_path / "stubborn.db")

    async def main() -> None:
        db = SqliteDatabase(path)
        await db.execute_one("CREATE TABLE t (key INTEGER, pad TEXT)")
        pages = (await db.fetch_all("PRAGMA page_count"))[0]["page_count"]
        db._conn.execute(f"PRAGMA max_page_count={pages + 2}")

        async def polite() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES (1, 'a')")

        async def stubborn() -> None:
            async with db.transaction() as tx:
                with contextlib.suppress(Unavailable):
                    await tx.execute("INSERT INTO t VALUES (2, ?)", "x" * 100_000)
                await tx.execute("INSERT INTO t VALUES (3, 'c')")

        outcomes = await asyncio.gather(polite(), stubborn(), return_exceptions=True)
        assert [type(o) for o in outcomes] == [Unavailable, Unavailable], outcomes
        assert all(o.kind == "disk_full" for o in outcomes if isinstance(o, Unavailable))
        assert await db.fetch_all("SELECT key FROM t") == []
        assert not db._batch_open and not db._conn.in_transaction
        db._conn.execute(f"PRAGMA max_page_count={2**31}")
        await asyncio.gather(polite(), stubborn())
        assert sorted(r["key"] for r in await db.fetch_all("SELECT key FROM t")) == [1, 2, 3]
        await db.close()

    _run(main)


def test_a_transaction_left_open_does_not_stop_the_writes(tmp_path: Path) -> None:
    """After a batch whose COMMIT failed with SQLite keeping the transaction, and whose ROLLBACK then
    failed too (no real fault here does both: the state is made by hand), the next batch begins
    anyway, without that transaction's writes, instead of failing for good with "cannot start a
    transaction within a transaction"."""
    path = str(tmp_path / "leftover.db")

    async def main() -> None:
        db = SqliteDatabase(path)
        await db.execute_one("CREATE TABLE t (key INTEGER, pad TEXT)")
        db._conn.execute("BEGIN IMMEDIATE")
        db._conn.execute("INSERT INTO t VALUES (9, 'left over')")
        await db.execute_one("INSERT INTO t VALUES (1, 'a')")
        assert await db.fetch_all("SELECT key FROM t") == [{"key": 1}]
        await db.close()

    _run(main)


def test_a_file_read_only_when_opened(tmp_path: Path) -> None:
    """A service that starts while its file is read-only: SQLite, refused a read-write descriptor,
    opens the file read-only, and the connection stays so. Its writes are refused (SQLITE_READONLY),
    and once the file is writable again they must go through, without another restart. For a user
    the file's mode makes it read-only; root writes through modes, so as root the file is immutable
    (``chattr +i``) instead."""
    path = tmp_path / "read-only.db"

    def read_only(yes: bool) -> None:
        if os.geteuid() != 0:
            path.chmod(0o444 if yes else 0o644)
            return
        made = subprocess.run(["chattr", "+i" if yes else "-i", str(path)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"chattr: {made.stderr.decode().strip()}")

    async def main() -> None:
        db = await _open(path, None)
        outcomes: Outcomes = {}
        await _waves(db, outcomes, until=_healthy, most=1)
        await db.close()
        read_only(True)
        db = _Watched(str(path))  # the service restarted
        try:
            await _waves(db, outcomes, until=_faulted, most=1)
            await _waves(db, outcomes, until=_faulted, most=1)
            assert len(await db.fetch_all("SELECT key FROM t")) > 0  # it reads on
        finally:
            read_only(False)
        # The same process. A user's file: SQLite made the -wal and -shm it created read-only too,
        # and the first connection opened after may still be refused once.
        await _waves(db, outcomes, until=_healthy, most=2)
        await _check(db, outcomes, {"read_only"})
        await db.close()

    try:
        _run(main)
    finally:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)  # else pytest cannot remove tmp_path


if __name__ == "__main__":  # the child process of test_a_file_past_its_size_limit
    scenario, database, cache = sys.argv[1:4]
    assert scenario == "past_size_limit"
    _run(lambda: _past_size_limit(Path(database), int(cache) if cache else None))


def test_a_key_clash_with_a_row_of_a_batch_that_was_then_lost_is_the_loss(tmp_path: Path) -> None:
    """A transaction ran into a unique key another transaction of the same batch had just written,
    then the batch was lost (SQLite rolled it back on a full file): the row it clashed with never
    stood, so the caller is told the fault (``Unavailable``, a 503: try again), not the clash (which
    OrderService would take for an idempotency key taken, and find no order for it)."""
    path = str(tmp_path / "clash.db")

    async def main() -> None:
        db = SqliteDatabase(path)
        await db.execute_one("CREATE TABLE k (key TEXT PRIMARY KEY, pad TEXT)")
        pages = (await db.fetch_all("PRAGMA page_count"))[0]["page_count"]
        db._conn.execute(f"PRAGMA max_page_count={pages + 2}")

        async def write(key: str, pad: str) -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO k VALUES (?, ?)", key, pad)

        outcomes = await asyncio.gather(
            write("K", "first"), write("K", "again"), write("big", "x" * 100_000), return_exceptions=True
        )
        assert [type(o) for o in outcomes] == [Unavailable, Unavailable, Unavailable], outcomes
        assert await db.fetch_all("SELECT key FROM k") == []
        db._conn.execute(f"PRAGMA max_page_count={2**31}")
        await write("K", "first")
        await db.close()

    _run(main)
