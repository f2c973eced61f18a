"""Pid files as ``oms serve``, ``oms up``, ``oms down`` and ``oms status`` use them, and how ``oms status``
shows a database."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from oms.db import database_label
from oms.pidfile import alive, claim_pid_file, read_pid, release_pid_file


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_pid_file_is_claimed_unless_a_live_process_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "order.pid"
    assert read_pid(path) is None
    assert claim_pid_file(path, 12345678) and read_pid(path) == 12345678  # a dead pid's file: taken over
    assert claim_pid_file(path, os.getpid()) and path.read_text() == f"{os.getpid()}\n"
    assert not claim_pid_file(path, 7)  # held by a live process (this one): left alone
    release_pid_file(path, 7)  # not its own: left alone
    assert read_pid(path) == os.getpid()
    release_pid_file(path, os.getpid())
    assert not path.exists()
    path.write_text("not a pid\n")
    assert read_pid(path) is None


def test_alive() -> None:
    assert alive(os.getpid())
    assert not alive(dead_pid())
    zombie = subprocess.Popen(["true"])
    try:
        for _ in range(100):  # exited, not yet reaped: a zombie is not alive
            if not alive(zombie.pid):
                break
            os.sched_yield()
            subprocess.run(["sleep", "0.01"], check=True)
        assert not alive(zombie.pid)
    finally:
        zombie.wait()


def test_database_label() -> None:
    assert database_label("sqlite:////srv/oms/order.db") == "/srv/oms/order.db"
    assert database_label("sqlite:///.oms/order.db") == ".oms/order.db"
    assert (
        database_label("postgresql+asyncpg://oms:secret@db:5432/orders")
        == "postgresql+asyncpg://oms:***@db:5432/orders"
    )
    assert database_label("postgresql+asyncpg://oms@db/orders") == "postgresql+asyncpg://oms@db/orders"
