"""Storage: the one place that knows SQLite from PostgreSQL.

Services write dialect-neutral SQL with ``?`` placeholders and ``ON CONFLICT`` upserts, which both
databases understand; this module turns ``?`` into ``$n`` for asyncpg.

Why not SQLAlchemy's async ORM on the hot path: measured here, it costs 0.6 to 0.9 ms of CPU per
commit over aiosqlite against about 0.04 ms for the standard sqlite3 module. SQLAlchemy still owns
the schemas (each service's ``schema.py``), and Alembic migrations create and upgrade them.

SQLite runs in WAL mode on the event loop's thread: a statement takes tens of microseconds, and
one connection per process with an asyncio lock serialises transactions, which SQLite would do
anyway. ``BEGIN IMMEDIATE`` takes the write lock up front so a transaction never fails half-way
with SQLITE_BUSY. Processes on the same file (the workers of one service) take turns through a
lock file (``flock``) held from BEGIN to the end of COMMIT: a process that finds it taken waits
for it in a thread, and is woken the moment the other lets go, without blocking its event loop.
SQLite's own busy handler would either stop the loop or poll with sleeps of up to 100 ms.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa

Row = Mapping[str, Any]


class IntegrityError(Exception):
    """A unique or foreign-key constraint refused a write (either database)."""


class Tx(Protocol):
    async def execute(self, sql: str, *params: Any) -> int: ...
    async def fetchone(self, sql: str, *params: Any) -> Row | None: ...
    async def fetchall(self, sql: str, *params: Any) -> list[Row]: ...


class Database(Protocol):
    dialect: str
    for_update: str
    """`` FOR UPDATE`` where rows can be locked (PostgreSQL); empty on SQLite, whose write
    transactions already run one at a time."""

    def transaction(self) -> Any: ...  # async context manager yielding a Tx
    async def fetch_all(self, sql: str, *params: Any) -> list[Row]:
        """A query that only reads, outside any write transaction (see the module's ``fetch_all``)."""

    async def close(self) -> None: ...


def sqlite_path(url: str) -> str:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a SQLite URL: {url!r}")
    return url[len(prefix) :]


class _SqliteTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *params: Any) -> int:
        try:
            return self._conn.execute(sql, params).rowcount
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        try:
            row: Row | None = self._conn.execute(sql, params).fetchone()
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        return row

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


class SqliteDatabase:
    dialect = "sqlite"
    for_update = ""

    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = _dict_row
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (the WAL fsynced) before the call returns; an order is never lost.
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        # No busy wait inside SQLite: _begin waits without blocking the event loop.
        self._conn.execute("PRAGMA busy_timeout=0")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # Reads on their own go to a second connection: in WAL mode it sees only committed
        # transactions, and (with synchronous=FULL) SQLite makes a commit visible to other
        # connections only once the WAL is synced, so what it reads is durable; it needs neither
        # the batch nor the commit thread. (With NORMAL no commit waits for the disk anyway.)
        self._reader: sqlite3.Connection | None = None
        if path != ":memory:":
            self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._reader.row_factory = _dict_row
            self._reader.execute("PRAGMA busy_timeout=1000")
        self._lock = asyncio.Lock()
        self._turn = _FileTurn(None if path == ":memory:" else path + "-writer")
        self._batch_open = False
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_scheduled = False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A transaction, durable when the block's ``async with`` returns.

        Group commit: the transactions that end while no commit is under way are savepoints of one
        SQLite transaction, committed (and fsynced) once for all of them, in a thread so the event
        loop goes on serving meanwhile; each caller waits for that commit before it goes on. One
        fsync per batch instead of one per transaction is what lets a durable SQLite keep up with
        many concurrent sagas. A transaction that fails rolls back to its savepoint alone, and its
        error too waits for the batch's commit: a unique key it ran into may be another caller's
        row in this batch, and whoever reads it next (on the reading connection) must find it. A
        reader in a transaction waits for the commit too, so it never acts on what is not yet
        durable.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        failure: BaseException | None = None
        async with self._lock:
            if not self._batch_open:
                await self._begin()
                self._batch_open = True
            self._conn.execute("SAVEPOINT tx")
            try:
                yield _SqliteTx(self._conn)
            except BaseException as exc:
                self._conn.execute("ROLLBACK TO tx")
                failure = exc
            self._conn.execute("RELEASE tx")
            self._waiters.append(waiter)
            self._schedule_flush(loop)
        if failure is None:
            await waiter
            return
        if isinstance(failure, IntegrityError):
            await asyncio.wait([waiter])
            if not waiter.cancelled():
                waiter.exception()  # the commit's own outcome is not this caller's to report
        raise failure

    async def _begin(self) -> None:
        await self._turn.take()
        # A process that does not take turns (a migration, a tool) may still hold the write lock for
        # a moment: wait for it here, where the event loop serves on, not in SQLite's busy handler.
        pause = 0.0005
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                        raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.02)
        except BaseException:  # cancelled too: the other processes must not wait on an idle one
            self._turn.give()
            raise

    def _commit(self) -> None:
        """COMMIT, then give the turn away at once, from the thread: a process waiting for it wakes
        before this one's event loop could take it again."""
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error:
            self._conn.execute("ROLLBACK")
            raise
        finally:
            self._turn.give()

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(lambda: loop.create_task(self._flush()))

    async def _flush(self) -> None:
        async with self._lock:
            self._flush_scheduled = False
            waiters, self._waiters = self._waiters, []
            if not self._batch_open:
                return
            self._batch_open = False
            try:
                # The connection is ours alone while the lock is held; sqlite3 lets go of the GIL.
                await asyncio.to_thread(self._commit)
            except sqlite3.Error as exc:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def fetch_all(self, sql: str, *params: Any) -> list[Row]:
        if self._reader is None:
            async with self.transaction() as tx:
                return await tx.fetchall(sql, *params)
        return self._reader.execute(sql, params).fetchall()

    async def close(self) -> None:
        self._conn.close()
        if self._reader is not None:
            self._reader.close()
        self._turn.close()


