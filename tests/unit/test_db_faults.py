"""Which driver errors are the database's faults (``Unavailable``: a 503, retried) and which are the
statement's or the code's (a refusal, or a 500 with its traceback)."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest

from oms.db import Conflict, Unavailable, postgres, sqlite


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), "unreachable"),
        (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"), "unreachable"),
        (asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"), "unreachable"),
        (asyncpg.InterfaceError("pool is closing"), "unreachable"),
        (asyncpg.AdminShutdownError("terminating connection due to administrator command"), "unreachable"),
        (asyncpg.CannotConnectNowError("the database system is starting up"), "unreachable"),
        (TimeoutError(), "timeout"),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), "timeout"),
        (asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"), "read_only"),
        (asyncpg.DiskFullError("could not extend file"), "disk_full"),
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), "busy"),
        (asyncpg.SerializationError("could not serialize access"), "conflict"),
        (asyncpg.DeadlockDetectedError("deadlock detected"), "conflict"),
    ],
)
def test_postgres_faults(error: Exception, kind: str) -> None:
    fault = postgres.fault(error)
    assert isinstance(fault, Unavailable) and fault.kind == kind
    assert isinstance(fault, Conflict) == (kind == "conflict")


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key value"),
        asyncpg.InvalidTextRepresentationError("invalid input syntax for type integer"),
        asyncpg.InterfaceError("the server expects 2 arguments for this query, 3 were passed"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.exceptions.StatementCompletionUnknownError("statement completion unknown"),
        KeyError("status"),
    ],
)
def test_postgres_errors_that_are_not_the_databases_faults(error: Exception) -> None:
    assert postgres.fault(error) is None


def _sqlite_error(code: int, message: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("code", "kind"),
    [(5, "busy"), (8, "read_only"), (10, "io"), (10 | (3 << 8), "io"), (13, "disk_full"), (14, "unreachable")],
)
def test_sqlite_faults_by_result_code(code: int, kind: str) -> None:
    fault = sqlite.fault(_sqlite_error(code, "x"))
    assert fault is not None and fault.kind == kind


def test_sqlite_errors_that_are_not_faults() -> None:
    assert sqlite.fault(_sqlite_error(1, "no such table: orders")) is None  # SQLITE_ERROR: a bug
    assert sqlite.fault(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
