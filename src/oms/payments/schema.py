from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# At most one row per order (the unique order_id): a repeated charge returns the first one. A
# VOIDED row is an order settled before any charge arrived: a charge that comes later (a request
# delayed in the network after its caller gave up on it) is refused. Charge and void race for the
# same unique key, so exactly one of them wins on either database.
payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("order_id", sa.String(64), nullable=False, unique=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("payment_method", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("decline_code", sa.String(64), nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)
