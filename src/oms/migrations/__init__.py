"""Each service's schema, created and upgraded by Alembic migrations, on SQLite and on PostgreSQL.

``migrate(url, service)`` runs at every start of a service: it brings the database to the newest
revision under ``versions/<service>/``, and refuses a database that a newer release has upgraded
(``NewerDatabase``: the service does not start). ``oms migrate --revision`` writes a new revision from the
difference between a service's ``schema.py`` and its migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from oms import db
from oms.errors import OmsError

HERE = Path(__file__).parent


def metadata_of(service: str) -> sa.MetaData:
    if service == "order":
        from oms.orders.schema import metadata
    elif service == "inventory":
        from oms.inventory.schema import metadata
    elif service == "payment":
        from oms.payments.schema import metadata
    else:
        raise ValueError(f"unknown service {service!r}")
    return metadata


def config(service: str, connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(HERE / "versions" / service))
    cfg.attributes["connection"] = connection
    cfg.attributes["metadata"] = metadata_of(service)
    return cfg


class NewerDatabase(OmsError, RuntimeError):
    """The database is at a revision this release does not have: a newer release upgraded it."""

    def __init__(self, service: str, current: str, head: str | None) -> None:
        super().__init__(
            f"The {service} database is at revision {current}, which this release of oms does not know "
            f"(its newest is {head}): a newer release has upgraded it. This release does not run on it "
            "(it could write rows the newer one does not read, or read what it cannot). Start the newer "
            "release, or restore the backup taken before the upgrade (docs/upgrading.md)."
        )
        self.service = service
        self.current = current
        self.head = head


def _upgrade(service: str, connection: sa.Connection) -> None:
    current = MigrationContext.configure(connection).get_current_revision()
    if current is not None:
        script = ScriptDirectory.from_config(config(service, connection))
        if current not in {rev.revision for rev in script.walk_revisions()}:
            raise NewerDatabase(service, current, script.get_current_head())
    if current is None and sa.inspect(connection).get_table_names():
        # Tables made before migrations existed (create_all): they are the first revision's.
        command.stamp(config(service, connection), "0001")
    command.upgrade(config(service, connection), "head")


async def migrate(url: str, service: str) -> None:
    """Bring the service's database to the newest revision (idempotent; safe for concurrent starts)."""
    await db.run_sync(url, lambda connection: _upgrade(service, connection), lock_key=f"oms-migrate-{service}")
