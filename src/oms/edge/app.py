"""A service's app: FastAPI for most routes, with a few hot routes answered ahead of it (``Front``),
behind the Gate; ``/health``, ``/ready``, ``/metrics`` and the OpenAPI document on each."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from oms import db as storage
from oms.auth.keys import SigningKey, ensure_key, load_key
from oms.auth.tokens import Role, Verifier
from oms.config import Settings
from oms.edge import access, openapi
from oms.edge.access import allow, only, public
from oms.edge.answers import JSON, MISSING_BODY, install_error_handlers, json, problem_of, send_response
from oms.edge.body import BodyLimit, read_body, too_large
from oms.edge.gc_tuning import settle
from oms.edge.problems import DATABASE_RETRY_AFTER, Problem, problem_response
from oms.edge.readiness import DatabaseHealth
from oms.errors import DomainError
from oms.migrations import migrate
from oms.resilience.ratelimit import TokenBuckets
from oms.telemetry.http_metrics import HttpMetrics


def health_route(app: FastAPI, service: str, database_url: str) -> None:
    """``GET /health``: up, to anyone; which service, its pids and its database, to an admin."""
    if database_url.startswith("sqlite:///"):  # the file's full path, whatever the service's working folder
        database_url = "sqlite:///" + str(Path(storage.sqlite_path(database_url)).resolve())
    database = storage.database_label(database_url)
    pid = os.getpid()  # the app is built in the process that serves it (each worker builds its own)
    # main_pid: the process that was started, the parent of the workers when there are several.
    main_pid = int(os.environ.get("OMS_MAIN_PID", pid))

    @app.get(
        "/health",
        dependencies=[public()],
        tags=[openapi.Tag.OPERATIONS],
        responses={200: openapi.ok(openapi.Health, "The service is up.")},
    )
    async def health(request: Request) -> JSON:
        caller = request.scope["state"].get("principal")
        if caller is None or caller.role is not Role.ADMIN:
            return json({"status": "ok"})  # anyone may know it is up; the details are for admins
        return json({"status": "ok", "service": service, "pid": pid, "main_pid": main_pid, "database": database})


STARTING = "starting"
"""``/ready``'s reason while the service's start-up (its lifespan) is not over."""


def ready_route(app: FastAPI, service: str) -> None:
    """``GET /ready``: 200 while the service can serve (its start-up over, its database usable), 503
    with ``Retry-After`` and a short reason otherwise; public, as Kubernetes probes carry no token.
    An admin (or a service's token) is told the database's state too: since when, what fault."""

    @app.get(
        "/ready",
        dependencies=[public()],
        tags=[openapi.Tag.OPERATIONS],
        responses={
            200: openapi.ok(openapi.Ready, "The service can serve: its start-up is over and its database usable."),
            **openapi.errors(
                e503="Not ready: starting (OrderService: its catalog not loaded yet), or its database unusable "
                "(`reason`: `database unreachable`, `database timeout`, `database disk_full`...)."
            ),
        },
    )
    async def ready(request: Request) -> JSON:
        state = request.app.state
        health: DatabaseHealth = state.database_health
        pending: str | None = state.starting
        usable = pending is None and await health.check()
        caller = request.scope["state"].get("principal")
        told = caller is not None and caller.role in (Role.ADMIN, Role.SERVICE)
        details = {"service": service, "database": health.state()} if told else {}
        if usable:
            return json({"status": "ready", **details})
        error = health.error
        reason = pending or f"database {error.kind if error is not None else 'unavailable'}"
        raise Problem(
            503, "Not ready", f"The service cannot serve just now: {reason}. Retry after the time given.",
            type_="/problems/not-ready" if pending else "/problems/database-unavailable",
            headers={"Retry-After": DATABASE_RETRY_AFTER}, reason=reason, **details,
        )  # fmt: skip


def watch_database(app: FastAPI, database: storage.Database, settings: Settings) -> None:
    """In the lifespan, once ``database`` is open: its faults counted (``oms_database_errors_total``)
    and its state kept (``oms_database_up``, ``/ready``) from now on."""
    app.state.database_health.attach(database, settings.database_timeout)


def started(app: FastAPI) -> None:
    """In the lifespan, its start-up over: ``/ready`` answers from the database's state from now on."""
    app.state.starting = None


def signing_key(settings: Settings) -> SigningKey:
    """The system's key, from its file (created when missing)."""
    path = settings.key_file()
    ensure_key(path)
    return load_key(path)


def gated(front: Front, settings: Settings, service: str, key: SigningKey | None = None) -> Any:
    """The service's ASGI application: ``front`` behind the Gate (tokens, Content-Type, rate limit,
    audit trail). ``key``: the system's key when the caller has read it already."""
    from oms.edge.audit_trail import open_trail
    from oms.edge.gate import Gate
    from oms.telemetry.tracing import setup as setup_tracing

    verifier = Verifier(key or signing_key(settings), settings.identity_provider())
    buckets = TokenBuckets(rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst)
    failures = None
    if settings.auth_failure_rate_per_second > 0:
        failures = TokenBuckets(rate=settings.auth_failure_rate_per_second, burst=settings.auth_failure_burst)
    trail = open_trail(service, settings.audit_log, settings.data_dir)
    meter = HttpMetrics(service, front.app.state.registry, routes=front.app.router.routes, lean=front.lean_paths)
    spans = setup_tracing(service)  # None unless OTEL_* asks for spans: then a server span per request
    paths, prefixes = access.check(front.app)  # refuses to start with a route that declares no callers
    return Gate(
        front, verifier=verifier, buckets=buckets, failures=failures, trail=trail, meter=meter, spans=spans,
        public=paths, public_prefixes=prefixes, sessions=service == "order",
    )  # fmt: skip


M = TypeVar("M", bound=BaseModel)


class Front:
    """The service's ASGI application: a FastAPI app, with a few hot routes in front of it.

    The calls the services make to each other on every order (and POST /orders) go straight to
    their endpoints, skipping FastAPI's middleware stack, router and per-request dependency
    machinery, which measured as the larger part of the CPU such a request cost. They keep what
    matters: the body limit, validation of the raw body by the same pydantic models, and
    problem+json errors. Everything else, lifespan included, is FastAPI's.
    """

    def __init__(self, app: FastAPI, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.state = app.state
        self._routes: dict[str, ASGIApp] = {}

    @property
    def lean_paths(self) -> Collection[str]:
        """The paths of the POST routes answered here, ahead of FastAPI."""
        return self._routes.keys()

    def post(
        self,
        path: str,
        model: type[M],
        handler: Callable[[Request, M], Awaitable[Response]],
        *,
        roles: Sequence[Role],
        tags: Sequence[openapi.Tag] = (),
        responses: dict[int | str, dict[str, Any]] | None = None,
        openapi_extra: dict[str, Any] | None = None,
    ) -> None:
        """``handler`` answers POST ``path`` ahead of FastAPI; ``tags``, ``responses`` and
        ``openapi_extra`` only document it (as FastAPI's route arguments: see ``oms.edge.openapi``; the
        operation's id is the handler's name)."""
        limit = self.limit

        async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive)
            response = await _lean_endpoint(request, receive, limit, roles, model, handler)
            await send_response(send, response)

        self._routes[path] = endpoint

        # The same handler under FastAPI too, so /docs and /openapi.json describe the route (Front
        # answers it before FastAPI would).
        async def documented(request: Request, body: Any) -> Response:
            return await handler(request, body)

        documented.__annotations__ = {"request": Request, "body": model, "return": Response}
        documented.__name__ = getattr(handler, "__name__", "endpoint")
        self.app.post(
            path,
            response_class=JSON,
            dependencies=[only(*roles)],
            tags=list(tags),
            responses=responses,
            openapi_extra=openapi_extra,
        )(documented)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self._routes.get(scope["path"])
            if route is not None:
                scope["app"] = self.app  # request.app.state, as under FastAPI
                await route(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _lean_endpoint(
    request: Request,
    receive: Receive,
    limit: int,
    roles: Sequence[Role],
    model: type[M],
    handler: Callable[[Request, M], Awaitable[Response]],
) -> Response:
    """A hot route's answer: the caller's role first (before the body is read), then the body limit,
    validation and the handler, as under FastAPI."""
    path = request.scope["path"]
    try:
        allow(request, *roles)
    except Problem as refused:
        return problem_response(refused, path)
    body = await read_body(request.scope, receive, limit)
    if body is None:
        return problem_response(too_large(limit), path)
    return await _lean_response(request, body, model, handler)


async def _lean_response(
    request: Request, body: bytes, model: type[M], handler: Callable[[Request, M], Awaitable[Response]]
) -> Response:
    path = request.scope["path"]
    if not body:
        return problem_response(MISSING_BODY, path)
    try:
        data = model.model_validate_json(body)
    except ValidationError as exc:
        return problem_response(problem_of(exc), path)
    try:
        return await handler(request, data)
    except (Problem, DomainError) as error:
        return problem_response(problem_of(error), path)
    # Any other exception goes up to the Gate, which answers 500 with the request id and logs it.


def database_service(title: str, service: str, settings: Settings) -> tuple[FastAPI, Front]:
    """The app of a service whose state is its database alone (inventory, payment): migrated and
    opened at start-up, closed at shutdown, behind the body limit, with problem+json errors."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.database_url_for(service)
        await migrate(url, service)
        database = await storage.connect(
            url,
            sqlite_synchronous=settings.sqlite_synchronous,
            pool_size=settings.database_pool_size,
            statement_timeout=settings.database_timeout,
        )
        app.state.db = database
        watch_database(app, database, settings)
        started(app)
        yield
        await database.close()

    app = service_app(title, service, settings, lifespan, starting="database not open")
    return app, Front(app, settings.max_body_bytes)


def metrics_route(app: FastAPI, registry: CollectorRegistry) -> None:
    @app.get(
        "/metrics",
        dependencies=[only(Role.ADMIN)],
        tags=[openapi.Tag.OPERATIONS],
        response_class=PlainTextResponse,
        responses={200: openapi.text(openapi.METRICS)},
    )
    async def get_metrics(request: Request) -> Response:
        if request.app.state.starting is None:  # oms_database_up from a ping at most a second old
            await request.app.state.database_health.check()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def service_app(
    title: str,
    service: str,
    settings: Settings,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    registry: CollectorRegistry | None = None,
    *,
    starting: str = STARTING,
) -> FastAPI:
    """A service's FastAPI app: behind the body limit, with problem+json errors, /health, /ready
    (``starting`` its reason until the lifespan calls ``started``), GET /metrics (``registry``'s,
    with the request metrics the Gate adds to it and the database's), and its OpenAPI document and
    offline /docs (``oms.edge.openapi``)."""

    @asynccontextmanager
    async def serving(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app):
            settle(settings.gc_threshold)  # start-up is over: see oms.edge.gc_tuning
            yield

    app = FastAPI(
        title=title,
        lifespan=serving,
        default_response_class=JSON,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=openapi.operation_id,  # cancel_order, not cancel_order_orders__order_id__...
    )
    app.router.redirect_slashes = False  # Starlette's would build an absolute URL from the Host header
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    install_error_handlers(app)
    app.add_exception_handler(404, slash_redirect)
    health_route(app, service, settings.database_url_for(service))
    ready_route(app, service)
    app.state.registry = registry if registry is not None else CollectorRegistry()
    app.state.starting = starting
    app.state.database_health = DatabaseHealth(app.state.registry)
    metrics_route(app, app.state.registry)
    openapi.install(app)
    return app


async def slash_redirect(request: Request, exc: Exception) -> Response:
    """No route has this path, but one has it with or without its trailing slash: a redirect to
    that path, relative (never built from the Host header, which the caller chooses); else 404."""
    path: str = request.scope["path"]
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    if other and other != path and not other.startswith("//"):
        scope = {**request.scope, "path": other}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            query = request.scope.get("query_string", b"").decode("latin-1")
            location = other + (f"?{query}" if query else "")
            return Response(status_code=307, headers={"Location": location})
    return problem_response(problem_of(exc), path)


def database_of(request: Request) -> storage.Database:
    db: storage.Database = request.app.state.db
    return db
