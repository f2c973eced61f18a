"""For maintainers: ``python -m oms.migrations revision SERVICE "what changed"`` writes the next
revision of SERVICE's migrations from the difference between its ``schema.py`` and its migrations
(compared on a scratch SQLite database brought to the newest revision). Review what it writes."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command

from oms import db
from oms.migrations import HERE, _upgrade, config


def revision(service: str, message: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'scratch.db'}"
        existing = sorted((HERE / "versions" / service).glob("[0-9]*.py"))
        rev_id = f"{len(existing) + 1:04d}"

        def write(connection: object) -> None:
            if existing:
                _upgrade(service, connection)  # type: ignore[arg-type]
            command.revision(config(service, connection), message=message, autogenerate=True, rev_id=rev_id)

        asyncio.run(db.run_sync(url, write))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "revision":
        sys.exit('usage: python -m oms.migrations revision order|inventory|payment "what changed"')
    revision(sys.argv[2], sys.argv[3])
