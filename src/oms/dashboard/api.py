"""The dashboard's routes on OrderService, and the JSON routes it reads and acts through: every
status code of them is decided here.

Pages (not in the OpenAPI document: they are for browsers): ``GET /`` (the orders), ``GET
/ui/orders/{id}``, ``GET /ui/events``, ``GET /ui/webhooks``, ``GET /ui/breakers`` and ``GET
/ui/audit`` (the last three admins'), and the script, style and favicon at ``GET /ui/static/NAME``; ``GET
/ui/events/start``, where the Events page starts reading ``GET /events`` (``recent.py``). The
log-in link (``GET /?token=``) and the log-in and log-out forms are the Gate's
(``oms.edge.session``). JSON: ``GET /stats/orders`` (the chart and the counts,
from the database the replicas share), ``GET /breakers`` and ``POST /breakers/{name}`` (the
operator's switches, on this process's breakers), ``GET /audit`` (what ``oms audit`` finds),
``GET /databases`` (each service's database: up, or down since when and why; the banner). The
Events and Webhooks pages read and act through the events and webhooks API itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Query, Request
from starlette.responses import Response

from oms.auth.tokens import Role
from oms.cli.audit import Snapshot, findings, pages
from oms.dashboard import stats
from oms.dashboard.pages import asset, page
from oms.dashboard.recent import start_before_newest
from oms.edge.access import allow, audit, only
from oms.edge.answers import JSON, json
from oms.edge.openapi import Tag, errors, ok
from oms.edge.problems import Problem
from oms.edge.readiness import DatabaseHealth
from oms.edge.session import session_csrf
from oms.fields import ORDER_ID_PATTERN, Strict, Visible
from oms.orders.answers import AuditReport, Breaker, Breakers, Databases, EventType, OrderStats
from oms.orders.feed import EventFeed
from oms.orders.ports import ORDERS
from oms.orders.service import OrderService
from oms.resilience.breaker import CircuitBreaker, State
from oms.sync_http import http_call, http_json
from oms.utc import utc_now

PLACERS = (Role.CUSTOMER, Role.ADMIN)
OrderPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ORDER_ID_PATTERN), Visible]
BreakerName = Annotated[str, Path(max_length=64, json_schema_extra={"enum": ["inventory", "payment"]})]
"""OrderService's breakers: one per downstream."""


class BreakerSwitch(Strict):
    state: Literal["forced_open", "disabled", "closed"]
    """``forced_open``: refuse every call; ``disabled``: let every call through, counting none;
    ``closed``: reset to closed with an empty window."""


@dataclass(frozen=True)
class Participants:
    """Where the audit reads InventoryService and PaymentService, with OrderService's own token."""

    inventory_url: str
    payment_url: str
    token: Callable[[], str]


def breaker_figures(breaker: CircuitBreaker) -> dict[str, Any]:
    """GET /breakers' answer for one breaker: its snapshot, when it entered its state, its window."""
    figures = breaker.snapshot()
    since = time.monotonic() - float(figures.pop("state_changed_at"))  # type: ignore[arg-type]
    figures["state_since"] = (datetime.now(UTC) - timedelta(seconds=since)).isoformat(timespec="seconds")
    figures["seconds_in_state"] = round(since, 1)
    config = breaker.config
    figures |= {
        "window_type": config.window_type,
        "window_size": config.window_size,
        "minimum_calls": config.minimum_calls,
    }
    return figures


