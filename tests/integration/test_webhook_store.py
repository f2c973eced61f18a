"""Webhook endpoints in OrderService's database (``WebhookStore``), on SQLite and PostgreSQL: an
endpoint is made with its way out at the outbox's head, enabled again with it moved to the head, and
deleted with everything of its own; secrets rotate with the old one still signing; a replay queues
the matching events in one statement; the tries are listed newest first per endpoint and oldest
first per order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from oms.db import Database
from oms.events.signing import ROTATION_OVERLAP, secret_key, sign, signature
from oms.events.store import ATTEMPTS, WEBHOOKS, WebhookStore, signing_secrets, way
from oms.orders.repository import OrderRepository
from oms.orders.schema import metadata
from oms.utc import utc_now


async def create_order(repo: OrderRepository, order_id: str) -> None:
    made = await repo.create(
        order_id=order_id, idempotency_key=None, request_hash="h", customer_id="cus_1",
        payment_method="pm_card_visa", lines=[("A", 1)],
    )  # fmt: skip
    assert made


async def head(db: Database) -> tuple[int, int]:
    row = await db.fetch_one("SELECT tx, position FROM events ORDER BY tx DESC, position DESC LIMIT 1")
    assert row is not None
    return int(row["tx"]), int(row["position"])


async def count(db: Database, table: str, endpoint_id: str) -> int:
    column = "way" if table == "relay_ways" else "id" if table == "webhooks" else "endpoint_id"
    value = way(endpoint_id) if table == "relay_ways" else endpoint_id
    row = await db.fetch_one(f"SELECT COUNT(*) AS n FROM {table} WHERE {column} = ?", value)
    assert row is not None
    return int(row["n"])


def test_an_endpoint_is_made_with_its_way_out_at_the_head_and_listed_oldest_first(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        store, repo = WebhookStore(db), OrderRepository(db)
        early, secret = await store.create(url="https://a.example/hook", events=["*"])
        assert await store.cursor(early["id"]) == (0, 0)  # no event yet
        assert early["id"].startswith("we_") and secret.startswith("whsec_") and len(secret_key(secret)) == 32
        assert {k: early[k] for k in ("url", "events", "description", "status", "disabled_reason", "waiting")} == {
            "url": "https://a.example/hook", "events": ["*"], "description": "", "status": "enabled",
            "disabled_reason": None, "waiting": 0,
        }  # fmt: skip
        assert "secret" not in early and "secrets" not in early
        for n in range(3):
            await create_order(repo, f"ord-{n}")
        later, _ = await store.create(url="http://b.example:8080/x", events=["oms.order.placed"], description="b")
        assert await store.cursor(later["id"]) == await head(db)
        assert await store.get(later["id"]) == later
        assert await store.get("we_000000000000") is None

        third, _ = await store.create(url="https://c.example/", events=["oms.order.created"])
        first = await store.endpoints(limit=2)
        assert [w["id"] for w in first.items] == [early["id"], later["id"]] and first.next is not None
        rest = await store.endpoints(limit=2, after=WEBHOOKS.after(first.next))
        assert [w["id"] for w in rest.items] == [third["id"]] and rest.next is None

    with_db(metadata, scenario)


def test_enabling_moves_the_way_out_to_the_head_and_clears_the_failure(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        store, repo = WebhookStore(db), OrderRepository(db)
        made, _ = await store.create(url="https://a.example/hook", events=["*"])
        disabled = await store.update(made["id"], status="disabled")
        assert disabled is not None
        assert (disabled["status"], disabled["disabled_reason"]) == ("disabled", "disabled by an admin")
        for n in range(2):  # events while it is disabled: not sent once it is enabled
            await create_order(repo, f"ord-{n}")
        assert await store.cursor(made["id"]) == (0, 0)
        await db.execute_one("UPDATE webhooks SET failing_since = ? WHERE id = ?", utc_now(), made["id"])
        enabled = await store.update(made["id"], status="enabled")
        assert enabled is not None
        assert (enabled["status"], enabled["disabled_reason"], enabled["failing_since"]) == ("enabled", None, None)
        assert await store.cursor(made["id"]) == await head(db)

        await create_order(repo, "ord-2")  # enabled again while enabled: the cursor stays
        assert await store.update(made["id"], status="enabled") is not None
        assert await store.cursor(made["id"]) != await head(db)

        changed = await store.update(
            made["id"], url="https://new.example/h", events=["oms.order.placed"], description="new"
        )
        assert changed is not None
        assert (changed["url"], changed["events"], changed["description"]) == (
            "https://new.example/h", ["oms.order.placed"], "new",
        )  # fmt: skip
        assert changed["updated_at"] >= made["updated_at"] and changed["status"] == "enabled"
        assert await store.update("we_000000000000", status="disabled") is None

    with_db(metadata, scenario)


def test_rotating_keeps_the_old_secret_signing_for_a_day(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        store = WebhookStore(db)
        made, old = await store.create(url="https://a.example/hook", events=["*"])
        now = time.time()
        rotated = await store.rotate_secret(made["id"], now=now)
        assert rotated is not None
        shown, new = rotated
        assert new != old and new.startswith("whsec_") and "secret" not in shown
        row = await store.row(made["id"])
        assert row is not None
        secrets = signing_secrets(row)
        assert [(s.secret, s.retired_at) for s in secrets] == [(new, None), (old, now)]
        body = b'{"x": 1}'
        headers = sign("evt_1", body, secrets, now + 60)
        timestamp = int(headers["webhook-timestamp"])
        assert headers["webhook-signature"].split(" ") == [
            signature(secret_key(new), "evt_1", timestamp, body),
            signature(secret_key(old), "evt_1", timestamp, body),
        ]
        assert sign("evt_1", body, secrets, now + ROTATION_OVERLAP + 1)["webhook-signature"].count("v1,") == 1
        assert await store.rotate_secret("we_000000000000") is None

    with_db(metadata, scenario)


def test_replay_queues_the_matching_events_since_a_time(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        store, repo = WebhookStore(db), OrderRepository(db)
        await create_order(repo, "ord-old")
        since = utc_now()
        for n in range(3):
            await create_order(repo, f"ord-{n}")
        every, _ = await store.create(url="https://a.example/hook", events=["*"])
        placed, _ = await store.create(url="https://b.example/hook", events=["oms.order.placed"])
        assert await store.replay(every["id"], since=since, events=["*"]) == 3
        assert await store.replay(placed["id"], since=since, events=["oms.order.placed"]) == 0
        assert await store.replay("we_000000000000", since=since, events=["*"]) == 0
        rows = await db.fetch_all(
            "SELECT order_id, sequence, tries, next_try_at FROM webhook_deliveries WHERE endpoint_id = ? "
            "ORDER BY order_id",
            every["id"],
        )
        assert [(r["order_id"], r["sequence"], r["tries"], r["next_try_at"]) for r in rows] == [
            (f"ord-{n}", 1, 0, 0) for n in range(3)
        ]
        shown = await store.get(every["id"])
        assert shown is not None and shown["waiting"] == 3
        assert await count(db, "webhook_deliveries", "we_000000000000") == 0

    with_db(metadata, scenario)


def test_tries_are_listed_per_endpoint_and_per_order_and_go_with_their_endpoint(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        store, repo = WebhookStore(db), OrderRepository(db)
        await create_order(repo, "ord-1")
        one, _ = await store.create(url="https://a.example/hook", events=["*"])
        two, _ = await store.create(url="https://b.example/hook", events=["*"])

        def tried(n: int, **more: Any) -> dict[str, Any]:
            return {"event_id": f"evt_{n}", "event_type": "oms.order.created", "try_": n, "status_code": 500,
                    "error": None, "duration_ms": 1.5, "outcome": "retry", **more}  # fmt: skip

        made = [
            await store.record(one["id"], **tried(1, order_id="ord-1", sequence=1, next_try_at=utc_now())),
            await store.record(two["id"], **tried(1, order_id="ord-1", sequence=1)),
            await store.record(one["id"], **tried(2, order_id="ord-1", sequence=1)),
            await store.record(one["id"], **tried(1, event_type="oms.webhook.test", outcome="test", status_code=200)),
        ]
        first = await store.attempts(one["id"], limit=2)
        assert first.items == [made[3], made[2]] and first.next is not None
        rest = await store.attempts(one["id"], limit=2, after=ATTEMPTS.after(first.next))
        assert rest.items == [made[0]] and rest.next is None
        assert made[0]["try"] == 1 and made[0]["sequence"] == 1 and made[3]["order_id"] is None

        across = await store.order_attempts("ord-1")
        assert [(a["id"], a["endpoint_id"], a["url"]) for a in across] == [
            (made[0]["id"], one["id"], "https://a.example/hook"),
            (made[1]["id"], two["id"], "https://b.example/hook"),
            (made[2]["id"], one["id"], "https://a.example/hook"),
        ]
        await store.replay(one["id"], since="2000-01-01T00:00:00.000000Z", events=["*"])
        await store.replay(two["id"], since="2000-01-01T00:00:00.000000Z", events=["*"])

        assert await store.delete(one["id"]) is True
        for table in ("webhooks", "relay_ways", "webhook_deliveries", "webhook_attempts"):
            assert await count(db, table, one["id"]) == 0, table
            assert await count(db, table, two["id"]) == 1, table  # the other endpoint's stay
        assert await store.delete(one["id"]) is False
        assert [a["endpoint_id"] for a in await store.order_attempts("ord-1")] == [two["id"]]

    with_db(metadata, scenario)


@pytest.mark.postgres
def test_a_new_endpoints_way_out_starts_before_an_event_that_commits_late(new_database: Any) -> None:
    """PostgreSQL: an event written before the endpoint is made but committed after it (its transaction
    ran long) is after the endpoint's cursor, so the relay sends it; with the cursor at the last row's
    (tx, position), the event's lower tx would put it behind the cursor for good."""
    from oms.db import PostgresDatabase, create_schema

    url = new_database("postgresql")

    async def scenario() -> None:
        await create_schema(url, metadata)
        db = await PostgresDatabase.connect(url, min_size=4, max_size=4)
        try:
            store, repo = WebhookStore(db), OrderRepository(db)
            await create_order(repo, "ord-early")
            go_on, written = asyncio.Event(), asyncio.Event()

            async def slow_writer() -> None:
                async with db.transaction() as tx:
                    await tx.execute(
                        "INSERT INTO events (id, order_id, sequence, type, time, data) "
                        "VALUES ('evt_slow', 'ord-early', 2, 'oms.order.placed', 't', '{}')"
                    )
                    written.set()
                    await go_on.wait()

            slow = asyncio.create_task(slow_writer())
            await written.wait()
            await create_order(repo, "ord-late")  # written after the slow one, committed before it
            made, _ = await store.create(url="https://a.example/hook", events=["*"])
            go_on.set()
            await slow
            cursor = await store.cursor(made["id"])
            slow_row = await db.fetch_one("SELECT tx, position FROM events WHERE id = 'evt_slow'")
            assert cursor is not None and slow_row is not None
            assert (int(slow_row["tx"]), int(slow_row["position"])) > cursor
        finally:
            await db.close()

    asyncio.run(scenario())
