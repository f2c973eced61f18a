"""OrderService's HTTP API. Its status codes are decided here, and its domain errors' in ``oms.orders.problems``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import stamina
import structlog
from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import ConfigDict

from oms import db as storage
from oms.auth.tokens import SERVICE_SUBJECT, Role, TokenSource
from oms.config import Settings
from oms.dashboard.api import Participants
from oms.dashboard.api import install as install_dashboard
from oms.dashboard.pages import SVG_HEADERS
from oms.edge.access import allow, audit, only
from oms.edge.answers import JSON, json
from oms.edge.app import Front, gated, service_app, signing_key, started, watch_database
from oms.edge.listing import Limit, Next, Offset, after, answer
from oms.edge.openapi import Tag, errors, listed, ok, text
from oms.edge.problems import Problem
from oms.events.api import install as install_webhooks
from oms.events.process import RelayProcess, start_tally
from oms.events.sender import new_pool
from oms.events.store import WebhookStore
from oms.fields import ORDER_ID_PATTERN, CustomerId, Lines, Text, Visible, header_text
from oms.migrations import migrate
from oms.orders import problems as _problems  # noqa: F401  (registers how this service's errors are answered)
from oms.orders.answers import PLACE_ORDER, PLACE_ORDER_HEADERS, Event, EventType, Order, OrderStatus
from oms.orders.clients import Downstream, InventoryClient, PaymentClient
from oms.orders.diagram import FORMATS, render
from oms.orders.events import EVENTS
from oms.orders.feed import MAX_WAIT, EventFeed, prune_forever
from oms.orders.metrics import MeteredLog, Metrics
from oms.orders.ports import ORDERS
from oms.orders.repository import OrderRepository, SqlCatalog
from oms.orders.saga import RECONCILE, STATUSES, order_sagas
from oms.orders.saga_log import OrderLog
from oms.orders.service import OrderService, PlaceOrder
from oms.orders.views import for_customer
from oms.resilience.breaker import CircuitBreaker, State
from oms.saga.engine import SagaEngine
from oms.telemetry.tracing import setup as setup_tracing

log = structlog.get_logger("oms.orders")


class PlaceOrderIn(Lines):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"items": [{"sku": "WIDGET-1", "quantity": 2}], "payment_method": "pm_card_visa"},
                {"customer_id": "c-1", "items": [{"sku": "GADGET-1", "quantity": 1}], "payment_method": "pm_card_visa"},
            ]
        }
    )

    customer_id: CustomerId | None = None
    """A customer token's own id when absent; another customer's id from a customer token: 403."""
    payment_method: Text


def scoped_key(customer_id: str, key: str) -> str:
    """Idempotency keys belong to their customer: two customers' equal keys name two orders (and
    neither learns of the other's). Stored as a digest, so its length is bounded."""
    return hashlib.sha256(f"{customer_id}\x1f{key}".encode()).hexdigest()


OrderPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ORDER_ID_PATTERN), Visible]


NO_ORDER = "No order has this id (or, to a customer, it is another customer's)."


DIAGRAM = (
    "The order's sagas as a sequence diagram, from its saga log: the order saga, then each later one (reconcile, "
    "cancel, a retry), each a section headed `note over OrderService, PaymentService: ...`. Messages start with "
    "the words of docs/spec/order-saga.txt; durations and reasons follow ` · `."
)
DIAGRAM_EXAMPLE = """title Order ord_019a6b1c2d3e4f5a6b7c8d9e (PLACED) - Saga Sequence Diagram

participant Client
participant OrderService
participant InventoryService
participant PaymentService

note over OrderService, PaymentService: Successful Order Flow
Client->OrderService: Place Order · WIDGET-1:2
activate OrderService
OrderService->OrderService: Create Order (PENDING)
OrderService->InventoryService: Check Inventory
activate InventoryService
InventoryService-->OrderService: Inventory Available · 3.1 ms
deactivate InventoryService
...
"""


DIAGRAM_ANSWER = text(DIAGRAM, DIAGRAM_EXAMPLE)
DIAGRAM_ANSWER["content"]["image/svg+xml"] = {"schema": {"type": "string"}}
"""The diagram's answer: text, or with ``format=svg`` an SVG drawing of it."""


def _unknown_order(order_id: str) -> Problem:
    return Problem(404, "Unknown order", f"No order has id {order_id}.", type_="/problems/unknown-order")


def _on_breaker_change(name: str, old: State, new: State) -> None:
    log.warning("circuit breaker changed state", breaker=name, old=old.value, new=new.value)


def _on_retry(details: stamina.instrumentation.RetryDetails) -> None:
    log.debug(
        "retrying a call", attempt=details.retry_num, wait=round(details.wait_for, 3), error=repr(details.caused_by)
    )


