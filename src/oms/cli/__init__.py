"""The command-line tools, apart from the services: the ``oms`` command (``commands``), its tables
(``console``), ``oms up``/``down``/``status`` (``launcher``), the process supervisor they and the
tests share (``supervisor``), and ``oms bench`` with its load generator (``bench``, ``loadgen``)."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from oms.cli import commands

__all__ = ["main"]


class _Unread:
    """Standard output that goes quiet once its reader has gone (``oms order place | head``): what
    was left to print is dropped, and the command ends with its own exit code, not a traceback."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._went()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._went()

    def _went(self) -> None:
        self._gone = True
        # What the stream still buffers goes to /dev/null when Python flushes it at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    """The ``oms`` command."""
    stdout = sys.stdout
    sys.stdout = _Unread(stdout)
    try:
        return commands.main(argv)
    finally:
        sys.stdout.flush()
        sys.stdout = stdout
