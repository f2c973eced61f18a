"""Pid files: where each process of the system writes its pid (``oms serve``, ``oms up``), and how
``oms up``, ``oms down`` and ``oms status`` read them."""

from __future__ import annotations

import os
from pathlib import Path

from oms.files import private_dir


def pid_file(data_dir: Path, name: str) -> Path:
    """Where a process of the system writes its pid: ``<data_dir>/<name>.pid`` (name: a service, or ``up``)."""
    return data_dir / f"{name}.pid"


def read_pid(path: Path) -> int | None:
    """The pid in a pid file; None when there is no file or it holds no number."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and has not exited (a zombie, exited but not yet reaped, has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc: kill(pid, 0) is all there is


def claim_pid_file(path: Path, pid: int) -> bool:
    """Write ``pid`` to ``path`` unless it holds another live process's pid (a replica's, say). True when written."""
    held = read_pid(path)
    if held is not None and held != pid and alive(held):
        return False
    private_dir(path.parent)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        file.write(f"{pid}\n")
    return True


def release_pid_file(path: Path, pid: int) -> None:
    """Remove ``path`` if it still holds ``pid``."""
    if read_pid(path) == pid:
        path.unlink(missing_ok=True)
