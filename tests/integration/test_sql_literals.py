"""A statement whose literal holds a ``?`` runs the same on both databases: only its placeholders
take the parameters (on PostgreSQL, as ``$n``)."""

from __future__ import annotations

from typing import Any

from oms.db import Database
from oms.orders.schema import metadata


def test_a_question_mark_in_a_literal_is_not_a_placeholder(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        row = await db.fetch_one("SELECT 'why?' AS q, CAST(? AS INTEGER) AS p -- or not?", 5)
        assert row is not None and (row["q"], row["p"]) == ("why?", 5)

    with_db(metadata, scenario)
