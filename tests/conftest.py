"""Fixtures for the whole suite: a real PostgreSQL server, started once on first use.

PostgreSQL binaries missing: the tests that need it fail, saying so, unless OMS_SKIP_POSTGRES=1 is
set, in which case they are skipped. ``-m "not postgres"`` deselects them without starting the server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ is not a package: make pgserver.py (and tests/e2e/system.py) importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgserver

SKIP_ENV = "OMS_SKIP_POSTGRES"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pgserver.PostgresServer]:
    """One PostgreSQL server for the whole session, started on first use.

    ``.url(dbname)`` gives ``postgresql+asyncpg://postgres@127.0.0.1:PORT/dbname``;
    ``.create_database(name)`` creates an empty database and returns its URL.
    """
    missing: str | None = None
    try:
        bindir = pgserver.find_bindir()
    except pgserver.PostgresNotFound as exc:
        missing = str(exc)
    # Outside the except block, so the report shows the message alone, not a chain of exceptions.
    if missing is not None:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"{SKIP_ENV}=1: {missing}")
        pytest.fail(f"{missing}\nSet {SKIP_ENV}=1 to skip the PostgreSQL tests instead.", pytrace=False)
    server = pgserver.start(bindir)
    try:
        yield server
    finally:
        server.stop()
