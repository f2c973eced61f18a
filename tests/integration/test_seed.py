"""``oms seed``, run as a user runs it: the demo catalog into a new database (SQLite or PostgreSQL),
its schema made first; run again, nothing changes; an item already there keeps its stock; a
database that cannot be reached is one line and exit 2."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

from oms.cli.launcher import DEMO_CATALOG
from oms.db import connect
from oms.inventory import store


def oms(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "oms", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


async def items(url: str) -> dict[str, dict[str, Any]]:
    db = await connect(url)
    try:
        page = await store.list_items(db, limit=100)
    finally:
        await db.close()
    return {row["sku"]: row for row in page.items}


def test_seed_puts_the_demo_catalog_into_a_new_database_once(database_url: str) -> None:
    first = oms("seed", "--database-url", database_url)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "Seeded the demo catalog" in first.stdout
    seeded = asyncio.run(items(database_url))
    assert {sku: row["available"] for sku, row in seeded.items()} == {
        str(item["sku"]): item["available"] for item in DEMO_CATALOG
    }

    async def sell_one() -> None:
        db = await connect(database_url)
        try:
            await store.put_item(db, sku="WIDGET-1", name="Widget", unit_price=1999, currency="USD", available=7)
        finally:
            await db.close()

    asyncio.run(sell_one())
    again = oms("seed", "--database-url", database_url)
    assert again.returncode == 0 and "Seeded" not in again.stdout
    assert "Already there, left as they are: WIDGET-1, GADGET-1, GIZMO-1, LAST-ONE" in again.stdout
    assert asyncio.run(items(database_url))["WIDGET-1"]["available"] == 7


def test_a_database_that_cannot_be_reached_is_one_line_and_exit_2() -> None:
    # Port 1 on the loopback: nothing listens there, and the connection is refused at once.
    answer = oms("seed", "--database-url", "postgresql+asyncpg://oms:secret@127.0.0.1:1/inventory")
    assert answer.returncode == 2
    lines = (answer.stdout + answer.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cannot reach PostgreSQL at 127.0.0.1:1: "), lines
    assert "secret" not in lines[0]
