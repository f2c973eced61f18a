"""Storage: the one place that knows SQLite from PostgreSQL.

- ``port``: what a store sees, ``Database`` and its transactions (``Tx``), ``Row``, ``Statement``,
  ``IntegrityError``, and ``Unavailable`` (with ``Conflict``): the database's faults, whichever
  driver raised them, so a service answers 503 and never sees a driver's exception; ``Observer``,
  what a service is told of them (its readiness, its metrics).
- ``sqlite``: ``SqliteDatabase``, the standard ``sqlite3`` module with its group commit and the
  writer turns between processes on one file.
- ``postgres``: ``PostgresDatabase``, ``asyncpg`` and its pool.
- ``batcher``: ``Batcher``, group commit for PostgreSQL (many callers' writes as one statement).
- ``schema``: the migration runner (``run_sync``: Alembic's migrations and ``create_all`` on either
  database) and ``create_schema``.
- here: ``connect`` and ``open_database``, which pick the implementation by URL.

A store holds a ``Database`` and never asks which one it is: every difference is a method or an
attribute of the port, which each implementation answers its own way. A write on its own is
``db.execute_one``, ``db.write_returning`` or ``db.write_all`` (on PostgreSQL one round trip without
BEGIN and COMMIT; on SQLite a transaction of the group commit); ``db.locked(sql)`` locks the rows a
``SELECT`` reads where rows can be locked. Where a store has a form of a write that only
PostgreSQL's SQL can express, and that pays only where a statement is a round trip (a reservation
as one statement, many sagas' writes as one statement through ``Batcher``), the SQL stays with the
store, next to the SQL it stands for, and the store takes it when ``db.writes_in_one_statement``:
one capability, stated by each implementation, rather than a backend's name tested in the stores,
and no store-specific method on the port. ``db.refusals`` are the errors that mean a statement was
refused and nothing of it stands, so a store can write a refused batch again without knowing the
driver's exceptions.

Why not SQLAlchemy's async ORM on the hot path: see ``sqlite``. SQLAlchemy still owns the schemas
(each service's ``schema.py``), and Alembic migrations create and upgrade them.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from oms.db.batcher import Batcher
from oms.db.port import (
    KINDS,
    Conflict,
    Database,
    IntegrityError,
    Observer,
    Row,
    Statement,
    Tx,
    Unavailable,
    placeholders,
)
from oms.db.postgres import PostgresDatabase, is_postgres
from oms.db.schema import alters_by_copy, create_schema, run_sync
from oms.db.sqlite import SqliteDatabase, sqlite_path

__all__ = [
    "KINDS",
    "Batcher",
    "Conflict",
    "Database",
    "IntegrityError",
    "Observer",
    "PostgresDatabase",
    "Row",
    "SqliteDatabase",
    "Statement",
    "Tx",
    "Unavailable",
    "alters_by_copy",
    "connect",
    "create_schema",
    "database_label",
    "is_postgres",
    "open_database",
    "placeholders",
    "run_sync",
    "sqlite_path",
]


async def open_database(
    url: str, metadata: sa.MetaData, *, sqlite_synchronous: str = "FULL", statement_timeout: float = 5.0
) -> Database:
    """Create the tables if needed and open the database (tests of a store alone)."""
    await create_schema(url, metadata)
    return await connect(url, sqlite_synchronous=sqlite_synchronous, statement_timeout=statement_timeout)


async def connect(
    url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 8, statement_timeout: float = 5.0
) -> Database:
    """Open a database whose schema is in place (``pool_size``: PostgreSQL connections at most;
    ``statement_timeout``: seconds a statement, a connection or a wait for one may take before the caller
    gets ``Unavailable``)."""
    if is_postgres(url):
        return await PostgresDatabase.connect(
            url, min_size=min(2, pool_size), max_size=pool_size, statement_timeout=statement_timeout
        )
    return SqliteDatabase(sqlite_path(url), synchronous=sqlite_synchronous, timeout=statement_timeout)


def database_label(url: str) -> str:
    """A database URL as a person is shown it (``oms status``, an admin's /health): a SQLite file's path, any
    other URL without its password, whether in the user part or the query string (``?password=``), whatever
    its hosts (``host1:5432,host2:5432``: a primary and its standbys)."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")  # sqlite:////abs/path: /abs/path
    parts = urlsplit(url)  # as asyncpg reads it: the hosts end at the first "/", "?" or "#"
    if not parts.netloc:
        return url
    user, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{user.split(':', 1)[0]}:***@{hosts}" if at and ":" in user else parts.netloc
    query = "&".join(
        f"{name}=***" if name.lower().endswith("password") else pair
        for pair in parts.query.split("&")
        for name in [pair.split("=", 1)[0]]
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))
