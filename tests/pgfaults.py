"""A PostgreSQL server's failures, made for real on a server of a test's own (``tests/pgserver.py``):
crashed and started again (``PostgresServer.kill``, ``start_again``), or hung (every one of its
processes stopped with SIGSTOP, then let go on)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator

import pgserver


@contextlib.contextmanager
def own_server() -> Iterator[pgserver.PostgresServer]:
    """A server for one test alone, since it is crashed and hung on purpose; stopped after it."""
    server = pgserver.start()
    try:
        yield server
    finally:
        _signal(pids(server), signal.SIGCONT)
        server.stop()


def pids(server: pgserver.PostgresServer) -> list[int]:
    """The postmaster and every process it started (none when the server is down)."""
    pidfile = server.datadir / "postmaster.pid"
    if not pidfile.exists():
        return []
    postmaster = pidfile.read_text().split()[0]
    children = subprocess.run(["pgrep", "-P", postmaster], capture_output=True, text=True).stdout.split()
    return [int(postmaster), *map(int, children)]


def _signal(processes: list[int], signum: signal.Signals) -> None:
    for pid in processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


@contextlib.contextmanager
def hung(server: pgserver.PostgresServer) -> Iterator[None]:
    """For the block, every server process stopped: connections stay open and nothing answers."""
    stopped = pids(server)
    _signal(stopped, signal.SIGSTOP)
    try:
        yield
    finally:
        _signal(stopped, signal.SIGCONT)
