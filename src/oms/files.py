"""Files the system writes for itself (databases, logs, the audit trail, the key, pid files) are its
owner's alone: created ``0600``, in directories created ``0700``. A file or a directory that exists
keeps the mode it has: its owner may have chosen it (a log collector's group, say)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO


def private_dir(path: Path) -> None:
    """Create ``path`` readable by its owner alone (its missing parents as the umask has it)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def append_private(path: Path) -> IO[bytes]:
    """``path`` open for appending, unbuffered; created ``0600`` (its directory ``0700``) if missing."""
    private_dir(path.parent)
    return open(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab", buffering=0)
