"""Whether a service can use its database: what ``GET /ready``, ``oms_database_up`` and the
dashboard's banner tell.

:class:`DatabaseHealth` is the database's observer (``oms.db.Observer``): the database tells it of
each fault as it is raised, from any statement (a request's, a saga's, a background loop's), and of
the first write that commits after a write failed. It counts the faults by kind
(``oms_database_errors_total{kind}``) and keeps the database's state:

- down after a ping or a statement met a fault, until a ping goes through;
- down after a write met a fault a read would not show (SQLite: any fault of its writing connection,
  a full disk or a read-only file among them; PostgreSQL: ``read_only``, ``disk_full``), until a
  write commits. While so, a check pings with a write (``Database.ping(write=True)``), so a service
  that gets no traffic (a pod taken out of its Service for being unready) still finds out.

A ``conflict`` is counted, and says nothing of the database's state.

:meth:`DatabaseHealth.check` pings at most one at a time, and answers from the latest outcome while
it is younger than ``max_age``: a flood of probes, scrapes and dashboards makes one ping a second.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from oms.db import KINDS, Database, Unavailable

log = structlog.get_logger("oms.edge.readiness")


class DatabaseHealth:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.max_age = max_age
        self._clock = clock
        self._wall = wall
        self.database: Database | None = None
        self.timeout = 5.0
        self._read_error: Unavailable | None = None
        self._write_error: Unavailable | None = None
        self._checked = -math.inf
        self._down_since: float | None = None
        self._pinging: asyncio.Future[None] | None = None
        registry = registry if registry is not None else CollectorRegistry()
        self.errors = Counter(
            "oms_database_errors", "Database faults this process met, by kind (requests, sagas, background loops, "
            "pings)", ["kind"], registry=registry,
        )  # fmt: skip
        for kind in KINDS:  # each at 0 from the start, so a rate() sees the first fault
            self.errors.labels(kind)
        self.up_gauge = Gauge(
            "oms_database_up", "1 while this process can use its database (its latest ping, or statement, went "
            "through, and no write failed since the latest that committed), else 0", registry=registry,
        )  # fmt: skip
        self.up_gauge.set_function(lambda: 1.0 if self.up else 0.0)

    def attach(self, database: Database, timeout: float) -> None:
        """Watch ``database`` (now open): its observer from now on; ``timeout`` bounds a ping."""
        self.database = database
        self.timeout = timeout
        database.observer = self

    # -- the database's observer (oms.db.Observer) --------------------------------------------------

    def failed(self, error: Unavailable, *, writing: bool) -> None:
        if error.counted:  # told already, by a layer nearer to the fault
            return
        error.counted = True
        self.errors.labels(error.kind).inc()
        if error.kind == "conflict":
            return
        if writing:
            self._write_error = error
        else:
            self._read_error = error
            self._checked = self._clock()
        self._settle()

    def wrote(self) -> None:
        self._write_error = None
        self._settle()

    # -- the state ----------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self.database is not None and self._read_error is None and self._write_error is None

    @property
    def error(self) -> Unavailable | None:
        """The fault that makes the database unusable now; None while it is up."""
        return self._write_error or self._read_error

    def state(self) -> dict[str, Any]:
        """``up``; when down, since when (ISO 8601, UTC), its fault's kind and what the driver said."""
        error = self.error
        if error is None or self._down_since is None:
            return {"up": self.up, "kind": None, "since": None, "detail": None}
        since = datetime.fromtimestamp(self._down_since, UTC).isoformat(timespec="seconds")
        return {"up": False, "kind": error.kind, "since": since, "detail": error.detail}

    async def check(self) -> bool:
        """Whether the database is usable, from a ping unless the latest outcome is younger than
        ``max_age``; a ping under way is waited for, never doubled."""
        if self.database is None:
            return False
        if self._pinging is None and self._clock() - self._checked >= self.max_age:
            self._pinging = asyncio.ensure_future(self._ping(self.database))
        if self._pinging is not None:
            # Shielded: a probe that gives up (its client went away) leaves the ping to the others.
            await asyncio.shield(self._pinging)
        return self.up

    async def _ping(self, database: Database) -> None:
        write = self._write_error is not None
        try:
            await asyncio.wait_for(database.ping(write=write), self.timeout)
        except Unavailable as error:
            self.failed(error, writing=write)  # unless the database told it already
        except TimeoutError:
            self.failed(Unavailable("timeout", f"no answer to a ping within {self.timeout:g} s"), writing=write)
        else:
            self._read_error = None
            if write:
                self._write_error = None
            self._settle()
        finally:
            self._checked = self._clock()
            self._pinging = None

    def _settle(self) -> None:
        error = self.error
        if error is None:
            if self._down_since is not None:
                log.warning("database usable again", down_for=round(self._wall() - self._down_since, 1))
                self._down_since = None
        elif self._down_since is None:
            self._down_since = self._wall()
            log.warning("database unavailable", kind=error.kind, error=error.detail)
