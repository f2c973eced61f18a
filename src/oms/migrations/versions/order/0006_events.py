"""events: the outbox, one row per change of an order's status (oms.orders.events)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 05:30:00.000000

Orders stored before this revision have no events: their next change of status is numbered from 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS_TX_DEFAULT = "ALTER TABLE events ALTER COLUMN tx SET DEFAULT CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)"
"""A copy of oms.orders.schema's (the migration must go on meaning what it meant)."""


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_sequence", sa.Integer, nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_event", sa.String(40), nullable=True))
    op.create_table(
        "events",
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("tx", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint("order_id", "sequence", name="events_order_sequence"),
        sqlite_autoincrement=True,
    )
    op.create_index("events_order", "events", ["tx", "position"])
    op.create_index("events_time", "events", ["time"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(EVENTS_TX_DEFAULT)


def downgrade() -> None:
    op.drop_index("events_time", table_name="events")
    op.drop_index("events_order", table_name="events")
    op.drop_table("events")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("last_event")
        batch_op.drop_column("event_sequence")
