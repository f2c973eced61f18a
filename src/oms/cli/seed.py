"""``oms seed``: put the demo catalog into InventoryService's database, whichever it is (the SQLite
file ``oms up`` uses, or a PostgreSQL database made for a deployment), through the inventory store.

The database's schema is brought to the newest revision first (as the service does at start), so a
new empty database can be seeded before the service ever ran. Only SKUs it lacks are added: an item
already there keeps its stock and price (``oms up`` seeds only an empty catalog, for the same reason)."""

from __future__ import annotations

import asyncio

from rich.console import Console

from oms.cli.database import unreachable
from oms.cli.launcher import DEMO_CATALOG
from oms.db import connect, database_label
from oms.inventory import store
from oms.migrations import migrate


async def seed(url: str) -> tuple[list[str], list[str]]:
    """The demo SKUs added to the database at ``url``, and those it had already."""
    await migrate(url, "inventory")
    db = await connect(url)
    added, kept = [], []
    try:
        for item in DEMO_CATALOG:
            if await store.get_item(db, item["sku"]) is not None:
                kept.append(item["sku"])
                continue
            await store.put_item(db, **item)
            added.append(item["sku"])
    finally:
        await db.close()
    return added, kept


def run(console: Console, url: str) -> int:
    try:
        added, kept = asyncio.run(seed(url))
    except Exception as exc:  # any failure to reach or use the database: one line, not a traceback
        console.print(f"[red]{unreachable(url, exc)}[/red]", highlight=False, soft_wrap=True)
        return 2
    where = database_label(url)
    if added:
        console.print(f"Seeded the demo catalog into {where}: " + ", ".join(added), highlight=False, soft_wrap=True)
    if kept:
        console.print(f"Already there, left as they are: {', '.join(kept)}", highlight=False, soft_wrap=True)
    return 0
