"""Every end-to-end test runs twice: the three services on SQLite files, and on PostgreSQL."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from system import SERVICES, System

import pgserver
from pgserver import PostgresServer

_systems = itertools.count(1)
STANDBY = "oms_standby"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _database_urls(backend: str, request: pytest.FixtureRequest) -> dict[str, str] | None:
    """None for SQLite files in the system's directory; else a fresh PostgreSQL database per service."""
    if backend == "sqlite":
        return None
    server = request.getfixturevalue("postgres_server")
    number = next(_systems)
    return {name: server.create_database(f"e2e{number:03d}_{name}") for name in SERVICES}


@pytest.fixture(scope="module")
def shared_system(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """One system for the tests that leave every service running."""
    system = System(tmp_path_factory.mktemp("system"), database_urls=_database_urls(backend, request))
    try:
        yield system.start_all()
    finally:
        system.stop_all()  # also the services that started when a later one failed to


@pytest.fixture
def make_system(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., System]]:
    """A system of its own (with extra OMS_* settings), for a test that kills or pauses a service."""
    systems: list[System] = []

    def make(env: dict[str, str] | None = None) -> System:
        system = System(tmp_path, env, database_urls=_database_urls(backend, request))
        systems.append(system)  # before starting: a service that started is stopped even if the next one fails
        return system.start_all()

    yield make
    for system in systems:
        system.stop_all()


@pytest.fixture
def system(make_system: Callable[..., System]) -> System:
    return make_system()


@pytest.fixture(params=["synchronous"])
def replicated_postgres(request: pytest.FixtureRequest) -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A PostgreSQL primary of its own and its hot standby, for a test that kills the primary and
    promotes the standby. Replicating synchronously (a commit returns once the standby has it on
    disk) unless the test says ``@pytest.mark.parametrize("replicated_postgres", ["asynchronous"],
    indirect=True)``. The session's ``postgres_server`` first: it finds the binaries, or skips or
    fails the test as the suite is told to."""
    bindir = request.getfixturevalue("postgres_server").bindir
    synchronous = {"synchronous": True, "asynchronous": False}[request.param]
    with pgserver.replicated(bindir, standby_name=STANDBY, synchronous=synchronous) as pair:
        yield pair
