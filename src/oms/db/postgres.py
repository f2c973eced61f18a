"""PostgreSQL: ``asyncpg`` and its connection pool.

Statements come with ``?`` placeholders (the port's dialect-neutral SQL), turned into ``$n`` here,
once per distinct text. A statement on its own (``fetch_all``, ``execute_one``, ``write_returning``,
``write_all``) runs without BEGIN and COMMIT: one round trip, its own transaction. ``asyncpg`` is
imported only when a PostgreSQL database is opened: a service on SQLite never loads it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from oms.db.port import Conflict, IntegrityError, Observer, Row, Statement, Tx, Unavailable, tell


@lru_cache(maxsize=512)
def _to_dollar(sql: str) -> str:
    """Each ``?`` placeholder as ``$1``, ``$2``...; a ``?`` inside a string literal (``'...'``, a quote
    doubled inside it), a quoted name (``"..."``) or a comment (``--``, ``/* */``) left as it is.
    (No statement of ours uses E'...' escapes or dollar quoting.)"""
    out: list[str] = []
    count = 0
    i, end = 0, len(sql)
    while i < end:
        c = sql[i]
        if c in "'\"":
            j = i + 1
            while True:
                j = sql.find(c, j)
                if j == -1:
                    j = end
                    break
                if j + 1 < end and sql[j + 1] == c:  # a doubled quote: part of the literal
                    j += 2
                    continue
                j += 1
                break
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = end if j == -1 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = end if j == -1 else j + 2
        elif c == "?":
            count += 1
            out.append(f"${count}")
            i += 1
            continue
        else:
            j = i + 1
            while j < end and sql[j] not in "'\"?-/":
                j += 1
        out.append(sql[i:j])
        i = j
    return "".join(out)


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


def fault(exc: BaseException) -> Unavailable | None:
    """``exc`` as the port's ``Unavailable``, when it is a fault of the server or of the way to it
    rather than of the statement; None otherwise (a constraint, a bug: the caller's to see)."""
    import asyncpg

    if isinstance(exc, Unavailable):
        return exc
    if isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        return Conflict(str(exc))
    if isinstance(exc, TimeoutError | asyncpg.QueryCanceledError):
        return Unavailable("timeout", str(exc) or "no answer in time")
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        return Unavailable("read_only", str(exc))
    if isinstance(exc, asyncpg.DiskFullError):
        return Unavailable("disk_full", str(exc))
    if isinstance(exc, asyncpg.InsufficientResourcesError):  # too many connections, out of memory
        return Unavailable("busy", str(exc))
    if isinstance(exc, OSError | asyncpg.PostgresConnectionError | asyncpg.OperatorInterventionError):
        # Refused, reset, closed; the server shutting down, crashed or starting up.
        return Unavailable("unreachable", str(exc) or type(exc).__name__)
    if isinstance(exc, asyncpg.exceptions.TargetServerAttributeNotMatched) or (
        isinstance(exc, asyncpg.InterfaceError) and _CLOSED.search(str(exc))
    ):
        # No host took writes (target_session_attrs); a connection or the pool closed under the
        # call. Not the client's other complaints (wrong arguments, a call while another runs):
        # those are bugs, answered 500 with their traceback logged.
        return Unavailable("unreachable", str(exc) or type(exc).__name__)
    return None


_CLOSED = re.compile(r"connection is closed|connection was closed|pool is clos")


_WRITE_FAULTS = frozenset({"read_only", "disk_full"})
"""The faults only a write meets: a ping (a read) would not show them, nor show them over."""


class PostgresDatabase:
    """The port (``oms.db.port.Database``) on a PostgreSQL database, through a pool of connections.

    Every call is bounded by ``timeout``: waiting for a free connection, making one, and each
    statement (asyncpg's ``command_timeout``, and the server's ``statement_timeout`` so a statement
    a client gave up on does not hold its locks on). A fault comes out as ``Unavailable``."""

    writes_in_one_statement = True
    refusals: tuple[type[Exception], ...]
    observer: Observer | None = None

    def __init__(self, pool: Any, timeout: float = 5.0) -> None:
        import asyncpg

        self._pool = pool
        self._timeout = timeout
        # The server refused the statement for what it is or what it writes: nothing of it stands, and
        # the same statement fails again on any server. Not every asyncpg.PostgresError: a connection
        # lost in the middle of a statement (class 08), a server shutting down (57) and a standby that
        # takes no writes (25006) are PostgresErrors too, and after the first two a write may have
        # committed (all three come out of here as Unavailable; of the faults only Conflict is a refusal).
        self.refusals = (
            IntegrityError,
            Conflict,
            asyncpg.IntegrityConstraintViolationError,
            asyncpg.DataError,
            asyncpg.CardinalityViolationError,
            asyncpg.SerializationError,
            asyncpg.DeadlockDetectedError,
            asyncpg.SyntaxOrAccessError,
            asyncpg.FeatureNotSupportedError,
            asyncpg.ProgramLimitExceededError,
        )

    @classmethod
    async def connect(
        cls, url: str, *, min_size: int = 2, max_size: int = 8, statement_timeout: float = 5.0
    ) -> PostgresDatabase:
        import asyncpg

        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, reset=_keep_session, timeout=statement_timeout,
                command_timeout=statement_timeout,
                server_settings={"statement_timeout": str(int(statement_timeout * 1000))},
            )  # fmt: skip
        except Exception as exc:
            raise (fault(exc) or exc) from exc
        return cls(pool, statement_timeout)

    # asyncio.timeout, not the pool's acquire(timeout=...): that one is asyncio.wait_for, a task per
    # call (13 µs against 4 µs measured here), on every statement of the hot path.

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        try:
            async with asyncio.timeout(self._timeout):
                conn = await self._pool.acquire()
        except Exception as exc:
            raise self._fault(exc) from exc
        try:
            async with conn.transaction():  # each statement bounded by command_timeout
                yield _PgTx(conn)
        except Exception as exc:
            raise self._fault(exc) from exc
        finally:
            await self._pool.release(conn)

    def _fault(self, exc: Exception) -> Exception:
        """What the caller gets for ``exc`` (``fault``); the observer told of a fault."""
        error = fault(exc)
        if error is None:
            return exc
        tell(self.observer, error, writing=error.kind in _WRITE_FAULTS)
        return error

    async def fetch_all(self, sql: str, *params: Any) -> list[Row]:
        """One statement, its own transaction: no BEGIN and COMMIT round trips."""
        try:
            async with asyncio.timeout(self._timeout), self._pool.acquire() as conn:
                return await _PgTx(conn).fetchall(sql, *params)
        except Exception as exc:
            raise self._fault(exc) from exc

    async def fetch_one(self, sql: str, *params: Any) -> Row | None:
        rows = await self.fetch_all(sql, *params)
        return rows[0] if rows else None

    async def execute_one(self, sql: str, *params: Any) -> int:
        """One statement, its own transaction: no BEGIN and COMMIT round trips."""
        try:
            async with asyncio.timeout(self._timeout), self._pool.acquire() as conn:
                return await _PgTx(conn).execute(sql, *params)
        except Exception as exc:
            raise self._fault(exc) from exc

    async def write_returning(self, sql: str, *params: Any) -> list[Row]:
        return await self.fetch_all(sql, *params)  # autocommit: the same path serves a write

    async def write_all(self, statements: Sequence[Statement]) -> None:
        """One statement: every one but the last a data-modifying ``WITH`` clause."""
        *first, (last_sql, last_params) = statements
        clauses = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(first))
        params = [value for _, values in first for value in values]
        await self.execute_one(f"WITH {clauses} {last_sql}" if first else last_sql, *params, *last_params)

    async def ping(self, *, write: bool = False) -> None:
        rows = await self.fetch_all("SELECT pg_is_in_recovery() AS standby")
        if write and rows[0]["standby"]:
            error = Unavailable("read_only", "the server is a standby (in recovery): it takes no writes")
            tell(self.observer, error, writing=True)
            raise error

    def locked(self, sql: str, *, skip_locked: bool = False) -> str:
        return sql + (" FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE")

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), self._timeout)
        except Exception:
            self._pool.terminate()  # a hung server: the connections go without a goodbye


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql+asyncpg://", "postgresql://", "postgres://"))
