"""Fixtures for the storage tests: a real PostgreSQL server for the session, and ``database_url``,
which runs each test once on SQLite and once on a fresh PostgreSQL database.

PostgreSQL binaries missing: the ``postgresql`` tests fail, saying so, unless OMS_SKIP_POSTGRES=1 is
set, in which case they are skipped. ``-m "not postgres"`` deselects them without starting the server.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

import pgserver
from oms.db import Database, PostgresDatabase, create_schema, is_postgres, open_database

T = TypeVar("T")

_counter = itertools.count(1)


def _database_name(request: pytest.FixtureRequest) -> str:
    # Readable in the server's log, unique in the session, a valid identifier of at most 63 bytes.
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.originalname.lower()).strip("_")
    return f"t{next(_counter):04d}_{stem}"[:63]


@pytest.fixture
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``new_database(kind)``: the URL of an empty database of its own, ``sqlite`` (a file in
    tmp_path) or ``postgresql`` (a fresh database on the session's server, dropped after the test)."""
    made: list[tuple[pgserver.PostgresServer, str]] = []
    files = itertools.count()

    def new(kind: str) -> str:
        if kind == "sqlite":
            n = next(files)
            return f"sqlite:///{tmp_path}/test{n or ''}.db"
        server: pgserver.PostgresServer = request.getfixturevalue("postgres_server")
        name = _database_name(request)
        made.append((server, name))
        return server.create_database(name)

    yield new
    for server, name in made:
        server.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, new_database: Callable[[str], str]) -> str:
    """A URL for an empty database of its own: SQLite in tmp_path, or a fresh PostgreSQL database."""
    return new_database(request.param)


@pytest.fixture
def with_db(database_url: str) -> Callable[..., Any]:
    """``with_db(metadata, scenario)``: open ``database_url`` with the schema of ``metadata``, run
    ``await scenario(db)`` on a fresh event loop, close the database, and return the result.

    ``pool_size``: on PostgreSQL, a pool of exactly that many connections (open_database's default
    pool holds at most 10)."""

    def with_db_(
        metadata: sa.MetaData, scenario: Callable[[Database], Awaitable[T]], *, pool_size: int | None = None
    ) -> T:
        async def main() -> T:
            db: Database
            if pool_size is not None and is_postgres(database_url):
                # As many connections as concurrent transactions: they really run at once.
                await create_schema(database_url, metadata)
                db = await PostgresDatabase.connect(database_url, min_size=pool_size, max_size=pool_size)
            else:
                db = await open_database(database_url, metadata)
            try:
                return await scenario(db)
            finally:
                await db.close()

        return asyncio.run(main())

    return with_db_
