"""PostgreSQL: ``asyncpg`` and its connection pool.

Statements come with ``?`` placeholders (the port's dialect-neutral SQL), turned into ``$n`` here,
once per distinct text. A statement on its own (``fetch_all``, ``execute_one``, ``write_returning``,
``write_all``) runs without BEGIN and COMMIT: one round trip, its own transaction. ``asyncpg`` is
imported only when a PostgreSQL database is opened: a service on SQLite never loads it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from oms.db.port import IntegrityError, Row, Statement, Tx


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
    """The port (``oms.db.port.Database``) on a PostgreSQL database, through a pool of connections."""

    writes_in_one_statement = True
    refusals: tuple[type[Exception], ...]

    def __init__(self, pool: Any) -> None:
        import asyncpg

        self._pool = pool
        # The server refused the statement for what it is or what it writes: nothing of it stands, and
        # the same statement fails again on any server. Not every asyncpg.PostgresError: a connection
        # lost in the middle of a statement (ConnectionDoesNotExistError, class 08), a server shutting
        # down (AdminShutdownError, class 57) and a standby that takes no writes (25006) are
        # PostgresErrors too, and after the first two a write may have committed.
        self.refusals = (
            IntegrityError,
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

    async def fetch_one(self, sql: str, *params: Any) -> Row | None:
        rows = await self.fetch_all(sql, *params)
        return rows[0] if rows else None

    async def execute_one(self, sql: str, *params: Any) -> int:
        """One statement, its own transaction: no BEGIN and COMMIT round trips."""
        async with self._pool.acquire() as conn:
            return await _PgTx(conn).execute(sql, *params)

    async def write_returning(self, sql: str, *params: Any) -> list[Row]:
        return await self.fetch_all(sql, *params)  # autocommit: the same path serves a write

    async def write_all(self, statements: Sequence[Statement]) -> None:
        """One statement: every one but the last a data-modifying ``WITH`` clause."""
        *first, (last_sql, last_params) = statements
        clauses = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(first))
        params = [value for _, values in first for value in values]
        await self.execute_one(f"WITH {clauses} {last_sql}" if first else last_sql, *params, *last_params)

    def locked(self, sql: str, *, skip_locked: bool = False) -> str:
        return sql + (" FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE")

    async def close(self) -> None:
        await self._pool.close()


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql+asyncpg://", "postgresql://", "postgres://"))
