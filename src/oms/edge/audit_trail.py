"""The audit trail: one JSON line for every call that changes state (or tried to), written by the
Gate once the answer is sent. Who (``sub``, ``role``), what (``action``), which object, the outcome
(HTTP status) and the request id (the server's own; the caller's ``X-Request-Id`` beside it as
``client_request_id``); never a body, so never a payment method.

Lines go to a file of their own (``<data_dir>/<service>-audit.log`` by default), unbuffered: the
lines of one turn of the event loop are written together at its end, in one system call, so a line
is in the page cache microseconds after its answer was sent.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import IO, Any

import orjson

from oms.files import append_private
from oms.utc import utc_now

CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_CHANGES = frozenset({"/inventory/check"})
"""POST routes that only read (a stock check is a question)."""


class Trail:
    def __init__(self, service: str, stream: IO[bytes] | None) -> None:
        self.service = service
        self.stream = stream
        self._lines: list[dict[str, Any]] = []

    def wants(self, method: str, path: str) -> bool:
        return self.stream is not None and method in CHANGES and path not in NOT_CHANGES

    def write(
        self,
        *,
        request_id: str,
        sub: str | None,
        role: str | None,
        action: str,
        target: str | None,
        status: int,
        client_request_id: str | None = None,
    ) -> None:
        """Queue the line; the lines of one turn of the event loop go out in one write at its end (under
        load, many answers end in one turn: one system call and one clock reading for all of them)."""
        if self.stream is None:
            return
        outcome = "ok" if status < 400 else "refused" if status < 500 else "error"
        line = {
            "request_id": request_id, "sub": sub, "role": role, "action": action, "object": target,
            "status": status, "outcome": outcome,
        }  # fmt: skip
        if client_request_id is not None:  # the caller's own X-Request-Id, beside the server's
            line["client_request_id"] = client_request_id
        self._lines.append(line)
        if len(self._lines) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop: at once
                self.flush()

    def flush(self) -> None:
        if not self._lines or self.stream is None:
            return
        head = {"at": utc_now(), "service": self.service}
        lines, self._lines = self._lines, []
        self.stream.write(b"".join(orjson.dumps({**head, **line}) + b"\n" for line in lines))


def open_trail(service: str, where: str, data_dir: Path) -> Trail:
    """``where``: a file path, ``-`` for standard error, ``off`` for none; empty for the default file."""
    if where == "off":
        return Trail(service, None)
    if where == "-":
        return Trail(service, sys.stderr.buffer)
    path = Path(where) if where else data_dir / f"{service}-audit.log"
    return Trail(service, append_private(path))