PLACERS = (Role.CUSTOMER, Role.ADMIN)
"""Who may place, read, list and cancel orders: a customer its own, an admin any."""


def create_app(settings: Settings) -> Any:
    # One short debug line per retry instead of stamina's warning with the whole exception.
    stamina.instrumentation.set_on_retry_hooks([_on_retry])
    tracing = setup_tracing("order")  # None unless OTEL_* asks for spans (oms.telemetry.tracing)
    metrics = Metrics()

    def on_breaker_change(name: str, old: State, new: State) -> None:
        _on_breaker_change(name, old, new)
        metrics.breaker_changed(name, old, new)

    breakers = {
        name: CircuitBreaker(name, settings.breaker, on_state_change=on_breaker_change)
        for name in ("inventory", "payment")
    }

    # OrderService calls the participants with a short-lived service token of its own, minted
    # from the system's key and reused until close to expiry.
    key = signing_key(settings)
    service_token = TokenSource(key, sub=SERVICE_SUBJECT, scope="service", ttl=600)

    def downstream(name: str, url: str, timeout: float) -> Downstream:
        return Downstream(
            name,
            url,
            token=service_token.token,
            tracing=tracing,
            timeout=timeout,
            breaker=breakers[name],
            retry=settings.retry,
        )

    metrics.watch(breakers)
    inventory_http = downstream("inventory", settings.inventory_url, settings.inventory_timeout)
    payment_http = downstream("payment", settings.payment_url, settings.payment_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.database_url_for("order")
        await migrate(url, "order")
        database = await storage.connect(
            url,
            sqlite_synchronous=settings.sqlite_synchronous,
            pool_size=settings.database_pool_size,
            statement_timeout=settings.database_timeout,
        )
        watch_database(app, database, settings)
        repository = OrderRepository(
            database,
            waiting=settings.waiting,
            trace_url_template=settings.trace_url_template,
        )
        catalog = SqlCatalog(database)
        inventory = InventoryClient(inventory_http)
        engine = SagaEngine(
            MeteredLog(OrderLog(repository), metrics), compensation=settings.compensation, observer=tracing
        )
        # One process on a port can take over the sagas (and the relay's ways) of the one there before
        # it; with several workers on the port, none may (a live sibling would lose them).
        instance = f"{socket.gethostname()}:{settings.port_for('order')}" + (
            f":{os.getpid()}" if settings.workers > 1 else ""
        )
        service = OrderService(
            orders=repository,
            catalog=catalog,
            engine=engine,
            sagas=order_sagas(inventory, PaymentClient(payment_http), catalog),
            inventory=inventory,
            wait=settings.order_wait,
            lease_ttl=settings.lease_ttl,
            # Reconciliation only reserves stock: while InventoryService's circuit is open it waits.
            paused=lambda saga: saga == RECONCILE and breakers["inventory"].state in (State.OPEN, State.FORCED_OPEN),
            instance=instance,
            max_in_flight=settings.max_sagas_in_flight,
            key_ttl=settings.idempotency_key_ttl,
            tracing=tracing,
        )
        # oms_events_total counts from here, in this process; the relay process starts once there is
        # something to send (an endpoint, NATS).
        tally = await start_tally(database, instance, alone=settings.workers == 1, registry=metrics.registry)
        await service.start()
        relay = RelayProcess(settings, instance, metrics.registry) if settings.event_relay else None
        app.state.service = service
        app.state.feed = EventFeed(repository)
        app.state.webhooks = WebhookStore(database)
        app.state.webhook_session = new_pool()  # for POST /webhooks/{id}/test
        started(app)  # /ready: 503 "catalog not loaded" until here
        metrics.watch_sagas(service.running)
        background = [
            asyncio.create_task(service.sync_forever(settings.catalog_sync_interval)),
            asyncio.create_task(service.recover_forever(settings.recovery_interval)),
            asyncio.create_task(prune_forever(repository, settings.event_retention)),
        ]
        counting = asyncio.create_task(tally.run())
        if relay is not None:
            background.append(asyncio.create_task(relay.start_when_needed(database)))
        try:
            yield
        finally:
            tally.stop()  # its count written back, its lease let go
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(counting, 5.0)
            await service.drain(grace=5.0)
            if relay is not None:
                await relay.stop()
            await inventory_http.close()
            await payment_http.close()
            await app.state.webhook_session.close()
            await database.close()

    app = service_app("oms OrderService", "order", settings, lifespan, metrics.registry, starting="catalog not loaded")
    front = Front(app, settings.max_body_bytes)

    def service(request: Request) -> OrderService:
        svc: OrderService = request.app.state.service
        return svc

    async def place_order(request: Request, body: PlaceOrderIn) -> JSON:
        audit(request, "place", None)
        caller = allow(request, *PLACERS)
        customer_id = body.customer_id
        if caller.role is Role.CUSTOMER:
            if customer_id is not None and customer_id != caller.sub:
                raise Problem(
                    403, "Forbidden", "A customer may place orders only for itself: customer_id must be the "
                    "token's subject, or left out.", type_="/problems/forbidden",
                )  # fmt: skip
            customer_id = caller.sub
        elif customer_id is None:
            raise Problem(
                422, "Invalid request", "customer_id: required with an admin token.", type_="/problems/validation",
                errors=[{"field": "customer_id", "message": "Field required"}],
            )  # fmt: skip
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key is not None:
            try:
                if not 1 <= len(header_text(idempotency_key)) <= 255:
                    raise ValueError("must be 1 to 255 characters")
            except ValueError as exc:
                raise Problem(
                    422, "Invalid request", f"Idempotency-Key: {exc}.", type_="/problems/validation",
                    errors=[{"field": "Idempotency-Key", "message": str(exc)}],
                ) from exc  # fmt: skip
            idempotency_key = scoped_key(customer_id, idempotency_key)
        prefer = request.headers.get("prefer")
        respond_async = prefer is not None and "respond-async" in prefer.lower()
        order_request = PlaceOrder(
            customer_id=customer_id,
            payment_method=body.payment_method,
            lines=[(line.sku, line.quantity) for line in body.items],
        )
        order, created = await service(request).place(order_request, idempotency_key, wait=not respond_async)
        audit(request, "place", order["id"])
        if caller.role is not Role.ADMIN:
            order = for_customer(order)
        headers = {"Location": f"/orders/{order['id']}"}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        if respond_async and order["status"] == "PENDING":
            headers["Preference-Applied"] = "respond-async"
            return json(order, 202, headers=headers)
        return json(order, 201 if created else 200, headers=headers)

    # The edge validates with the same pydantic model; the route skips FastAPI's per-request
    # dependency machinery, which measured as a sixth of OrderService's CPU per order.
    front.post(
        "/orders",
        PlaceOrderIn,
        place_order,
        roles=PLACERS,
        tags=[Tag.ORDERS],
        responses=PLACE_ORDER,
        openapi_extra=PLACE_ORDER_HEADERS,
    )

    @app.post(
        "/orders/{order_id}/cancel",
        dependencies=[only(*PLACERS)],
        tags=[Tag.ORDERS],
        responses={
            200: ok(Order, "Refunded, its stock released: the order, `CANCELLED`."),
            **errors(e404=NO_ORDER, e409="The order is not `PLACED`, or another saga of it is under way."),
        },
    )
    async def cancel_order(order_id: OrderPath, request: Request) -> JSON:
        audit(request, "cancel", order_id)
        caller = allow(request, *PLACERS)
        order = await service(request).cancel(order_id, customer_id=caller.customer_id)
        if order is None:
            raise _unknown_order(order_id)
        return json(order if caller.role is Role.ADMIN else for_customer(order))

    @app.post(
        "/orders/{order_id}/retry",
        dependencies=[only(Role.ADMIN)],
        tags=[Tag.ORDERS],
        responses={
            200: ok(Order, "The order once its compensations (or its waiting saga) ran again."),
            **errors(e404=NO_ORDER, e409="The order's sagas are over: nothing to retry."),
        },
    )
    async def retry_order(order_id: OrderPath, request: Request) -> JSON:
        audit(request, "retry", order_id)
        order = await service(request).retry(order_id)
        if order is None:
            raise _unknown_order(order_id)
        return json(order)

    @app.get(
        "/orders/{order_id}",
        dependencies=[only(*PLACERS)],
        tags=[Tag.ORDERS],
        responses={200: ok(Order, "The order, with its saga log."), **errors(e404=NO_ORDER)},
    )
    async def get_order(order_id: OrderPath, request: Request) -> JSON:
        # Another customer's order is answered as no order at all: its existence is not told.
        caller = allow(request, *PLACERS)
        order = await service(request).get(order_id, customer_id=caller.customer_id)
        if order is None:
            raise _unknown_order(order_id)
        # A customer sees its steps and their reasons, not what the services told each other.
        return json(order if caller.role is Role.ADMIN else for_customer(order))

    @app.get(
        "/orders/{order_id}/diagram",
        dependencies=[only(*PLACERS)],
        tags=[Tag.ORDERS],
        response_class=PlainTextResponse,
        responses={
            200: DIAGRAM_ANSWER,
            **errors(e404=NO_ORDER, e422="`format` is not `mermaid` or `svg` (or the order id is malformed)."),
        },
    )
    async def get_order_diagram(
        order_id: OrderPath,
        request: Request,
        format: Annotated[
            str | None,
            Query(
                description="`mermaid` for a Mermaid `sequenceDiagram`, `svg` for the diagram drawn (image/svg+xml); "
                "left out, the notation of sequencediagram.org and WebSequenceDiagrams.",
                json_schema_extra={"enum": list(FORMATS)},
            ),
        ] = None,
    ) -> Response:
        if format is not None and format not in FORMATS:
            raise Problem(
                422, "Unknown format", "format: `mermaid` or `svg`, or left out for the specification's notation.",
                type_="/problems/validation", errors=[{"field": "format", "message": "must be mermaid or svg"}],
            )  # fmt: skip
        caller = allow(request, *PLACERS)
        order = await service(request).get(order_id, customer_id=caller.customer_id)
        if order is None:
            raise _unknown_order(order_id)
        if caller.role is not Role.ADMIN:  # drawn from the customer's view: it cannot show more
            order = for_customer(order)
        if format == "svg":
            return Response(render(order, format), media_type="image/svg+xml", headers=SVG_HEADERS)
        return PlainTextResponse(render(order, format))

    @app.get(
        "/orders",
        dependencies=[only(*PLACERS)],
        tags=[Tag.ORDERS],
        responses={200: listed(Order, "Orders, newest first (a customer's own only), without their saga logs.")},
    )
    async def list_orders(
        request: Request,
        status: Annotated[OrderStatus | None, Query()] = None,
        customer_id: Annotated[
            CustomerId | None, Query(description="One customer's orders (a customer's token: its own id only).")
        ] = None,
        limit: Limit = 50,
        offset: Offset = 0,
        cursor: Next = None,
    ) -> JSON:
        caller = allow(request, *PLACERS)
        if caller.role is Role.CUSTOMER:  # a customer lists its own orders only
            if customer_id is not None and customer_id != caller.sub:
                raise Problem(
                    403, "Forbidden", "A customer may list only its own orders: customer_id must be the token's "
                    "subject, or left out.", type_="/problems/forbidden",
                )  # fmt: skip
            customer_id = caller.sub
        page = await service(request).recent(
            status=status, limit=limit, offset=offset, customer_id=customer_id, after=after(ORDERS, cursor, offset)
        )
        shown = None if caller.role is Role.ADMIN else [for_customer(order) for order in page.items]
        return answer(request, page, shown)

    @app.get(
        "/events",
        dependencies=[only(*PLACERS)],
        tags=[Tag.EVENTS],
        responses={
            200: listed(
                Event,
                "Events, oldest first (a customer's own orders' only). `next` names where the next page starts, "
                "on the last page too (the feed goes on): give it back later to read what came since.",
            )
        },
    )
    async def list_events(
        request: Request,
        type_: Annotated[EventType | None, Query(alias="type", description="One type of event.")] = None,
        subject: Annotated[
            str | None,
            Query(min_length=1, max_length=64, pattern=ORDER_ID_PATTERN, description="One order's events (its id)."),
        ] = None,
        limit: Limit = 50,
        cursor: Next = None,
        wait: Annotated[
            float,
            Query(
                ge=0,
                le=MAX_WAIT,
                description=f"Seconds, at most {MAX_WAIT:g}, to wait for events when there is none after `next` "
                "yet: the answer comes as soon as one is written (a long poll).",
            ),
        ] = 0,
    ) -> JSON:
        caller = allow(request, *PLACERS)
        key = after(EVENTS, cursor, 0)
        position = None
        if key is not None:
            try:
                position = [int(value) for value in key]
            except ValueError as exc:
                raise Problem(
                    422, "Invalid request", "next: not a cursor of events: its key is not (tx, position)",
                    type_="/problems/validation", errors=[{"field": "next", "message": "not a cursor of events"}],
                ) from exc  # fmt: skip
        feed: EventFeed = request.app.state.feed
        page = await feed.read(
            limit=limit,
            cursor=cursor,
            after=position,
            type_=type_,
            order_id=subject,
            customer_id=caller.customer_id,
            wait=wait,
            gone=request.is_disconnected,
        )
        return answer(request, page)

    install_webhooks(app, timeout=settings.webhook.timeout)

    install_dashboard(
        app,
        service=service,
        breakers=breakers,
        participants=Participants(settings.inventory_url, settings.payment_url, service_token.token),
        statuses=STATUSES,
    )

    return gated(front, settings, "order", key)
