"""webhooks, relay_ways, webhook_deliveries, webhook_attempts: the outbox's ways out (oms.events)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 07:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.Integer().with_variant(sa.BigInteger, "postgresql")


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disabled_reason", sa.Text, nullable=True),
        sa.Column("secrets", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("last_success_at", sa.String(32), nullable=True),
        sa.Column("failing_since", sa.String(32), nullable=True),
    )
    op.create_table(
        "relay_ways",
        sa.Column("way", sa.String(64), primary_key=True),
        sa.Column("tx", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("owner", sa.String(96), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("first_tried_at", sa.Float, nullable=True),
        sa.Column("next_try_at", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_index("webhook_deliveries_due", "webhook_deliveries", ["endpoint_id", "next_try_at"])
    op.create_index("webhook_deliveries_order", "webhook_deliveries", ["endpoint_id", "order_id", "sequence"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=True),
        sa.Column("sequence", sa.Integer, nullable=True),
        sa.Column("try", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("next_try_at", sa.String(32), nullable=True),
        sa.Column("at", sa.String(32), nullable=False),
    )
    op.create_index("webhook_attempts_endpoint", "webhook_attempts", ["endpoint_id", "id"])
    op.create_index("webhook_attempts_order", "webhook_attempts", ["order_id"])
    op.create_index("webhook_attempts_at", "webhook_attempts", ["at"])


def downgrade() -> None:
    for index, table in (
        ("webhook_attempts_at", "webhook_attempts"),
        ("webhook_attempts_order", "webhook_attempts"),
        ("webhook_attempts_endpoint", "webhook_attempts"),
        ("webhook_deliveries_order", "webhook_deliveries"),
        ("webhook_deliveries_due", "webhook_deliveries"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("webhook_attempts", "webhook_deliveries", "relay_ways", "webhooks"):
        op.drop_table(table)
