"""A service's SQLite files are its owner's alone: they hold customers' orders and payment methods."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from oms.db import SqliteDatabase
from oms.migrations import migrate


def test_the_database_files_are_made_readable_by_their_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "data" / "payment.db"

    async def main() -> None:
        await migrate(f"sqlite:///{path}", "payment")  # a service's start makes the file here
        db = SqliteDatabase(str(path))
        await db.execute_one("UPDATE alembic_version SET version_num = version_num")  # the WAL is written
        made = sorted(p.name for p in path.parent.iterdir())
        modes = {name: stat.S_IMODE(os.stat(path.parent / name).st_mode) for name in made}
        await db.close()
        assert {"payment.db", "payment.db-wal", "payment.db-shm", "payment.db-writer"} <= set(made), made
        assert set(modes.values()) == {0o600}, modes

    asyncio.run(main())


def test_a_file_that_exists_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "order.db"
    path.touch(mode=0o640)
    os.chmod(path, 0o640)
    SqliteDatabase(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
