"""DatabaseHealth (oms.edge.readiness): what the database tells it, and what a check does, on a fake
database whose pings the test decides, and a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from oms.db import Conflict, Observer, Unavailable
from oms.edge.readiness import DatabaseHealth


class FakeDatabase:
    """Only what DatabaseHealth uses of a database: ``observer`` and ``ping``."""

    def __init__(self) -> None:
        self.observer: Observer | None = None
        self.pings: list[bool] = []  # each ping's write
        self.fault: Unavailable | None = None  # what the next pings raise
        self.write_fault: Unavailable | None = None  # what the next write pings raise
        self.gate: asyncio.Event | None = None  # when set: pings wait for it

    async def ping(self, *, write: bool = False) -> None:
        self.pings.append(write)
        if self.gate is not None:
            await self.gate.wait()
        error = self.fault or (self.write_fault if write else None)
        if error is not None:
            raise Unavailable(error.kind, error.detail)  # a new one each time, as a driver's


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watched(
    max_age: float = 1.0, timeout: float = 5.0
) -> tuple[DatabaseHealth, FakeDatabase, Clock, CollectorRegistry]:
    registry = CollectorRegistry()
    clock = Clock()
    health = DatabaseHealth(registry, max_age=max_age, clock=clock, wall=lambda: 1_780_000_000.0)
    database = FakeDatabase()
    health.attach(database, timeout)  # type: ignore[arg-type]
    return health, database, clock, registry


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def run(make: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(make())  # type: ignore[arg-type]


def test_each_fault_is_counted_once_by_kind_whoever_tells_it_again() -> None:
    health, database, clock, registry = watched()
    assert database.observer is health
    error = Unavailable("unreachable", "connection refused")
    health.failed(error, writing=False)
    health.failed(error, writing=True)  # the same fault, on its way out through a transaction
    health.failed(Unavailable("timeout", "slow"), writing=False)
    assert metric(registry, "oms_database_errors_total", kind="unreachable") == 1
    assert metric(registry, "oms_database_errors_total", kind="timeout") == 1
    assert metric(registry, "oms_database_errors_total", kind="disk_full") == 0  # every kind there from the start
    clock.now += 1
    # Its first telling decided: a read's, over once a read goes through (a write's would hold).
    assert run(health.check) and database.pings == [False]


def test_a_conflict_is_counted_and_leaves_the_database_up() -> None:
    health, _, _, registry = watched()
    health.failed(Conflict("could not serialize access"), writing=True)
    assert metric(registry, "oms_database_errors_total", kind="conflict") == 1
    assert health.up and metric(registry, "oms_database_up") == 1


def test_a_read_fault_makes_it_down_until_a_ping_goes_through() -> None:
    health, database, clock, registry = watched()

    async def go() -> None:
        assert await health.check() and database.pings == [False]
        health.failed(Unavailable("unreachable", "connection refused"), writing=False)
        assert metric(registry, "oms_database_up") == 0
        assert health.state() == {
            "up": False, "kind": "unreachable", "since": "2026-05-28T20:26:40+00:00", "detail": "connection refused"
        }  # fmt: skip
        clock.now += 0.5
        assert not await health.check() and database.pings == [False]  # the fault is the latest outcome
        clock.now += 0.6
        assert await health.check() and database.pings == [False, False]
        assert health.state() == {"up": True, "kind": None, "since": None, "detail": None}
        assert metric(registry, "oms_database_up") == 1

    run(go)


def test_a_failed_ping_makes_it_down_and_is_counted() -> None:
    health, database, clock, registry = watched()

    async def go() -> None:
        database.fault = Unavailable("unreachable", "connection refused")
        assert not await health.check()
        assert metric(registry, "oms_database_errors_total", kind="unreachable") == 1
        assert metric(registry, "oms_database_up") == 0
        clock.now += 1
        assert not await health.check()
        assert metric(registry, "oms_database_errors_total", kind="unreachable") == 2
        database.fault = None
        clock.now += 1
        assert await health.check()

    run(go)


def test_a_write_fault_holds_until_a_write_goes_through_and_checks_ping_with_a_write() -> None:
    health, database, clock, _ = watched()

    async def go() -> None:
        health.failed(Unavailable("disk_full", "database or disk is full"), writing=True)
        database.write_fault = Unavailable("disk_full", "database or disk is full")
        assert not await health.check()  # a read would go through: the check writes
        assert database.pings == [True]
        clock.now += 1
        database.write_fault = None
        assert await health.check() and database.pings == [True, True]
        # The database's own word does it too: a write committed.
        health.failed(Unavailable("read_only", "attempt to write a readonly database"), writing=True)
        assert not health.up
        health.wrote()
        assert health.up

    run(go)


def test_one_ping_at_a_time_and_none_while_the_latest_is_fresh() -> None:
    health, database, clock, _ = watched()

    async def go() -> None:
        database.gate = asyncio.Event()
        probes = [asyncio.ensure_future(health.check()) for _ in range(50)]
        await asyncio.sleep(0)
        database.gate.set()
        assert all(await asyncio.gather(*probes))
        assert database.pings == [False]  # fifty probes, one ping
        clock.now += 0.9
        assert await health.check() and database.pings == [False]
        clock.now += 0.2
        assert await health.check() and database.pings == [False, False]

    run(go)


def test_a_probe_that_gives_up_leaves_the_ping_to_the_others() -> None:
    health, database, _, _ = watched()

    async def go() -> None:
        database.gate = asyncio.Event()
        first = asyncio.ensure_future(health.check())
        second = asyncio.ensure_future(health.check())
        await asyncio.sleep(0)
        first.cancel()
        database.gate.set()
        assert await second and database.pings == [False]

    run(go)


def test_a_ping_that_hangs_is_a_timeout() -> None:
    health, database, _, registry = watched(timeout=0.05)

    async def go() -> None:
        database.gate = asyncio.Event()  # never set: the database does not answer
        assert not await health.check()
        assert health.error is not None and health.error.kind == "timeout"
        assert metric(registry, "oms_database_errors_total", kind="timeout") == 1

    run(go)


def test_not_attached_is_not_up() -> None:
    health = DatabaseHealth(CollectorRegistry())
    assert not health.up and not asyncio.run(health.check())
    assert health.state()["up"] is False


@pytest.mark.parametrize("kind", ["unreachable", "busy", "io"])
def test_the_kind_of_the_latest_fault_is_told_and_since_stays_the_first(kind: str) -> None:
    health, _, _, _ = watched()
    health.failed(Unavailable("timeout", "slow"), writing=False)
    since = health.state()["since"]
    health.failed(Unavailable(kind, "worse"), writing=False)
    assert health.state()["kind"] == kind and health.state()["since"] == since
