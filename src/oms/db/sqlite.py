"""SQLite: the standard ``sqlite3`` module in WAL mode, with a group commit and writer turns.

Why not SQLAlchemy's async ORM on the hot path: measured here, it costs 0.6 to 0.9 ms of CPU per
commit over aiosqlite against about 0.04 ms for the standard sqlite3 module.

SQLite runs on the event loop's thread: a statement takes tens of microseconds, and one connection
per process with an asyncio lock serialises transactions, which SQLite would do anyway. ``BEGIN
IMMEDIATE`` takes the write lock up front so a transaction never fails half-way with SQLITE_BUSY.
Processes on the same file (the workers of one service) take turns through a lock file (``flock``)
held from BEGIN to the end of COMMIT: a process that finds it taken waits for it in a thread, and
is woken the moment the other lets go, without blocking its event loop. SQLite's own busy handler
would either stop the loop or poll with sleeps of up to 100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from oms.db.port import IntegrityError, Observer, Row, Statement, Tx, Unavailable, tell
from oms.files import private_dir


def make_private(path: str) -> None:
    """Create the database file, if it is not there yet, readable by its owner alone: it holds
    payment methods and customers' orders. SQLite gives its ``-wal`` and ``-shm`` files the same
    mode. A file that exists keeps the mode it has (its owner's choice)."""
    if path == ":memory:":
        return
    private_dir(Path(path).parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def sqlite_path(url: str) -> str:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a SQLite URL: {url!r}")
    return url[len(prefix) :]


# SQLite's primary result codes that are faults of the file or its file system, not of the statement.
_FAULTS = {
    5: "busy",  # SQLITE_BUSY
    6: "busy",  # SQLITE_LOCKED
    7: "busy",  # SQLITE_NOMEM
    8: "read_only",  # SQLITE_READONLY
    10: "io",  # SQLITE_IOERR (also a file past RLIMIT_FSIZE: EFBIG; or a file made immutable: EPERM)
    13: "disk_full",  # SQLITE_FULL (a full disk: ENOSPC)
    14: "unreachable",  # SQLITE_CANTOPEN
    15: "busy",  # SQLITE_PROTOCOL
}


def fault(exc: BaseException) -> Unavailable | None:
    """``exc`` as the port's ``Unavailable`` when it is a fault of the file (full, read-only,
    failing, locked); None otherwise (a constraint, a bug)."""
    if isinstance(exc, Unavailable):
        return exc
    if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
        kind = _FAULTS.get((getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF)
        if kind is not None:
            return Unavailable(kind, str(exc))
    return None


def _raise_as_fault(exc: sqlite3.Error) -> None:
    if isinstance(exc, sqlite3.IntegrityError):
        raise IntegrityError(str(exc)) from exc
    translated = fault(exc)
    if translated is not None:
        raise translated from exc


class _SqliteTx:
    __slots__ = ("_conn", "lost")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.lost: Unavailable | None = None
        """Why SQLite rolled the whole batch back in one of this transaction's statements (it does for
        SQLITE_IOERR, and SQLITE_FULL without a statement journal), if it did."""

    def _go_on(self) -> None:
        if self.lost is not None:
            # The caller went on after that fault: with the batch gone the connection is in autocommit,
            # and this statement would stand on its own, without those before it (half a transaction).
            raise self.lost

    def _fail(self, exc: sqlite3.Error) -> None:
        if not self._conn.in_transaction:
            self.lost = fault(exc) or Unavailable("io", f"SQLite rolled the transaction back: {exc}")
        _raise_as_fault(exc)

    async def execute(self, sql: str, *params: Any) -> int:
        self._go_on()
        try:
            return self._conn.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            self._fail(exc)
            raise

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        self._go_on()
        try:
            row: Row | None = self._conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            self._fail(exc)
            raise
        return row

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        self._go_on()
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            self._fail(exc)
            raise


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


class SqliteDatabase:
    """The port (``oms.db.port.Database``) on a SQLite file."""

    writes_in_one_statement = False
    refusals: tuple[type[Exception], ...] = (IntegrityError,)
    observer: Observer | None = None
    _write_failed = False
    """A write failed (``Unavailable``) and none has committed since: the observer is told of the next."""

    def __init__(self, path: str, *, synchronous: str = "FULL", timeout: float = 5.0) -> None:
        self.timeout = timeout
        """Seconds to wait for SQLite's write lock (another process's) before ``Unavailable``."""
        make_private(path)
        self.path = path
        self._synchronous = synchronous
        self._conn = self._connect()
        self._reopen = False
        """The writing connection is read-only (SQLITE_READONLY): open another before the next batch."""
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

    def _connect(self) -> sqlite3.Connection:
        """The writing connection."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = _dict_row
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk (the WAL fsynced) before the call returns; an order is never lost.
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            # No busy wait inside SQLite: _begin waits without blocking the event loop.
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _mind(self, error: BaseException) -> None:
        """Note what a fault of the writing connection asks for before the next batch."""
        if isinstance(error, Unavailable) and error.kind == "read_only" and self.path != ":memory:":
            # SQLite opens a file it may not write (its mode, an immutable file, a read-only mount)
            # read-only, and the connection stays so after the file is made writable: every write
            # would be refused until a restart. A new connection, at the next batch, writes if it can.
            self._reopen = True

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
                try:
                    await self._begin()
                except Unavailable as exc:
                    self._mind(exc)
                    raise
                self._batch_open = True
            tx = _SqliteTx(self._conn)
            try:
                self._conn.execute("SAVEPOINT tx")
                yield tx
                if tx.lost is not None:
                    raise tx.lost  # the caller caught it and went on: its transaction is gone all the same
                self._conn.execute("RELEASE tx")
            except BaseException as exc:
                failure = (fault(exc) or exc) if isinstance(exc, sqlite3.Error) else exc
                self._mind(failure)
                self._failed(failure)
                if not self._undo(tx):
                    # SQLite rolled the whole batch back itself (a full disk, an I/O error), or this
                    # transaction's statements could not be undone alone: the transactions that ended
                    # before this one in the batch are lost with it, and their callers told so.
                    self._abandon(fault(exc) or tx.lost or Unavailable("io", f"the batch was rolled back: {exc}"))
                    if failure is exc:
                        raise
                    raise failure from exc
            self._waiters.append(waiter)
            self._schedule_flush(loop)
        if failure is None:
            await waiter
            return
        if isinstance(failure, IntegrityError):
            await asyncio.wait([waiter])
            lost = None if waiter.cancelled() else waiter.exception()
            if lost is not None:
                # The batch is gone, with the row the key clashed with: the clash says nothing now.
                raise lost from failure
        raise failure

    def _undo(self, tx: _SqliteTx) -> bool:
        """Undo the failed transaction's statements, and only them (the batch goes on): False when
        that cannot be done, and the whole batch must go."""
        if tx.lost is not None or not self._conn.in_transaction:
            return False
        try:
            self._conn.execute("ROLLBACK TO tx")
            self._conn.execute("RELEASE tx")  # ROLLBACK TO leaves the savepoint open
        except sqlite3.Error:
            # Still in the batch but not undone (or SAVEPOINT tx itself failed): committing the batch
            # would commit part of this transaction.
            return False
        return True

    def _abandon(self, error: BaseException) -> None:
        """The open batch is gone (rolled back): its callers are told ``error``, and the next
        transaction begins a new batch."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
        self._batch_open = False
        self._turn.give()

    async def _begin(self) -> None:
        await self._turn.take()
        if self._reopen:
            try:
                conn = self._connect()
            except sqlite3.Error:
                pass  # still no way to write: the old connection refuses as it did
            else:
                self._conn.close()
                self._conn, self._reopen = conn, False
        if self._conn.in_transaction:
            # A transaction left over from a batch whose COMMIT and ROLLBACK both failed (_commit,
            # _abandon): nobody waits on it. Else every BEGIN from now on would fail with "cannot
            # start a transaction within a transaction", until a restart.
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                self._turn.give()
                _raise_as_fault(exc)
                raise
        # A process that does not take turns (a migration, a tool) may still hold the write lock for
        # a moment: wait for it here, where the event loop serves on, not in SQLite's busy handler.
        pause = 0.0005
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                        _raise_as_fault(exc)
                        raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.02)
        except BaseException as exc:  # cancelled too: the other processes must not wait on an idle one
            self._turn.give()
            self._failed(exc)
            raise

    def _commit(self) -> None:
        """COMMIT, then give the turn away at once, from the thread: a process waiting for it wakes
        before this one's event loop could take it again."""
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error:
            if self._conn.in_transaction:  # SQLite may have rolled it back already
                with contextlib.suppress(sqlite3.Error):
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
                error = fault(exc) or exc
                self._mind(error)
                self._failed(error)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
                return
        if self._write_failed:
            self._write_failed = False
            if self.observer is not None:
                self.observer.wrote()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def fetch_all(self, sql: str, *params: Any) -> list[Row]:
        if self._reader is None:
            async with self.transaction() as tx:
                return await tx.fetchall(sql, *params)
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            error = fault(exc)
            if error is not None:
                tell(self.observer, error, writing=False)
                raise error from exc
            _raise_as_fault(exc)
            raise

    async def fetch_one(self, sql: str, *params: Any) -> Row | None:
        rows = await self.fetch_all(sql, *params)
        return rows[0] if rows else None

    async def execute_one(self, sql: str, *params: Any) -> int:
        async with self.transaction() as tx:
            changed: int = await tx.execute(sql, *params)
            return changed

    async def write_returning(self, sql: str, *params: Any) -> list[Row]:
        async with self.transaction() as tx:
            rows: list[Row] = await tx.fetchall(sql, *params)
            return rows

    async def write_all(self, statements: Sequence[Statement]) -> None:
        async with self.transaction() as tx:
            for sql, values in statements:
                await tx.execute(sql, *values)

    async def ping(self, *, write: bool = False) -> None:
        if not write:
            # A read of the file (SELECT 1 alone would not open it). A full disk or a read-only file
            # does not show on a read: the writes' faults tell those (Observer, writing=True).
            await self.fetch_all("SELECT count(*) AS n FROM sqlite_master")
            return
        # A write that changes nothing: the header's user_version, rewritten as it is, committed.
        async with self.transaction() as tx:
            row = await tx.fetchone("PRAGMA user_version")
            await tx.execute(f"PRAGMA user_version = {int(row['user_version']) if row else 0}")

    def _failed(self, exc: BaseException) -> None:
        """A fault of the writing connection (a statement of a transaction, its BEGIN or its commit)."""
        if isinstance(exc, Unavailable):
            self._write_failed = True
            tell(self.observer, exc, writing=True)

    def locked(self, sql: str, *, skip_locked: bool = False) -> str:
        return sql

    async def close(self) -> None:
        """Commit the transactions already ended (their callers were promised a durable write),
        wait for a commit under way in its thread, then close."""
        await self._flush()
        async with self._lock:
            self._conn.close()
            if self._reader is not None:
                self._reader.close()
            self._turn.close()


class _FileTurn:
    """One writer at a time among the processes that share a SQLite file, with a prompt hand-over:
    an exclusive ``flock`` on a file next to the database. Taken without a thread when free."""

    def __init__(self, path: str | None) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600) if path is not None else -1
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
