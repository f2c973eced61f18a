"""orders.idempotency_key: every key stored as its customer's digest; raw keys of older releases converted

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00.000000

What the key column holds changed without a revision of its own. Up to commit 0ef619f (2026-11-26
13:04, "Bearer tokens on every route") OrderService stored the ``Idempotency-Key`` header as the
client sent it; since then it stores ``scoped_key(customer_id, key)``, the SHA-256 hex digest of the
customer id, U+001F and the key (``oms.orders.api.scoped_key``), and looks keys up only that way. No
row was converted, so a client retrying with a key taken before the upgrade got a second order and a
second charge. This migration converts those rows, and from now on the database refuses a key that
is not a digest (the CHECK below), so that a replica of an older release still running writes no raw
key after the conversion.

Which rows hold raw keys, decided by the revision the database was at when this upgrade began
(``revision_before``, noted by env.py before any migration of this run):

- None, 0001 or 0002: every key is raw, and every key is converted, whatever it looks like (a
  client's key may well be 64 hex digits). Each start of a service migrates to its code's newest
  revision, so a database at 0002 or below was last written by code whose newest revision was 0002
  or below. Hashing came in at 0ef619f with no revision of its own, while 0002 was the newest; the
  next revision, 0003, came with 29b6e74 (13:34 the same day). Every release up to and including
  c3be3a7 (the release of 2026-11-26, newest revision 0002) stored raw keys. The history leaves one
  kind of database ambiguous: one last written by an unreleased commit between 0ef619f and
  29b6e74 (main for those 30 minutes), which is at 0002 with digests. It is not supported: its
  digests would be hashed a second time (its keys would name no order, and a retry would place a
  second one). No release made such a database.
- 0003 or 0004: the releases of those revisions stored digests, but the rows written before the
  database was upgraded to 0003 (by a release of 0002 or below) were never converted and are raw.
  Nothing in a row says which code wrote it, so here the key's shape decides: a key that is not
  64 lowercase hex digits is raw and converted; one that is, is taken as a digest and kept. The
  ambiguous case: a raw key that a client chose as 64 lowercase hex digits, written before the
  upgrade to 0003, stays as it is (its order is kept; a retry with that key places a new order).
- 0005 or later (run again after a downgrade): every key is a digest already (the CHECK made sure).

A raw key whose digest is taken already is a key the client retried after an upgrade to 0003 or
0004 had left it raw: that retry placed a second order, which took the digest, and has answered the
key since. The key stays with that second order, the first order's key is cleared, and a warning
names both (the customer may have been charged twice: see ``oms audit`` and refund one by hand).

The keys are converted in Python, a batch of rows at a time, the same on SQLite and PostgreSQL.
Downgrading is refused: a digest cannot be turned back into its key (restore the backup taken
before the upgrade instead)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("oms.migrations")

RAW_ONLY = (None, "0001", "0002")
"""Revisions at which every stored key is raw (see above)."""

BATCH = 500

HEX = "0123456789abcdef"
DIGEST = f"length(idempotency_key) = 64 AND ltrim(idempotency_key, '{HEX}') = ''"
"""A key shaped as a digest: 64 lowercase hex digits (the same SQL on SQLite and PostgreSQL)."""

CHECK = "orders_idempotency_key_digest"

orders = sa.table("orders", sa.column("id"), sa.column("customer_id"), sa.column("idempotency_key"))


def scoped_key(customer_id: str, key: str) -> str:
    """``oms.orders.api.scoped_key`` as it was when this migration was written (a copy: the
    migration must go on meaning what it meant if that function ever changes)."""
    return hashlib.sha256(f"{customer_id}\x1f{key}".encode()).hexdigest()


def upgrade() -> None:
    before = context.config.attributes["revision_before"]
    if before in RAW_ONLY:
        convert(raw=sa.true())
    elif before in ("0003", "0004"):
        key = orders.c.idempotency_key
        convert(raw=sa.not_(sa.and_(sa.func.length(key) == 64, sa.func.ltrim(key, HEX) == "")))
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_check_constraint(CHECK, sa.text(f"idempotency_key IS NULL OR ({DIGEST})"))


def convert(raw: sa.ColumnElement[bool]) -> None:
    """Replace each raw key (the rows ``raw`` selects) with its digest, a batch of rows at a time."""
    bind = op.get_bind()
    key, order_id = orders.c.idempotency_key, orders.c.id
    converted, last = 0, ""
    while True:
        rows = bind.execute(
            sa.select(order_id, orders.c.customer_id, key)
            .where(key.is_not(None), order_id > last, raw)
            .order_by(order_id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        digests = {row.id: scoped_key(row.customer_id, row.idempotency_key) for row in rows}
        taken = {
            row.idempotency_key: row.id
            for row in bind.execute(sa.select(key, order_id).where(key.in_(list(digests.values()))))
        }
        changes = []
        for oid, digest in digests.items():
            holder = taken.get(digest)
            if holder is not None and holder != oid:
                log.warning(
                    "order %s: its idempotency key, retried after an upgrade that left it raw, placed order %s, "
                    "which the key names now, as it has since; the customer may have been charged twice "
                    "(refund one by hand)",
                    oid,
                    holder,
                )
                changes.append({"oid": oid, "digest": None})
            else:
                changes.append({"oid": oid, "digest": digest})
        bind.execute(
            orders.update().where(order_id == sa.bindparam("oid")).values(idempotency_key=sa.bindparam("digest")),
            changes,
        )
        converted += len(changes)
    if converted:
        log.info("idempotency keys of older releases converted to their digests: %d", converted)


def downgrade() -> None:
    raise RuntimeError(
        "order migration 0005 cannot be undone: the idempotency keys are digests now, which cannot be turned "
        "back into the keys clients sent. Restore the backup taken before the upgrade instead."
    )
