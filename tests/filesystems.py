"""Small file systems for the tests of a full disk: a tmpfs of a given size, and a file that fills it."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_file_system(directory: Path, size: str) -> Iterator[Path]:
    """``directory``, made and mounted as a tmpfs of ``size`` (``2m``) for the block; the test is
    skipped where that cannot be done (not root, no mount)."""
    directory.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=True)  # a process still holding it


def fill(directory: Path, leave: int) -> Path:
    """A file that takes all the room on ``directory``'s file system but ``leave`` bytes."""
    filler = directory / "filler"
    free = os.statvfs(directory)
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, free.f_bavail * free.f_frsize - leave))
    return filler
