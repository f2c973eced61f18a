"""A database named on the command line, tried before a command uses it: ``oms serve`` and ``oms
seed`` say in one line why they cannot (``cannot reach PostgreSQL at HOST:PORT: ...``, exit 2) where
a service starting on it would end in a traceback a hundred lines long."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from oms.db import database_label, is_postgres
from oms.db.schema import asyncpg_dsn
from oms.db.sqlite import sqlite_path
from oms.errors import OmsError


class Unreachable(OmsError):
    """The database cannot be used: the message says where and why, in one line."""


CONNECT_TIMEOUT = 5.0


async def reach(url: str) -> None:
    """Open the database at ``url`` once and let it go (a SQLite file that does not exist yet: that it
    can be made); ``Unreachable`` when that fails. Nothing is written."""
    try:
        if is_postgres(url):
            import asyncpg

            connection = await asyncpg.connect(asyncpg_dsn(url), timeout=CONNECT_TIMEOUT)
            await connection.close()
        else:
            _sqlite(Path(sqlite_path(url)))
    except Exception as exc:  # whatever the driver raises: said in one line
        raise Unreachable(unreachable(url, exc)) from exc


def _sqlite(path: Path) -> None:
    if path.exists():
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=CONNECT_TIMEOUT)
        try:
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # not a database: an error
        finally:
            connection.close()
        return
    nearest = path.parent
    while not nearest.exists():  # the service makes the missing directories
        nearest = nearest.parent
    if not nearest.is_dir() or not os.access(nearest, os.W_OK | os.X_OK):
        raise PermissionError(f"{nearest} is not a directory it may write in")


def unreachable(url: str, exc: BaseException) -> str:
    """One line for a database that could not be used: where, and why (the error's last line)."""
    text = str(exc).strip()
    reason = text.splitlines()[-1] if text else type(exc).__name__
    if is_postgres(url):
        where = urlsplit(url).netloc.rpartition("@")[2] or "localhost:5432"
        return f"cannot reach PostgreSQL at {where}: {reason}"
    if url.startswith("sqlite:///"):
        return f"cannot open the SQLite database {database_label(url)}: {reason}"
    return f"not a database URL oms takes ({reason}): write sqlite:///PATH or postgresql+asyncpg://USER@HOST:PORT/NAME"