def install(
    app: FastAPI,
    *,
    service: Callable[[Request], OrderService],
    breakers: Mapping[str, CircuitBreaker],
    participants: Participants,
    statuses: tuple[str, ...],
) -> None:
    # -- pages ------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False, dependencies=[only(*PLACERS)])
    async def dashboard(request: Request, token: str | None = None) -> Response:
        caller = allow(request, *PLACERS)
        if token is not None:
            # The log-in link is the Gate's (oms.edge.session): it reaches here only with an
            # Authorization header, which the link is not opened with.
            raise Problem(400, "Bad request", "The log-in link is opened without an Authorization header.")
        return page("orders", sub=caller.sub, role=caller.role.value, csrf=session_csrf(request.scope))

    @app.get("/ui/orders/{order_id}", include_in_schema=False, dependencies=[only(*PLACERS)])
    async def order_page(order_id: OrderPath, request: Request) -> Response:
        caller = allow(request, *PLACERS)
        if await service(request).get(order_id, customer_id=caller.customer_id) is None:
            raise Problem(404, "Unknown order", f"No order has id {order_id}.", type_="/problems/unknown-order")
        return page("order", sub=caller.sub, role=caller.role.value, order=order_id, csrf=session_csrf(request.scope))

    @app.get("/ui/events", include_in_schema=False, dependencies=[only(*PLACERS)])
    async def events_page(request: Request) -> Response:
        caller = allow(request, *PLACERS)
        return page("events", sub=caller.sub, role=caller.role.value, csrf=session_csrf(request.scope))

    @app.get("/ui/events/start", include_in_schema=False, dependencies=[only(*PLACERS)])
    async def events_start(
        request: Request,
        type_: Annotated[EventType | None, Query(alias="type")] = None,
        subject: Annotated[str | None, Query(min_length=1, max_length=64, pattern=ORDER_ID_PATTERN)] = None,
        count: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> JSON:
        """``{"next"}``: give it to ``GET /events`` (with the same filters) to read the newest
        ``count`` events the caller may see; null: read from the start."""
        caller = allow(request, *PLACERS)
        feed: EventFeed = request.app.state.feed
        start = await start_before_newest(
            feed.repository.db, count=count, type_=type_, order_id=subject, customer_id=caller.customer_id
        )
        return json({"next": start})

    @app.get("/ui/webhooks", include_in_schema=False, dependencies=[only(Role.ADMIN)])
    async def webhooks_page(request: Request) -> Response:
        caller = allow(request, Role.ADMIN)
        return page("webhooks", sub=caller.sub, role=caller.role.value, csrf=session_csrf(request.scope))

    @app.get("/ui/breakers", include_in_schema=False, dependencies=[only(Role.ADMIN)])
    async def breakers_page(request: Request) -> Response:
        caller = allow(request, Role.ADMIN)
        return page("breakers", sub=caller.sub, role=caller.role.value, csrf=session_csrf(request.scope))

    @app.get("/ui/audit", include_in_schema=False, dependencies=[only(Role.ADMIN)])
    async def audit_page(request: Request) -> Response:
        caller = allow(request, Role.ADMIN)
        return page("audit", sub=caller.sub, role=caller.role.value, csrf=session_csrf(request.scope))

    @app.get("/ui/static/{name}", include_in_schema=False, dependencies=[only(*PLACERS)])
    async def static(name: Annotated[str, Path(max_length=64)]) -> Response:
        found = asset(name)
        if found is None:
            raise Problem(404, "Not found", f"The dashboard has no file {name!r}.")
        return found

    # -- JSON -------------------------------------------------------------------------------------

    @app.get(
        "/stats/orders",
        dependencies=[only(*PLACERS)],
        tags=[Tag.ORDERS],
        responses={200: ok(OrderStats, "Orders by status; orders/s and saga durations by 10 s (a customer's own).")},
    )
    async def order_stats(
        request: Request,
        minutes: Annotated[int, Query(ge=1, le=60, description="How far back the chart goes, 1 to 60.")] = 5,
    ) -> JSON:
        customer_id = allow(request, *PLACERS).customer_id
        now = datetime.now(UTC)
        since = stats.bucket_key(now - timedelta(minutes=minutes))
        counts, durations, by_status = await service(request).activity(since=since, customer_id=customer_id)
        return json(
            stats.figures(
                now=now, minutes=minutes, counts=counts, durations=durations, statuses=by_status, every_status=statuses
            )
        )

    @app.get(
        "/breakers",
        dependencies=[only(Role.ADMIN)],
        tags=[Tag.BREAKERS],
        responses={200: ok(Breakers, "Each circuit breaker.")},
    )
    async def get_breakers() -> JSON:
        return json({name: breaker_figures(breaker) for name, breaker in breakers.items()})

    @app.post(
        "/breakers/{name}",
        dependencies=[only(Role.ADMIN)],
        tags=[Tag.BREAKERS],
        responses={
            200: ok(Breaker, "The breaker, switched (on the OrderService process that answered)."),
            **errors(e404="No breaker has this name (`inventory`, `payment`)."),
        },
    )
    async def switch_breaker(
        request: Request,
        name: BreakerName,
        body: BreakerSwitch,
    ) -> JSON:
        audit(request, "switch_breaker", name)
        breaker = breakers.get(name)
        if breaker is None:
            raise Problem(
                404, "Unknown breaker", f"No breaker is called {name!r}; there are {', '.join(breakers)}.",
                type_="/problems/unknown-breaker",
            )  # fmt: skip
        breaker.switch(State(body.state))
        return json(breaker_figures(breaker))

    @app.get(
        "/databases",
        dependencies=[only(Role.ADMIN)],
        tags=[Tag.OPERATIONS],
        responses={200: ok(Databases, "Each service's database: up, or down since when and why (the banner).")},
    )
    async def get_databases(request: Request) -> JSON:
        health: DatabaseHealth = request.app.state.database_health
        await health.check()
        inventory, payment = await asyncio.gather(
            asyncio.to_thread(_database_of, participants.inventory_url, participants.token()),
            asyncio.to_thread(_database_of, participants.payment_url, participants.token()),
        )
        return json({"order": health.state(), "inventory": inventory, "payment": payment})

    @app.get(
        "/audit",
        dependencies=[only(Role.ADMIN)],
        tags=[Tag.OPERATIONS],
        responses={
            200: ok(AuditReport, "What `oms audit` finds: where the three services disagree."),
            **errors(e503="InventoryService or PaymentService could not be read."),
        },
    )
    async def get_audit(
        request: Request,
        stuck_after: Annotated[
            float, Query(ge=0, le=86_400, description="Seconds before a PENDING saga counts as stuck.")
        ] = 60.0,
    ) -> JSON:
        orders = await _every_order(service(request))
        try:
            payments, reservations, items = await asyncio.to_thread(_participants, participants)
        except OSError as exc:
            raise Problem(
                503, "Participant unavailable", f"The audit could not read the participants: {exc}",
                type_="/problems/unavailable", headers={"Retry-After": "5"},
            ) from exc  # fmt: skip
        snapshot = Snapshot(orders=orders, payments=payments, reservations=reservations, items=items)
        found = findings(snapshot, now=datetime.now(UTC), stuck_after=stuck_after)
        return json(
            {
                "at": utc_now(),
                "clean": not found,
                "orders": len(orders),
                "payments": len(payments),
                "reservations": len(reservations),
                "items": len(items),
                "findings": [{"kind": f.kind, "order_id": f.order_id, "detail": f.detail} for f in found],
            }
        )


async def _every_order(service: OrderService) -> list[dict[str, Any]]:
    """Every order, page by page, newest first (the audit's view of OrderService)."""
    orders: list[dict[str, Any]] = []
    after: tuple[str, ...] | None = None
    while True:
        page = await service.recent(status=None, limit=1000, after=after)
        orders += page.items
        if page.next is None:
            return orders
        after = ORDERS.after(page.next)


DATABASE_READ_TIMEOUT = 2.0
"""Seconds GET /databases waits for a participant's /ready: the dashboard asks every 2 s."""


def _database_of(url: str, token: str) -> dict[str, Any]:
    """A participant's database state, as its ``/ready`` tells a service; ``up`` None when it does
    not tell (it does not answer, or is starting)."""
    unknown: dict[str, Any] = {"up": None, "kind": None, "since": None}
    try:
        answer = http_call("GET", url + "/ready", token=token, timeout=DATABASE_READ_TIMEOUT)
    except OSError as exc:
        return {**unknown, "detail": f"no answer from {url}: {getattr(exc, 'reason', None) or exc}"}
    body = answer.body if isinstance(answer.body, dict) else {}
    database = body.get("database")
    if isinstance(database, dict):
        return database
    return {**unknown, "detail": str(body.get("reason") or f"GET /ready answered {answer.status}")}


def _participants(to: Participants) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    def get(url: str) -> Any:
        status, body = http_json("GET", url, token=to.token())
        if status != 200:
            raise OSError(f"GET {url} answered {status}")
        return body

    return (
        list(pages(get, to.payment_url + "/payments")),
        list(pages(get, to.inventory_url + "/reservations?status=RESERVED")),
        list(pages(get, to.inventory_url + "/items")),
    )
