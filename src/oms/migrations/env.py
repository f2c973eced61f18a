"""Alembic's entry point: runs on the connection that ``oms.migrations.migrate`` hands it.

Before it runs the migrations, it notes the revision the database is at (None: no revision yet) in
``config.attributes["revision_before"]``: a migration that converts data written by older releases
decides from it which releases may have written the rows (order's 0005)."""

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
    context.config.attributes["revision_before"] = context.get_context().get_current_revision()
    context.run_migrations()
