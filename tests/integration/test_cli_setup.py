"""The setting-up commands, run as a user runs them. ``oms seed``: the demo catalog into a new
database (SQLite or PostgreSQL), its schema made first; run again, nothing changes; an item already
there keeps its stock. ``oms seed`` and ``oms serve`` on a database they cannot use: one line that
says where and why, exit 2, nothing started. ``oms auth init`` says whether it made the key; ``oms
logs`` shows the end of each service's log."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql+asyncpg://oms:secret@127.0.0.1:1/order", "cannot reach PostgreSQL at 127.0.0.1:1: "),
        ("mysql://oms@localhost/order", "not a database URL oms takes"),
        ("sqlite:///{tmp}/not-a-database.db", "cannot open the SQLite database {tmp}/not-a-database.db: "),
    ],
)
def test_serve_on_a_database_it_cannot_use_says_so_in_one_line(url: str, said: str, tmp_path: Path) -> None:
    (tmp_path / "not-a-database.db").write_text("these are not the pages of a SQLite database\n" * 200)
    url, said = url.format(tmp=tmp_path), said.format(tmp=tmp_path)
    answer = oms("serve", "order", "--port", "0", "--data-dir", str(tmp_path), "--database-url", url)
    assert answer.returncode == 2
    lines = (answer.stdout + answer.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(said), lines
    assert "secret" not in lines[0]
    assert not (tmp_path / "order.pid").exists()


def test_auth_init_says_whether_it_created_the_key(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "auth-key.json"
    first = oms("auth", "init", "--key-file", str(key))
    assert first.returncode == 0 and first.stdout.splitlines() == [
        str(key),
        "created (mode 0600); give this file to every service of the system",
    ]
    content = key.read_bytes()
    again = oms("auth", "init", "--key-file", str(key))
    assert again.returncode == 0 and again.stdout.splitlines()[1].startswith("already there: kept as it is")
    assert key.read_bytes() == content


def test_logs_shows_the_end_of_each_services_log(tmp_path: Path) -> None:
    for name in ("order", "inventory"):
        (tmp_path / f"{name}.log").write_text("".join(f"{name} line {n} [not markup]\n" for n in range(1, 31)))
    both = oms("logs", "--data-dir", str(tmp_path), "-n", "2")
    assert both.returncode == 0, both.stderr
    assert both.stdout.splitlines() == [
        "order    | order line 29 [not markup]", "order    | order line 30 [not markup]",
        "inventory| inventory line 29 [not markup]", "inventory| inventory line 30 [not markup]",
    ]  # fmt: skip
    one = oms("logs", "order", "--data-dir", str(tmp_path))
    assert one.stdout.splitlines() == [f"order line {n} [not markup]" for n in range(11, 31)]
    none = oms("logs", "payment", "--data-dir", str(tmp_path))
    assert none.returncode == 1 and "no log in" in none.stdout
