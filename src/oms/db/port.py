"""The port: what a service's store sees of its database, whichever database it is.

Stores write dialect-neutral SQL with ``?`` placeholders and ``ON CONFLICT`` upserts, which both
databases understand. What differs between them is answered by the ``Database`` in hand: how a
write on its own goes (``execute_one``, ``write_returning``, ``write_all``), how a read on its own
goes (``fetch_all``, ``fetch_one``), whether rows can be locked (``locked``), whether a store's
one-statement form of a write is worth it (``writes_in_one_statement``), and which errors mean the
statement was refused (``refusals``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from oms.errors import Fault, OmsError

Row = Mapping[str, Any]

Statement = tuple[str, Sequence[Any]]
"""A statement's SQL and its parameters."""


class IntegrityError(OmsError):
    """A unique or foreign-key constraint refused a write (either database)."""


class Unavailable(Fault):
    """The database could not be used just now: a fault of the database or of the way to it, not of
    the statement. ``kind`` says which, for metrics and the logs:

    - ``unreachable``: no connection, or it broke (the server crashed, restarted or shut down);
    - ``timeout``: no answer within ``database_timeout`` (a hung server, a pool with no free
      connection, a statement cancelled by ``statement_timeout``);
    - ``read_only``: the server takes no writes (a standby not yet promoted; a read-only file);
    - ``disk_full``: no room to write (a full disk, a file over its size limit);
    - ``busy``: the server turned the connection away (too many), or SQLite stayed locked;
    - ``io``: the file system failed a read or a write;
    - ``conflict``: a serialization failure or deadlock (``Conflict``).

    After any kind but ``conflict``, a write may have committed or not: its caller must not assume
    either, and must not write it again blindly."""

    counted = False
    """Set by the observer that counted it (``Observer.failed``): a fault that passes several layers
    of a database, or reaches several of its callers (a group commit), is counted once."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"database {kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Conflict(Unavailable):
    """The server refused a transaction because of a concurrent one (serialization failure,
    deadlock): nothing of it stands, and it may be tried again."""

    def __init__(self, detail: str) -> None:
        super().__init__("conflict", detail)


KINDS = ("unreachable", "timeout", "read_only", "disk_full", "busy", "io", "conflict")
"""Every ``Unavailable.kind``."""


class Observer(Protocol):
    """What a service learns of its database from the database itself (``Database.observer``): each
    fault as it is raised, and the first write that commits after a write failed. Told only on those
    paths: a statement that goes through costs nothing more."""

    def failed(self, error: Unavailable, *, writing: bool) -> None:
        """A statement (or a connection, a commit, a ping) met ``error``. ``writing``: a write met
        it, where a read would not show the fault (SQLite: its writing connection; PostgreSQL: the
        kinds only a write meets, ``read_only`` and ``disk_full``), so only a write that goes
        through (``wrote``, or ``Database.ping(write=True)``) shows it is over."""

    def wrote(self) -> None:
        """A write committed, the first since one failed with ``writing``."""


def tell(observer: Observer | None, exc: BaseException, *, writing: bool) -> None:
    """``observer`` told of ``exc`` when it is a fault (``Unavailable``)."""
    if observer is not None and isinstance(exc, Unavailable):
        observer.failed(exc, writing=writing)


class Tx(Protocol):
    """A transaction's statements (``Database.transaction``)."""

    async def execute(self, sql: str, *params: Any) -> int:
        """The rows the statement changed."""

    async def fetchone(self, sql: str, *params: Any) -> Row | None: ...
    async def fetchall(self, sql: str, *params: Any) -> list[Row]: ...


class Database(Protocol):
    writes_in_one_statement: bool
    """True where a store should send a write that has a one-statement form (many rows, many
    tables, the decision made in the statement: data-modifying ``WITH`` clauses, arrays through
    ``unnest``, row locks) as that one statement, and the writes of concurrent callers as one
    statement for many (``Batcher``): on PostgreSQL every statement is a round trip and, on its own,
    a commit. False on SQLite, which has no data-modifying ``WITH`` and needs none of it: a
    statement is a call into the library, transactions run one at a time, and the group commit
    already makes one commit of many transactions."""

    observer: Observer | None
    """Told of each fault as it is raised, and of the first write that commits after a failed one
    (the service's readiness and metrics); None: nobody."""

    refusals: tuple[type[Exception], ...]
    """The errors by which the database refuses a statement, so that nothing of it stands (a
    constraint, a value the server cannot take). Not a lost connection: after that, a statement
    may have committed or not."""

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction: its statements all stand when the ``async with`` block returns, or none."""

    async def fetch_all(self, sql: str, *params: Any) -> list[Row]:
        """One query that only reads, on its own: on PostgreSQL without BEGIN and COMMIT (two round
        trips fewer), on SQLite on the reading connection (no wait for a group commit)."""

    async def fetch_one(self, sql: str, *params: Any) -> Row | None:
        """``fetch_all``'s first row, if any."""

    async def execute_one(self, sql: str, *params: Any) -> int:
        """One write statement as its own transaction (the rows it changed): on PostgreSQL a single
        round trip, without BEGIN and COMMIT."""

    async def write_returning(self, sql: str, *params: Any) -> list[Row]:
        """One write statement (``RETURNING`` rows) as its own transaction: on PostgreSQL a single
        round trip, without BEGIN and COMMIT."""

    async def write_all(self, statements: Sequence[Statement]) -> None:
        """Write statements that do not read each other's effects, all or none.

        On PostgreSQL they go as one statement, every one but the last a data-modifying ``WITH``
        clause: one round trip, its own transaction, and row locks held only while it runs (never
        across a turn of the client). All clauses see the same snapshot, hence the rule above. On
        SQLite, one transaction of the statements."""

    async def ping(self, *, write: bool = False) -> None:
        """Raise ``Unavailable`` unless the database answers a query now (readiness), within the
        database's timeout; with ``write``, unless it takes a write too (SQLite: a transaction that
        rewrites the file's header, committed; PostgreSQL: the server is not a standby)."""

    def locked(self, sql: str, *, skip_locked: bool = False) -> str:
        """``sql``, a ``SELECT``, made to lock the rows it reads until its transaction ends, where
        rows can be locked (PostgreSQL: ``FOR UPDATE``, and ``SKIP LOCKED`` to pass over rows that
        another transaction holds). On SQLite ``sql`` as it is: its write transactions already run
        one at a time."""

    async def close(self) -> None: ...


def placeholders(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)
