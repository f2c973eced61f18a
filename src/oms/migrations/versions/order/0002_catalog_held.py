"""catalog.held: units held by fallback orders, kept with fallback_holds

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 22:44:20.775987
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("catalog", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held", sa.BigInteger(), server_default="0", nullable=False))
    # Holds made before this column existed count from the start.
    op.execute(
        "UPDATE catalog SET held = "
        "COALESCE((SELECT SUM(h.quantity) FROM fallback_holds h WHERE h.sku = catalog.sku), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("catalog", schema=None) as batch_op:
        batch_op.drop_column("held")
