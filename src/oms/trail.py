"""The audit trail: one JSON line for every call that changes state (or tried to), written by the
Gate once the answer is sent. Who (``sub``, ``role``), what (``action``), which object, the outcome
(HTTP status) and the request id; never a body, so never a payment method.

Lines go to a file of their own (``<data_dir>/<service>-audit.log`` by default), each in one
unbuffered write: a line is on disk's page cache before the next request, and costs one system call.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

import orjson

from oms.fields import utc_now

CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_CHANGES = frozenset({"/inventory/check"})
"""POST routes that only read (a stock check is a question)."""


class Trail:
    def __init__(self, service: str, stream: IO[bytes] | None) -> None:
        self.service = service
        self.stream = stream

    def wants(self, method: str, path: str) -> bool:
        return self.stream is not None and method in CHANGES and path not in NOT_CHANGES

    def write(
        self, *, request_id: str, sub: str | None, role: str | None, action: str, target: str | None, status: int
    ) -> None:
        if self.stream is None:
            return
        outcome = "ok" if status < 400 else "refused" if status < 500 else "error"
        line = {
            "at": utc_now(), "service": self.service, "request_id": request_id, "sub": sub, "role": role,
            "action": action, "object": target, "status": status, "outcome": outcome,
        }  # fmt: skip
        self.stream.write(orjson.dumps(line) + b"\n")


def open_trail(service: str, where: str, data_dir: Path) -> Trail:
    """``where``: a file path, ``-`` for standard error, ``off`` for none; empty for the default file."""
    if where == "off":
        return Trail(service, None)
    if where == "-":
        return Trail(service, sys.stderr.buffer)
    path = Path(where) if where else data_dir / f"{service}-audit.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return Trail(service, open(descriptor, "ab", buffering=0))
