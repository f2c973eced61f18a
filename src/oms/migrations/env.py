"""Alembic's entry point: runs on the connection that ``oms.migrations.migrate`` hands it."""

from __future__ import annotations

from alembic import context

from oms.db import alters_by_copy

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=context.config.attributes["metadata"],
    render_as_batch=alters_by_copy(connection),
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
