"""OrderService's ``/webhooks`` routes: where an admin registers the endpoints events are POSTed to,
and looks at, replays and tests their deliveries. Admins only (a customer 403, no token 401).

The routes only manage endpoints: the relay (``oms.events.relay``) sends the events. ``test`` is the
one delivery made here, at once, so an admin sees at the call whether the receiver takes a signed
event.

A URL is ``http`` or ``https`` with a host: an endpoint is called by the service, so nothing else
(``file:``, ``javascript:``, a path alone) may be stored as one. Secrets are shown in the answers of
``POST /webhooks`` and ``rotate-secret`` only, and never logged (the audit line names the endpoint).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated
from urllib.parse import urlsplit

import orjson
from fastapi import FastAPI, Path, Query, Request, Response
from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, field_validator

from oms.auth.tokens import Role
from oms.edge.access import audit, only
from oms.edge.answers import JSON, json
from oms.edge.listing import Limit, Next, after, answer
from oms.edge.openapi import Tag, errors, listed, ok
from oms.edge.problems import Problem
from oms.events.answers import NewWebhook, OrderAttempts, Queued, Webhook, WebhookAttempt, WebhookStatus
from oms.events.client import Pool
from oms.events.sender import deliver
from oms.events.store import ALL, ATTEMPTS, WEBHOOKS, WebhookStore, signing_secrets
from oms.fields import ORDER_ID_PATTERN, Strict, Visible, visible
from oms.orders.events import SOURCE, TYPES, new_event_id

TEST_TYPE = "oms.webhook.test"
"""The type of the event ``POST /webhooks/{id}/test`` sends."""
MAX_URL = 2000
WEBHOOK_ID_PATTERN = r"^we_[0-9a-f]{1,36}$"

NO_WEBHOOK = "No webhook endpoint has this id."
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII)


def _url(value: str) -> str:
    visible(value)
    if any(c.isspace() for c in value):
        raise ValueError("must not contain spaces")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018  (a port that is not a number raises here)
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not host:
        raise ValueError("must name a host, e.g. https://shop.example/hooks/oms")
    return value


def _events(value: list[str]) -> list[str]:
    if ALL in value:
        if len(value) != 1:
            raise ValueError('"*" stands for every type: give it alone, or name the types')
        return value
    for name in value:
        if name not in TYPES:
            raise ValueError(f'unknown event type {name!r}: one of {", ".join(TYPES)}, or ["*"] for all')
    return list(dict.fromkeys(value))  # each once, in the order given


Url = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_URL),
    AfterValidator(_url),
    Field(description=f"`http://` or `https://`, with a host; at most {MAX_URL} characters.",
          examples=["https://shop.example/hooks/oms"]),
]  # fmt: skip
EventTypes = Annotated[
    list[str],
    Field(min_length=1, max_length=len(TYPES), description='Event types (`oms.order.placed`, ...), or `["*"]`: all.'),
    AfterValidator(_events),
]  # fmt: skip
Description = Annotated[str, StringConstraints(max_length=500, strip_whitespace=True), Visible]
WebhookPath = Annotated[str, Path(min_length=4, max_length=40, pattern=WEBHOOK_ID_PATTERN), Visible]


class NewWebhookIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://shop.example/hooks/oms", "events": ["oms.order.placed"], "description": "fulfilment"}
            ]
        },
    )

    url: Url
    events: EventTypes
    description: Description = ""


class WebhookChange(Strict):
    """What to change; what is left out stays as it is."""

    status: WebhookStatus | None = None
    url: Url | None = None
    events: EventTypes | None = None
    description: Description | None = None


class ReplayIn(Strict):
    since: str = Field(
        description="An RFC 3339 date-time with its offset (`2026-12-06T07:00:00Z`): the events from then on are "
        "sent again.",
        examples=["2026-12-06T07:00:00Z"],
        max_length=40,
    )

    @field_validator("since")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        if not _RFC3339.match(value):
            raise ValueError("must be an RFC 3339 date-time with its offset, e.g. 2026-12-06T07:00:00Z")
        try:
            moment = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
        except ValueError as exc:
            raise ValueError(f"not a date-time: {exc}") from None
        # As the events table writes times (oms.utc.utc_now), so that they compare as text.
        return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _unknown(webhook_id: str) -> Problem:
    return Problem(
        404, "Unknown webhook", f"No webhook endpoint has id {webhook_id}.", type_="/problems/unknown-webhook"
    )


def install(app: FastAPI, *, timeout: float) -> None:
    """Add the ``/webhooks`` routes to ``app``; its lifespan sets ``app.state.webhooks`` (a
    ``WebhookStore``) and ``app.state.webhook_session`` (``oms.events.sender.new_pool``).
    ``timeout``: seconds a test delivery's receiver has to answer (``webhook.timeout``)."""

    def store(request: Request) -> WebhookStore:
        found: WebhookStore = request.app.state.webhooks
        return found

    admins = [only(Role.ADMIN)]
    tags: list[str | Enum] = [Tag.WEBHOOKS]

    @app.post(
        "/webhooks",
        dependencies=admins,
        tags=tags,
        status_code=201,
        responses={
            201: ok(
                NewWebhook,
                "The endpoint, enabled, with its secret: shown only here.",
                {"Location": "`/webhooks/{id}`."},
            ),
            **errors(e422="Not an http(s) URL with a host, or an unknown event type."),
        },
    )
    async def create_webhook(request: Request, body: NewWebhookIn) -> JSON:
        made, secret = await store(request).create(url=body.url, events=body.events, description=body.description)
        audit(request, "webhook_create", made["id"])
        return json({**made, "secret": secret}, 201, headers={"Location": f"/webhooks/{made['id']}"})

    @app.get(
        "/webhooks",
        dependencies=admins,
        tags=tags,
        responses={200: listed(Webhook, "Endpoints, oldest first.")},
    )
    async def list_webhooks(request: Request, limit: Limit = 50, cursor: Next = None) -> JSON:
        page = await store(request).endpoints(limit=limit, after=after(WEBHOOKS, cursor, 0))
        return answer(request, page)

    # Before /webhooks/{webhook_id}: "deliveries" is no endpoint's id (nor could it be: the pattern).
    @app.get(
        "/webhooks/deliveries",
        dependencies=admins,
        tags=tags,
        responses={200: ok(OrderAttempts, "Every try of the order's events, at every endpoint, oldest first.")},
    )
    async def list_order_deliveries(
        request: Request,
        order_id: Annotated[
            str, Query(min_length=1, max_length=64, pattern=ORDER_ID_PATTERN, description="The order's id."), Visible
        ],
    ) -> JSON:
        return json({"items": await store(request).order_attempts(order_id)})

    @app.get(
        "/webhooks/{webhook_id}",
        dependencies=admins,
        tags=tags,
        responses={200: ok(Webhook, "The endpoint."), **errors(e404=NO_WEBHOOK)},
    )
    async def get_webhook(webhook_id: WebhookPath, request: Request) -> JSON:
        found = await store(request).get(webhook_id)
        if found is None:
            raise _unknown(webhook_id)
        return json(found)

    @app.patch(
        "/webhooks/{webhook_id}",
        dependencies=admins,
        tags=tags,
        responses={
            200: ok(Webhook, "The endpoint as changed. Enabled again: events from now on are sent (a replay sends "
                    "those that came while it was disabled)."),
            **errors(e404=NO_WEBHOOK),
        },
    )  # fmt: skip
    async def update_webhook(webhook_id: WebhookPath, request: Request, body: WebhookChange) -> JSON:
        audit(request, "webhook_update", webhook_id)
        changed = await store(request).update(
            webhook_id,
            status=body.status.value if body.status is not None else None,
            url=body.url,
            events=body.events,
            description=body.description,
        )
        if changed is None:
            raise _unknown(webhook_id)
        return json(changed)

    @app.delete(
        "/webhooks/{webhook_id}",
        dependencies=admins,
        tags=tags,
        status_code=204,
        responses={204: {"description": "Gone, with its waiting deliveries and its record of tries."},
                   **errors(e404=NO_WEBHOOK)},
    )  # fmt: skip
    async def delete_webhook(webhook_id: WebhookPath, request: Request) -> Response:
        audit(request, "webhook_delete", webhook_id)
        if not await store(request).delete(webhook_id):
            raise _unknown(webhook_id)
        return Response(status_code=204)

    @app.post(
        "/webhooks/{webhook_id}/rotate-secret",
        dependencies=admins,
        tags=tags,
        responses={
            200: ok(NewWebhook, "The endpoint with its new secret; the old one keeps signing too for 24 h."),
            **errors(e404=NO_WEBHOOK),
        },
    )
    async def rotate_webhook_secret(webhook_id: WebhookPath, request: Request) -> JSON:
        audit(request, "webhook_rotate_secret", webhook_id)
        rotated = await store(request).rotate_secret(webhook_id)
        if rotated is None:
            raise _unknown(webhook_id)
        shown, secret = rotated
        return json({**shown, "secret": secret})

    @app.get(
        "/webhooks/{webhook_id}/deliveries",
        dependencies=admins,
        tags=tags,
        responses={200: listed(WebhookAttempt, "The endpoint's tries, newest first."), **errors(e404=NO_WEBHOOK)},
    )
    async def list_webhook_deliveries(
        webhook_id: WebhookPath, request: Request, limit: Limit = 50, cursor: Next = None
    ) -> JSON:
        key = after(ATTEMPTS, cursor, 0)
        if key is not None and not key[0].isdigit():
            raise Problem(
                422, "Invalid request", "next: not a cursor of webhook_attempts", type_="/problems/validation",
                errors=[{"field": "next", "message": "not a cursor of webhook_attempts"}],
            )  # fmt: skip
        webhooks = store(request)
        if await webhooks.get(webhook_id) is None:
            raise _unknown(webhook_id)
        return answer(request, await webhooks.attempts(webhook_id, limit=limit, after=key))

    @app.post(
        "/webhooks/{webhook_id}/replay",
        dependencies=admins,
        tags=tags,
        status_code=202,
        responses={
            202: ok(Queued, "Queued: the relay sends them, each order's in order, as it sends any delivery."),
            **errors(e404=NO_WEBHOOK, e422="`since` is not an RFC 3339 date-time with its offset."),
        },
    )
    async def replay_webhook(webhook_id: WebhookPath, request: Request, body: ReplayIn) -> JSON:
        audit(request, "webhook_replay", webhook_id)
        webhooks = store(request)
        found = await webhooks.get(webhook_id)
        if found is None:
            raise _unknown(webhook_id)
        queued = await webhooks.replay(webhook_id, since=body.since, events=found["events"])
        return json({"queued": queued}, 202)

    @app.post(
        "/webhooks/{webhook_id}/test",
        dependencies=admins,
        tags=tags,
        responses={
            200: ok(WebhookAttempt, f"The try, made at once: a signed CloudEvent of type `{TEST_TYPE}` with data "
                    "`{\"webhook_id\": id}`; its `status_code` or `error` say how the receiver took it."),
            **errors(e404=NO_WEBHOOK),
        },
    )  # fmt: skip
    async def test_webhook(webhook_id: WebhookPath, request: Request) -> JSON:
        audit(request, "webhook_test", webhook_id)
        webhooks = store(request)
        row = await webhooks.row(webhook_id)
        if row is None:
            raise _unknown(webhook_id)
        event_id = new_event_id()
        event = {
            "specversion": "1.0", "id": event_id, "source": SOURCE, "type": TEST_TYPE,
            "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "datacontenttype": "application/json", "data": {"webhook_id": webhook_id},
        }  # fmt: skip
        session: Pool = request.app.state.webhook_session
        tried = await deliver(
            session, row["url"], event_id, orjson.dumps(event), signing_secrets(row), time_limit=timeout
        )
        recorded = await webhooks.record(
            webhook_id,
            event_id=event_id,
            event_type=TEST_TYPE,
            try_=1,
            status_code=tried.status,
            error=tried.error,
            duration_ms=round(tried.duration * 1000, 3),
            outcome="test",
        )
        return json(recorded)
