"""The migration runner: schema work (Alembic's migrations, ``create_all``) on a SQLAlchemy
connection to either database, one transaction, processes that start at once taking turns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from oms.db.postgres import is_postgres
from oms.db.sqlite import make_private, sqlite_path


async def run_sync(url: str, work: Callable[[sa.Connection], Any], *, lock_key: str | None = None) -> Any:
    """Run ``work(connection)`` in one transaction on a SQLAlchemy connection to either database
    (schema work: migrations, create_all). ``lock_key``: processes starting at once take turns."""
    if is_postgres(url):
        import asyncpg
        from sqlalchemy.ext.asyncio import create_async_engine

        # asyncpg reads the URL, as for the services' own connections: SQLAlchemy's URL parser takes
        # neither a list of hosts (``host1:5432,host2:5432``) nor asyncpg's options in the query string
        # (``target_session_attrs``, ``sslmode``), and would hand them on as arguments asyncpg refuses.
        dsn = asyncpg_dsn(url)
        engine = create_async_engine("postgresql+asyncpg://", async_creator=lambda: asyncpg.connect(dsn, timeout=30))
        try:
            async with engine.begin() as conn:
                if lock_key is not None:
                    # Held to the end of the transaction: a second replica waits, then finds nothing to do.
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": lock_key})
                return await conn.run_sync(work)
        finally:
            await engine.dispose()
    path = sqlite_path(url)
    make_private(path)
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


def asyncpg_dsn(url: str) -> str:
    """The connection string asyncpg takes for a PostgreSQL URL of the services' (``postgresql+asyncpg://``,
    ``postgresql://`` or ``postgres://``): the same URL with the driver left out of the scheme."""
    return "postgresql://" + url.split("://", 1)[1]


async def create_schema(url: str, metadata: sa.MetaData) -> None:
    """Create the tables straight from ``metadata`` (tests of a store alone; services migrate)."""
    await run_sync(url, metadata.create_all)


def alters_by_copy(connection: sa.Connection) -> bool:
    """Whether a migration alters a table by copying it (SQLite, which cannot alter most columns in
    place: Alembic's batch mode does it) rather than in place (PostgreSQL)."""
    return connection.dialect.name == "sqlite"