class _FileTurn:
    """One writer at a time among the processes that share a SQLite file, with a prompt hand-over:
    an exclusive ``flock`` on a file next to the database. Taken without a thread when free."""

    def __init__(self, path: str | None) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644) if path is not None else -1
        self._takes = 0

    async def take(self) -> None:
        if self._fd < 0:
            return
        self._takes += 1
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waiting = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, self._fd, fcntl.LOCK_EX))
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # Nobody will use the turn the thread is about to get: give it back when it comes, unless
            # a later take() has it by then (one open file holds one lock). SQLite's own write lock
            # is what keeps writers apart; the turn only makes the hand-over prompt.
            takes = self._takes

            def let_go(done: asyncio.Future[None]) -> None:
                if not done.cancelled() and done.exception() is None and self._takes == takes:
                    self.give()

            waiting.add_done_callback(let_go)
            raise

    def give(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@lru_cache(maxsize=512)
def _to_dollar(sql: str) -> str:
    counter = itertools.count(1)
    return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)


class _PgTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *params: Any) -> int:
        import asyncpg

        try:
            status: str = await self._conn.execute(_to_dollar(sql), *params)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(str(exc)) from exc
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        import asyncpg

        try:
            row = await self._conn.fetchrow(_to_dollar(sql), *params)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(str(exc)) from exc
        return dict(row) if row is not None else None

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        import asyncpg

        try:
            return [dict(r) for r in await self._conn.fetch(_to_dollar(sql), *params)]
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(str(exc)) from exc


async def _keep_session(connection: Any) -> None:
    """No reset query when a connection goes back to the pool: these sessions set nothing (no SET,
    LISTEN or session locks), and the reset cost a round trip and server CPU per transaction."""


