"""Webhook endpoints and what was tried for them, in OrderService's database: the SQL behind the
``/webhooks`` routes (``oms.events.api``), on SQLite and PostgreSQL alike.

An endpoint is a row of ``webhooks``, and a way out of the outbox: its row of ``relay_ways``
(``webhook:<id>``) holds the last event the relay is done with for it. That row is made here with the
endpoint, its cursor at the head of the outbox (an endpoint gets the events that come after it was
made; older ones through a replay), and moved to the head again when a disabled endpoint is enabled
(what came while it was disabled is not sent; a replay sends it). The relay only moves the cursor on.

Secrets live in the row (``[{"secret", "retired_at"}]``, the current one first) and leave this module
only in the answers of ``create`` and ``rotate`` and as ``SigningSecret`` for signing: ``view`` never
shows them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from oms.db import Database, Row, placeholders
from oms.edge.paging import Keyset, Page
from oms.events.signing import SigningSecret, new_secret, rotate
from oms.ids import sortable_id
from oms.orders.events import VISIBLE_PG
from oms.utc import utc_now

ALL = "*"
"""``events: ["*"]``: every type."""
STATUSES = ("enabled", "disabled")
OUTCOMES = ("delivered", "retry", "given_up", "endpoint_gone", "test")
"""Every ``webhook_attempts.outcome``: the relay's four and the API's ``test``."""
DISABLED_BY_ADMIN = "disabled by an admin"

WEBHOOKS = Keyset("webhooks", ("id",))
"""Endpoints, oldest first (their ids sort by the time they were made)."""
ATTEMPTS = Keyset("webhook_attempts", ("id",))
"""An endpoint's tries, newest first."""

MAX_ORDER_ATTEMPTS = 1000
"""Most tries shown for one order's events (a few events, a few endpoints: far fewer in practice)."""

_COLUMNS = (
    "id, url, events, description, status, disabled_reason, secrets, created_at, updated_at, last_success_at, "
    "failing_since, (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.endpoint_id = webhooks.id) AS waiting"
)
_ATTEMPT_COLUMNS = (
    "a.id, a.endpoint_id, a.event_id, a.event_type, a.order_id, a.sequence, a.try, a.status_code, a.error, "
    "a.duration_ms, a.outcome, a.next_try_at, a.at"
)


def _head(visible: str | None) -> str:
    """The head of the outbox as SQL values: (tx, position) of its last event, (0, 0) when it holds none.

    On PostgreSQL, the last event of the transactions older than every one still running
    (``oms.orders.events.VISIBLE_PG``): an event whose transaction began before the endpoint was made
    and commits after it has a lower ``tx`` than one already committed, and a cursor past it would
    never send it. So the cursor stops short of those, and an event committed just before the endpoint
    was made may go to it too (deliveries are at least once anyway)."""
    where = f"WHERE {visible} " if visible else ""
    last = "SELECT {column} FROM events " + where + "ORDER BY tx DESC, position DESC LIMIT 1"
    return f"COALESCE(({last.format(column='tx')}), 0), COALESCE(({last.format(column='position')}), 0)"


def new_webhook_id() -> str:
    """``we_`` and a unique id that sorts by time, as event ids are made."""
    return sortable_id("we_")


def way(endpoint_id: str) -> str:
    """The endpoint's row of ``relay_ways``."""
    return f"webhook:{endpoint_id}"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def signing_secrets(row: Row) -> list[SigningSecret]:
    """The endpoint's secrets, for ``oms.events.signing.sign``."""
    return [SigningSecret(s["secret"], s["retired_at"]) for s in orjson.loads(row["secrets"])]


