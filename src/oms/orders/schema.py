from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(200), nullable=False),
    sa.Column("payment_method", sa.String(200), nullable=False),
    sa.Column("lines", sa.Text, nullable=False),
    sa.Column("items", sa.Text, nullable=True),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("saga_name", sa.String(16), nullable=False, server_default="order"),
    sa.Column("saga_status", sa.String(24), nullable=False),
    sa.Column("inventory_check", sa.String(16), nullable=True),
    sa.Column("reservation", sa.String(16), nullable=False),
    sa.Column("total_amount", sa.BigInteger, nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("payment_id", sa.String(40), nullable=True),
    sa.Column("failure_reason", sa.String(64), nullable=True),
    sa.Column("pending_reason", sa.String(64), nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    # Which OrderService process drives the saga, until when: a live one renews its lease, a dead
    # one's lapses and another process takes the saga over.
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.String(32), nullable=True),
    # The span of the request that placed the order (trace id, span id: "<32 hex>-<16 hex>"), when
    # tracing is on: the order's trace id, and what later sagas of it link to. Written with the order.
    sa.Column("trace_context", sa.String(64), nullable=True),
    # The order's last event (oms.orders.events): its sequence, and its id. A write that changes the
    # status sets both, and writes the event whose id it set, in the same transaction; deciding on
    # the row itself (its newest version, locked by the write), two writers never number alike.
    sa.Column("event_sequence", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_event", sa.String(40), nullable=True),
    sa.Index("orders_status_created", "status", "created_at"),
    sa.Index("orders_saga_lease", "saga_status", "lease_until"),
    sa.Index("orders_created", "created_at"),
    # A customer's own orders, newest first (GET /orders with a customer's token), without reading
    # every other customer's.
    sa.Index("orders_customer_created", "customer_id", "created_at"),
)

# The saga log: one row per step and per compensation attempt, written in the same transaction as
# the order's status change.
saga_log = sa.Table(
    "saga_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("saga", sa.String(16), nullable=False, server_default="order"),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("ended_at", sa.String(32), nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Index("saga_log_order", "order_id", "id"),
)

# Last known stock and price per SKU, from InventoryService's answers and the periodic sync: the
# fallback data when InventoryService is out of reach.
catalog = sa.Table(
    "catalog",
    metadata,
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("unit_price", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("available", sa.BigInteger, nullable=False),
    sa.Column("synced_at", sa.String(32), nullable=False),
    # Units of ``available`` that orders placed on fallback data hold (the sum of their rows in
    # fallback_holds, kept with them in the same transactions): one row to read, however many holds.
    sa.Column("held", sa.BigInteger, nullable=False, server_default="0"),
)

# Units that orders placed on fallback data took from the last known stock and that are not
# reserved at InventoryService yet: they come off what the fallback offers the next order.
fallback_holds = sa.Table(
    "fallback_holds",
    metadata,
    sa.Column("order_id", sa.String(40), primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("quantity", sa.BigInteger, nullable=False),
)

# The outbox: one row per change of an order's status, written in the same transaction as the
# change (oms.orders.events). Read in the order (tx, position): on SQLite tx is 0; on PostgreSQL
# the writing transaction's id (its default there, set below), so that a reader can wait for the
# transactions still running rather than pass over an event that commits late. A way out (feed,
# relay) keeps the (tx, position) it has reached and reads on from it through events_order.
events = sa.Table(
    "events",
    metadata,
    sa.Column("position", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("tx", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.UniqueConstraint("order_id", "sequence", name="events_order_sequence"),
    sa.Index("events_order", "tx", "position"),
    sa.Index("events_time", "time"),
    sqlite_autoincrement=True,  # positions never reused, even once every event is pruned
)

EVENTS_TX_DEFAULT = "ALTER TABLE events ALTER COLUMN tx SET DEFAULT CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)"
"""PostgreSQL: an event's ``tx`` is the id of the transaction that writes it."""
_tx_default = sa.DDL(EVENTS_TX_DEFAULT)  # type: ignore[no-untyped-call]
sa.event.listen(events, "after_create", _tx_default.execute_if(dialect="postgresql"))

# Webhook endpoints (oms.events): where an admin asked events to be POSTed, which types, and the
# secrets that sign them (JSON: [{"secret", "retired_at"}], the current one first). ``failing_since``:
# the time of the first failed try since the last success (None: the last try succeeded).
webhooks = sa.Table(
    "webhooks",
    metadata,
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

# Each way out of the outbox (``nats``; ``webhook:<id>`` for each endpoint): the last event
# (tx, position) it is done with (every event up to it sent, or handed to ``deliveries``), and the
# relay process holding it until ``lease_until``: one relay at a time drives a way, and a dead one's
# lease lapses for another to take it over from the cursor (oms.events.relay).
relay_ways = sa.Table(
    "relay_ways",
    metadata,
    sa.Column("way", sa.String(64), primary_key=True),
    sa.Column("tx", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("owner", sa.String(96), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
)

# Webhook deliveries waiting for a later try: one that failed (``next_try_at``: when it goes again),
# an order's later event held behind it (``next_try_at`` 0: goes as soon as the one before it is
# done), a replay. Deleted once delivered or given up on; ``webhook_attempts`` keeps the record.
# Times in seconds since the epoch.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer().with_variant(sa.BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    sa.Column("endpoint_id", sa.String(40), nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("order_id", sa.String(40), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("first_tried_at", sa.Float, nullable=True),
    sa.Column("next_try_at", sa.Float, nullable=False, server_default="0"),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("webhook_deliveries_due", "endpoint_id", "next_try_at"),
    sa.Index("webhook_deliveries_order", "endpoint_id", "order_id", "sequence"),
)

# Every try of every webhook delivery, newest last: what GET /webhooks/{id}/deliveries shows.
# ``outcome``: delivered, retry (``next_try_at`` says when), given_up, endpoint_gone (410), test.
# Pruned with the events (event_retention).
webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.Integer().with_variant(sa.BigInteger, "postgresql"), primary_key=True, autoincrement=True),
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
    sa.Index("webhook_attempts_endpoint", "endpoint_id", "id"),
    sa.Index("webhook_attempts_order", "order_id"),
    sa.Index("webhook_attempts_at", "at"),
)