class PostgresDatabase:
    dialect = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 2, max_size: int = 8) -> PostgresDatabase:
        import asyncpg

        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, reset=_keep_session)
        return cls(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PgTx(conn)

    async def fetch_all(self, sql: str, *params: Any) -> list[Row]:
        """One statement, its own transaction: no BEGIN and COMMIT round trips."""
        async with self._pool.acquire() as conn:
            return await _PgTx(conn).fetchall(sql, *params)

    async def execute(self, sql: str, *params: Any) -> int:
        async with self._pool.acquire() as conn:
            return await _PgTx(conn).execute(sql, *params)

    async def close(self) -> None:
        await self._pool.close()


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql+asyncpg://", "postgresql://", "postgres://"))


async def run_sync(url: str, work: Callable[[sa.Connection], Any], *, lock_key: str | None = None) -> Any:
    """Run ``work(connection)`` in one transaction on a SQLAlchemy connection to either database
    (schema work: migrations, create_all). ``lock_key``: processes starting at once take turns."""
    if is_postgres(url):
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine("postgresql+asyncpg://" + url.split("://", 1)[1])
        try:
            async with engine.begin() as conn:
                if lock_key is not None:
                    # Held to the end of the transaction: a second replica waits, then finds nothing to do.
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": lock_key})
                return await conn.run_sync(work)
        finally:
            await engine.dispose()
    path = sqlite_path(url)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # The file's write lock, taken at BEGIN, does what the advisory lock does on PostgreSQL.
    sync_engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})

    @sa.event.listens_for(sync_engine, "begin")
    def _begin_immediate(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    @sa.event.listens_for(sync_engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    try:
        with sync_engine.begin() as sync_conn:
            return work(sync_conn)
    finally:
        sync_engine.dispose()


async def create_schema(url: str, metadata: sa.MetaData) -> None:
    """Create the tables straight from ``metadata`` (tests of a store alone; services migrate)."""
    await run_sync(url, metadata.create_all)


async def open_database(url: str, metadata: sa.MetaData, *, sqlite_synchronous: str = "FULL") -> Database:
    """Create the tables if needed and open the database (tests of a store alone)."""
    await create_schema(url, metadata)
    return await connect(url, sqlite_synchronous=sqlite_synchronous)


async def connect(url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 8) -> Database:
    """Open a database whose schema is in place (``pool_size``: PostgreSQL connections at most)."""
    if is_postgres(url):
        return await PostgresDatabase.connect(url, min_size=min(2, pool_size), max_size=pool_size)
    return SqliteDatabase(sqlite_path(url), synchronous=sqlite_synchronous)


async def fetch_all(db: Database, sql: str, *params: Any) -> list[Row]:
    """One query that only reads, on its own: on PostgreSQL without BEGIN and COMMIT (two round
    trips fewer), on SQLite on the reading connection (no wait for a group commit). Writes go
    through ``execute_one``, ``write_returning`` or ``write_all``."""
    return await db.fetch_all(sql, *params)


async def fetch_one(db: Database, sql: str, *params: Any) -> Row | None:
    rows = await fetch_all(db, sql, *params)
    return rows[0] if rows else None


Statement = tuple[str, Sequence[Any]]


async def execute_one(db: Database, sql: str, *params: Any) -> int:
    """One write statement as its own transaction (the rows it changed): on PostgreSQL a single
    round trip, without BEGIN and COMMIT."""
    if isinstance(db, PostgresDatabase):
        return await db.execute(sql, *params)
    async with db.transaction() as tx:
        changed: int = await tx.execute(sql, *params)
        return changed


async def write_returning(db: Database, sql: str, *params: Any) -> list[Row]:
    """One write statement (``RETURNING`` rows) as its own transaction: on PostgreSQL a single
    round trip, without BEGIN and COMMIT."""
    if isinstance(db, PostgresDatabase):
        return await db.fetch_all(sql, *params)  # autocommit: the same path serves a write
    async with db.transaction() as tx:
        rows: list[Row] = await tx.fetchall(sql, *params)
        return rows


async def write_all(db: Database, statements: Sequence[Statement]) -> None:
    """Write statements that do not read each other's effects, all or none.

    On PostgreSQL they go as one statement, every one but the last a data-modifying ``WITH``
    clause: one round trip, its own transaction, and row locks held only while it runs (never
    across a turn of the client). All clauses see the same snapshot, hence the rule above. On
    SQLite, one transaction of the statements.
    """
    if isinstance(db, PostgresDatabase):
        *first, (last_sql, last_params) = statements
        clauses = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(first))
        params = [value for _, values in first for value in values]
        await db.execute(f"WITH {clauses} {last_sql}" if first else last_sql, *params, *last_params)
        return
    async with db.transaction() as tx:
        for sql, values in statements:
            await tx.execute(sql, *values)


def placeholders(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


T = TypeVar("T")


class Batcher(Generic[T]):
    """Writes that arrive while others are under way go together: ``write`` gets the waiting items
    (at most ``most``) and answers, for each, None or the exception its caller gets. At most
    ``in_flight`` batches run at once; a submit that finds one free starts at once, alone, so a
    lone write never waits. This is group commit for PostgreSQL, where each statement is a round
    trip and a commit: under load, one statement writes the saga steps of many orders."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[Sequence[BaseException | None]]],
        *,
        in_flight: int = 3,
        most: int = 64,
    ) -> None:
        self._write = write
        self._in_flight = in_flight
        self._most = most
        self._running = 0
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # held, so none is collected while it runs

    async def submit(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((item, done))
        if self._running < self._in_flight:
            self._running += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await done

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._most], self._queue[self._most :]
                try:
                    outcomes: Sequence[BaseException | None] = await self._write([item for item, _ in batch])
                except Exception as exc:
                    outcomes = [exc] * len(batch)
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if done.done():
                        continue  # its caller was cancelled; the write stands
                    if outcome is None:
                        done.set_result(None)
                    else:
                        done.set_exception(outcome)
        finally:
            self._running -= 1