def view(row: Row) -> dict[str, Any]:
    """An endpoint as the API shows it: without its secrets."""
    return {
        "id": row["id"],
        "url": row["url"],
        "events": orjson.loads(row["events"]),
        "description": row["description"],
        "status": row["status"],
        "disabled_reason": row["disabled_reason"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "last_success_at": row["last_success_at"],
        "failing_since": row["failing_since"],
        "waiting": int(row["waiting"]),
    }


def attempt_view(row: Row, *, endpoint: bool = False) -> dict[str, Any]:
    """A try as the API shows it; with ``endpoint``, the endpoint's id and URL too."""
    shown = {
        "id": int(row["id"]),
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "order_id": row["order_id"],
        "sequence": row["sequence"],
        "try": row["try"],
        "status_code": row["status_code"],
        "error": row["error"],
        "duration_ms": row["duration_ms"],
        "outcome": row["outcome"],
        "next_try_at": row["next_try_at"],
        "at": row["at"],
    }
    if endpoint:
        shown["endpoint_id"] = row["endpoint_id"]
        shown["url"] = row["url"]
    return shown


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._head = _head(VISIBLE_PG if db.writes_in_one_statement else None)

    async def create(self, *, url: str, events: Sequence[str], description: str = "") -> tuple[dict[str, Any], str]:
        """A new endpoint, enabled, and its way out with the cursor at the outbox's head (one
        transaction); the endpoint's view and its secret."""
        endpoint_id, secret, now = new_webhook_id(), new_secret(), utc_now()
        stored = _dumps([{"secret": secret, "retired_at": None}])
        await self.db.write_all([
            (
                "INSERT INTO webhooks (id, url, events, description, status, secrets, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'enabled', ?, ?, ?)",
                [endpoint_id, url, _dumps(list(events)), description, stored, now, now],
            ),
            (f"INSERT INTO relay_ways (way, tx, position) VALUES (?, {self._head})", [way(endpoint_id)]),
        ])  # fmt: skip
        found = await self.get(endpoint_id)
        assert found is not None
        return found, secret

    async def row(self, endpoint_id: str) -> Row | None:
        """The endpoint's row, secrets included (for signing): never an answer as it is."""
        return await self.db.fetch_one(f"SELECT {_COLUMNS} FROM webhooks WHERE id = ?", endpoint_id)

    async def get(self, endpoint_id: str) -> dict[str, Any] | None:
        found = await self.row(endpoint_id)
        return None if found is None else view(found)

    async def endpoints(self, *, limit: int, after: Sequence[str] | None = None) -> Page[dict[str, Any]]:
        """Endpoints, oldest first: the ``limit`` after the id ``after``."""
        where, params = ("WHERE id > ? ", [after[0]]) if after else ("", [])
        rows = await self.db.fetch_all(
            f"SELECT {_COLUMNS} FROM webhooks {where}ORDER BY id LIMIT ?", *params, limit + 1
        )
        return WEBHOOKS.page([view(r) for r in rows], limit, key=lambda w: (w["id"],))

    async def update(
        self,
        endpoint_id: str,
        *,
        status: str | None = None,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = None,
    ) -> dict[str, Any] | None:
        """Change what is given (None: unchanged); the endpoint's view, or None when there is none.

        Enabled after being disabled: its cursor moves to the outbox's head (what came meanwhile is
        not sent), and its reason and ``failing_since`` are cleared, so its time of failing starts
        again rather than disable it at its next failure. Disabled by this: the reason says an admin."""
        async with self.db.transaction() as tx:
            found = await tx.fetchone(self.db.locked("SELECT id, status FROM webhooks WHERE id = ?"), endpoint_id)
            if found is None:
                return None
            sets, params = ["updated_at = ?"], [utc_now()]
            for column, value in (("url", url), ("description", description)):
                if value is not None:
                    sets.append(f"{column} = ?")
                    params.append(value)
            if events is not None:
                sets.append("events = ?")
                params.append(_dumps(list(events)))
            if status is not None and status != found["status"]:
                sets.append("status = ?")
                params.append(status)
                if status == "enabled":
                    sets += ["disabled_reason = NULL", "failing_since = NULL"]
                    await tx.execute(
                        f"INSERT INTO relay_ways (way, tx, position) VALUES (?, {self._head}) "
                        # The lease too: a relay still letting the way go (it saw the endpoint disabled)
                        # must not write its older cursor back over this one.
                        "ON CONFLICT (way) DO UPDATE SET tx = excluded.tx, position = excluded.position, "
                        "owner = NULL, lease_until = NULL",
                        way(endpoint_id),
                    )
                else:
                    sets.append("disabled_reason = ?")
                    params.append(DISABLED_BY_ADMIN)
            await tx.execute(f"UPDATE webhooks SET {', '.join(sets)} WHERE id = ?", *params, endpoint_id)
        return await self.get(endpoint_id)

    async def delete(self, endpoint_id: str) -> bool:
        """The endpoint gone, with its way out, its waiting deliveries and its tries; False when there
        was none."""
        async with self.db.transaction() as tx:
            gone = await tx.execute("DELETE FROM webhooks WHERE id = ?", endpoint_id)
            if not gone:
                return False
            await tx.execute("DELETE FROM relay_ways WHERE way = ?", way(endpoint_id))
            await tx.execute("DELETE FROM webhook_deliveries WHERE endpoint_id = ?", endpoint_id)
            await tx.execute("DELETE FROM webhook_attempts WHERE endpoint_id = ?", endpoint_id)
        return True

    async def rotate_secret(self, endpoint_id: str, *, now: float | None = None) -> tuple[dict[str, Any], str] | None:
        """A new current secret (the one it replaces signs on for 24 h: ``oms.events.signing.rotate``);
        the endpoint's view and the new secret, or None when there is no such endpoint."""
        async with self.db.transaction() as tx:
            found = await tx.fetchone(self.db.locked("SELECT secrets FROM webhooks WHERE id = ?"), endpoint_id)
            if found is None:
                return None
            secret, kept = rotate(signing_secrets(found), time.time() if now is None else now)
            stored = _dumps([{"secret": s.secret, "retired_at": s.retired_at} for s in kept])
            await tx.execute(
                "UPDATE webhooks SET secrets = ?, updated_at = ? WHERE id = ?", stored, utc_now(), endpoint_id
            )
        shown = await self.get(endpoint_id)
        assert shown is not None
        return shown, secret

    async def replay(self, endpoint_id: str, *, since: str, events: Sequence[str]) -> int:
        """Queue again every event of ``events`` types (``["*"]``: any) written at ``since`` or later,
        as deliveries due now (one statement); how many. 0 when the endpoint is gone."""
        types = [] if ALL in events else list(events)
        of_types = f"AND type IN ({placeholders(types)}) " if types else ""
        return await self.db.execute_one(
            "INSERT INTO webhook_deliveries (endpoint_id, event_id, order_id, sequence, tries, next_try_at, "
            "created_at) SELECT ?, id, order_id, sequence, 0, 0, ? FROM events WHERE time >= ? "
            f"{of_types}AND EXISTS (SELECT 1 FROM webhooks WHERE id = ?)",
            endpoint_id, utc_now(), since, *types, endpoint_id,
        )  # fmt: skip

    async def record(
        self,
        endpoint_id: str,
        *,
        event_id: str,
        event_type: str,
        try_: int,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        outcome: str,
        order_id: str | None = None,
        sequence: int | None = None,
        next_try_at: str | None = None,
    ) -> dict[str, Any]:
        """Write one try; as the API shows it."""
        at = utc_now()
        [found] = await self.db.write_returning(
            "INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, order_id, sequence, try, status_code, "
            "error, duration_ms, outcome, next_try_at, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            endpoint_id, event_id, event_type, order_id, sequence, try_, status_code, error, duration_ms, outcome,
            next_try_at, at,
        )  # fmt: skip
        return {
            "id": int(found["id"]), "event_id": event_id, "event_type": event_type, "order_id": order_id,
            "sequence": sequence, "try": try_, "status_code": status_code, "error": error,
            "duration_ms": duration_ms, "outcome": outcome, "next_try_at": next_try_at, "at": at,
        }  # fmt: skip

    async def attempts(
        self, endpoint_id: str, *, limit: int, after: Sequence[str] | None = None
    ) -> Page[dict[str, Any]]:
        """The endpoint's tries, newest first: the ``limit`` after (older than) the id ``after``."""
        where, params = ("AND a.id < ? ", [int(after[0])]) if after else ("", [])
        rows = await self.db.fetch_all(
            f"SELECT {_ATTEMPT_COLUMNS} FROM webhook_attempts a WHERE a.endpoint_id = ? {where}"
            "ORDER BY a.id DESC LIMIT ?",
            endpoint_id, *params, limit + 1,
        )  # fmt: skip
        return ATTEMPTS.page([attempt_view(r) for r in rows], limit, key=lambda a: (str(a["id"]),))

    async def order_attempts(self, order_id: str) -> list[dict[str, Any]]:
        """Every try of the order's events, at every endpoint, oldest first."""
        rows = await self.db.fetch_all(
            f"SELECT {_ATTEMPT_COLUMNS}, w.url FROM webhook_attempts a LEFT JOIN webhooks w ON w.id = a.endpoint_id "
            "WHERE a.order_id = ? ORDER BY a.id LIMIT ?",
            order_id, MAX_ORDER_ATTEMPTS,
        )  # fmt: skip
        return [attempt_view(r, endpoint=True) for r in rows]

    async def cursor(self, endpoint_id: str) -> tuple[int, int] | None:
        """Where the endpoint's way out stands: (tx, position) of the last event it is done with."""
        found = await self.db.fetch_one("SELECT tx, position FROM relay_ways WHERE way = ?", way(endpoint_id))
        return None if found is None else (int(found["tx"]), int(found["position"]))
