"""What each service's ``/openapi.json`` says and ``/docs`` shows, in one place.

The routes answer with bodies they build themselves (``oms.edge.app.JSON``), so FastAPI never serialises
through a response model and documents nothing of its own accord. Each route names its success
bodies (``responses={...: {"model": ...}}``, models that only document) and the errors that are its
own (404, 409, 503); :func:`finish` adds, to every operation, what the Gate and the shared handlers
answer on any route: the bearer security scheme (every route but the public ones), 401 with
``WWW-Authenticate``, 403, 429 with ``Retry-After``, 415 and 400 for POST and PUT, 413, 422, 500,
and ``X-Request-Id`` on every answer. Every error is one problem+json schema.

Clients are generated from the document (``tests/e2e/test_generated_client.py`` does it with
openapi-python-client), so it names things for them: each operation's id is its route's name, short
and plain (``cancel_order``, :func:`operation_id`), and each operation has one tag (:class:`Tag`),
which a generator makes a module of; every enum is a named schema of its own (a StrEnum), shared by
every body and parameter that holds it; and integer bounds are integers (FastAPI's own models of the
document hold them as floats: ``maximum: 1e12`` makes a generator's integer a float).

``/docs`` is Swagger UI from the ``swagger-ui-py`` package's files, served under ``/docs/assets``:
the page loads nothing from elsewhere, and only the files it loads are served (:data:`ASSET_FILES`;
the package holds 24 MB of other bundles and source maps). Its script is a file too
(``docs-init.js``), so the page's Content-Security-Policy allows no inline script. (Swagger UI 5 is
needed: 4.x renders no OpenAPI 3.1.)
"""

from __future__ import annotations

import html
import importlib.util
from collections.abc import Collection
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from oms.edge import access

PROBLEM = "application/problem+json"
ASSETS = "/docs/assets"
SECURITY_SCHEME = "bearerAuth"


class Tag(StrEnum):
    """What an operation is about: each operation has one (``tags=[Tag.ORDERS]``), and a generated
    client puts each tag's calls in a module of their own. New kinds of calls get a tag of their own
    (events and webhooks, when they come) rather than joining one of these."""

    ORDERS = "orders"
    CATALOG = "catalog"
    RESERVATIONS = "reservations"
    PAYMENTS = "payments"
    BREAKERS = "breakers"
    OPERATIONS = "operations"
    EVENTS = "events"
    WEBHOOKS = "webhooks"


TAGS = {
    Tag.ORDERS: "Place, read, list, cancel and retry orders; an order's sagas as a diagram; the dashboard's figures.",
    Tag.CATALOG: "Items, with their price and stock, and a check of order lines against the stock.",
    Tag.RESERVATIONS: "Stock held for orders, by order id: the calls OrderService's sagas make.",
    Tag.PAYMENTS: "Charges by order id, refunds and voids: the calls OrderService's sagas make.",
    Tag.BREAKERS: "OrderService's circuit breakers, and an operator's switches.",
    Tag.OPERATIONS: "Health, readiness and metrics; the databases' states and the audit.",
    Tag.EVENTS: "Every change of an order's status, as CloudEvents: the feed, oldest first, and its long poll.",
    Tag.WEBHOOKS: "Endpoints that events are POSTed to, signed (Standard Webhooks): register, change, rotate "
    "their secrets, see, replay and test their deliveries. Admins only.",
}
"""Each tag's description, in the document's order."""


def operation_id(route: APIRoute) -> str:
    """An operation's id: its route's name, which is its handler's (``cancel_order``) unless the
    route says ``name=``. FastAPI's own ids (``cancel_order_orders__order_id__cancel_post``) become
    a generated client's function and type names. Set as the app's ``generate_unique_id_function``
    rather than rewritten in :func:`finish`: the id is named where the route is, FastAPI's warning
    about a duplicate id sees the real ids, and a new route needs no entry in a table here."""
    return route.name


class ServiceName(StrEnum):
    """Which service answered."""

    ORDER = "order"
    INVENTORY = "inventory"
    PAYMENT = "payment"


class FieldError(BaseModel):
    field: str = Field(description="Where: a dotted path into the body, or the parameter's name.")
    message: str


class Shortage(BaseModel):
    sku: str
    requested: int
    available: int


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: every error answer of every service, 4xx and 5xx."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(description="`about:blank` or a `/problems/...` path naming the kind of problem.")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What went wrong with this request, for a person to read.")
    instance: str | None = Field(None, description="The request's path.")
    request_id: str | None = Field(None, description="500: the request id its trace is logged under.")
    errors: list[FieldError] | None = Field(None, description="422: each field that is wrong.")
    skus: list[str] | None = Field(None, description="Unknown SKUs.")
    shortages: list[Shortage] | None = Field(None, description="409 out of stock: each line short of stock.")


def ok(
    model: type[BaseModel] | Any,
    description: str,
    headers: dict[str, str] | None = None,
    links: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A success answer for ``responses=``: its body's model, what it means, its headers (name:
    description, each a string), and its OpenAPI links (see :func:`link`)."""
    answer: dict[str, Any] = {"model": model, "description": description}
    if links:
        answer["links"] = links
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return answer


def text(description: str, example: str | None = None) -> dict[str, Any]:
    """A success answer for ``responses=`` whose body is plain text (sent as ``text/plain;
    charset=utf-8``), with an example of it; the route takes ``response_class=PlainTextResponse``."""
    content: dict[str, Any] = {"schema": {"type": "string"}}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"text/plain": content}}


T = TypeVar("T")


class ListPage(BaseModel, Generic[T]):
    """A list route's answer (``oms.edge.listing``): a page of rows, and the cursor of the page after it."""

    items: list[T]
    next: str | None = Field(description="Give it back as `?next=` to read the page after this one; null on the last.")


def listed(model: type[BaseModel], description: str) -> dict[str, Any]:
    """A list route's success answer for ``responses=``: a page of ``model``, and its Link header."""
    link_header = {"Link": '`<PATH?...&next=CURSOR>; rel="next"` when there is a page after this one.'}
    # A subclass of its own, so the schema is called OrderPage, not ListPage_Order_.
    page = create_model(f"{model.__name__}Page", __base__=ListPage[model])  # type: ignore[valid-type]
    return ok(page, description, link_header)


def link(
    method: str, path: str, description: str, *, parameters: dict[str, str] | None = None, body: Any = None
) -> dict[str, Any]:
    """An OpenAPI link to the operation ``method path``: its ``parameters`` (by name) and its JSON
    ``body`` taken from this answer by runtime expressions such as ``$response.body#/id``. Clients,
    and the fuzz tests' stateful phase, follow them."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    found: dict[str, Any] = {"operationRef": f"#/paths/{pointer}/{method.lower()}", "description": description}
    if parameters:
        found["parameters"] = parameters
    if body is not None:
        found["requestBody"] = body
    return found


METRICS = (
    "Prometheus metrics, in its text format: every service's `oms_http_requests_total{service,method,route,status}` "
    "and `oms_http_request_seconds{service,method,route}` (by route template, e.g. `/orders/{order_id}`); "
    "`oms_database_up` (1 while the service can use its database, else 0) and `oms_database_errors_total{kind}` "
    "(the database faults it met: unreachable, timeout, read_only, disk_full, busy, io, conflict); "
    "OrderService's sagas, saga steps and circuit breakers too."
)
"""GET /metrics' answer (``oms.edge.app.metrics_route``), on each service; admins only."""


def errors(**described: str) -> dict[int | str, dict[str, Any]]:
    """A route's own error answers for ``responses=``: ``errors(e404="No such order")``."""
    return {int(code.removeprefix("e")): {"description": text} for code, text in described.items()}


_COMMON = {
    400: "Malformed JSON, or no body where one is needed.",
    401: "No bearer token, or one that is not valid: `invalid_token`, or that it expired, nothing more.",
    403: "The token's role may not call this route.",
    404: "Not found.",
    413: "The request body is over the size limit (64 KiB by default).",
    415: "A POST or PUT with a body whose Content-Type is not JSON.",
    422: "A parameter or a field of the body is missing, of the wrong type, or out of range.",
    429: "This customer's request rate is over its limit.",
    500: "The service failed; the trace is logged under the answer's request id.",
    503: "Busy, or the service's database is unavailable: retry after the time given.",
}
_DESCRIPTION = (
    "Every route but `GET /health`, `GET /ready` (and these documents) needs `Authorization: Bearer <token>` "
    "(`oms token`); what a token's role may call is each route's 403. A body is JSON, sent with `Content-Type: "
    "application/json`: a POST or PUT with a body of another type is answered 415 (a POST without a body, such as "
    "a cancel, needs no Content-Type). Every error is an RFC 9457 problem (`application/problem+json`). "
    "Not listed per route, as no route answers them: what the HTTP server says before any route runs, "
    "431 (request line and headers too large), 408 (request not received in time) and 503 with "
    "`Retry-After` past the cap on open connections, all problem+json."
)
_REQUEST_ID = {
    "description": "The request's id, the server's own (16 random hex digits): in its log lines, its audit line "
    "and a 500's body.",
    "schema": {"type": "string"},
}
_RETRY_AFTER = {"description": "Seconds to wait before trying again.", "schema": {"type": "string"}}
_CHALLENGE = {
    "description": '`Bearer error="invalid_token"`, with `error_description="The token has expired"` for an '
    "expired token.",
    "schema": {"type": "string"},
}
_ACCEPT = {"description": "The media type the route takes: `application/json`.", "schema": {"type": "string"}}
_REQUEST_ID_PARAMETER = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "An id of the caller's for this request (1 to 64 of `A-Z a-z 0-9 . _ -`), logged beside the "
    "server's own as `client_request_id`. Not of that form: left out (a request is never refused for it).",
    "schema": {"type": "string"},
}


def finish(document: dict[str, Any], *, public: Collection[str]) -> dict[str, Any]:
    """Add to every operation of ``document`` what every route may answer (see the module's doc)."""
    document["info"]["description"] = _DESCRIPTION
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A token from `oms token` (roles: customer, admin, service).",
    }
    used: set[str] = set()
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            _finish_operation(operation, method=method, authenticated=path not in public)
            used.update(operation.get("tags", ()))
    document["tags"] = [{"name": tag.value, "description": text} for tag, text in TAGS.items() if tag in used]
    _integer_bounds(document)
    return document


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def _integer_bounds(node: Any) -> None:
    """Every bound that is a whole number written as one (``1000000000000``, not ``1e12``).

    FastAPI builds the document through pydantic models of OpenAPI that hold bounds as floats, so a
    ``le=10**12`` arrives as ``1000000000000.0``, which a generator takes for a float's bound (and
    Python's JSON writes larger ones as ``1e+16``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _BOUNDS and isinstance(value, float) and value.is_integer():
                node[key] = int(value)
            else:
                _integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _integer_bounds(value)


def _finish_operation(operation: dict[str, Any], *, method: str, authenticated: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    codes: set[int] = {500, 413}
    if authenticated:
        operation["security"] = [{SECURITY_SCHEME: []}]
        codes |= {401, 403, 429, 503}  # 503: the database unavailable, as well as any busy answer of the route
    if method in ("post", "put", "patch"):
        codes.add(415)
        if "requestBody" in operation:
            codes.add(400)
    if operation.get("parameters") or "requestBody" in operation:
        codes.add(422)
    for code in codes:
        responses.setdefault(str(code), {})
    parameters = operation.setdefault("parameters", [])
    parameters.append(_REQUEST_ID_PARAMETER)
    for key, response in responses.items():
        status = int(key)
        headers = response.setdefault("headers", {})
        headers["X-Request-Id"] = _REQUEST_ID
        if status < 400:
            continue
        if not response.get("description") or response["description"] in ("Validation Error", "Successful Response"):
            response["description"] = _COMMON.get(status, "Error.")
        response["content"] = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        if status == 401:
            headers["WWW-Authenticate"] = _CHALLENGE
        elif status in (429, 503):
            headers["Retry-After"] = _RETRY_AFTER
        elif status == 415:
            headers["Accept"] = _ACCEPT
    operation["responses"] = dict(sorted(responses.items()))


def install(app: FastAPI) -> None:
    """The app's ``/openapi.json`` (finished, built once) and its offline ``/docs``. The app must be
    made with ``docs_url=None, redoc_url=None``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            public, _ = access.check(app)
            app.openapi_schema = finish(document, public=public)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(ASSETS, DocsAssets(), name="docs-assets")
    access.public_files(app, ASSETS)

    page = _DOCS_PAGE.replace("{title}", html.escape(f"{app.title}: API")).replace("{assets}", ASSETS)

    @app.get("/docs", include_in_schema=False, dependencies=[access.public()])
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=DOCS_HEADERS)


DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
"""``/docs``' Content-Security-Policy: its script, style and images from the service alone (and
``data:`` images: Swagger UI's style draws its icons so), no inline script or style, its requests
(the document, "Try it out") to the service alone, and no framing. ``tests/e2e/test_docs_browser.py``
checks in Chromium that Swagger UI works under it without a violation."""
DOCS_HEADERS = {
    "Content-Security-Policy": DOCS_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
"""On ``/docs``, and with ``nosniff`` on every file under ``/docs/assets``."""

# Swagger UI, its script and style from /docs/assets. No badge from the public validator; the
# token stays across reloads.
_DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/docs-init.js"></script>
</body>
</html>
"""

_DOCS_INIT = """"use strict";
SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis],
  deepLinking: true,
  validatorUrl: null,
  persistAuthorization: true,
});
"""
"""``/docs/assets/docs-init.js``: the page's script, a file of its own so that no inline script runs."""

INIT_SCRIPT = "docs-init.js"
ASSET_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", INIT_SCRIPT)
"""Every file under ``/docs/assets``: those ``/docs`` loads, and no other (404)."""


class DocsAssets(StaticFiles):
    """``/docs/assets``: :data:`ASSET_FILES` alone, from the ``swagger-ui-py`` package (as
    StaticFiles serves them: ETag, 304, HEAD), and ``docs-init.js`` from :data:`_DOCS_INIT`. The
    package's other files (Swagger Editor's bundles, source maps of 8 MB) are never loaded by the
    page, so they are not served."""

    def __init__(self) -> None:
        super().__init__(directory=swagger_ui_files())

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in ASSET_FILES:
            raise HTTPException(404)
        if path == INIT_SCRIPT:
            if scope["method"] not in ("GET", "HEAD"):
                raise HTTPException(405)
            answer: Response = Response(_DOCS_INIT, media_type="text/javascript; charset=utf-8")
        else:
            answer = await super().get_response(path, scope)
        answer.headers["X-Content-Type-Options"] = "nosniff"
        return answer


def swagger_ui_files() -> Path:
    """The directory of Swagger UI's files in the installed ``swagger-ui-py`` package, found without
    importing it (its ``__init__`` loads web-framework glue this project does not use)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed: pip install swagger-ui-py")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class Health(BaseModel):
    status: Literal["ok"]
    service: ServiceName | None = Field(None, description="Told to an admin only.")
    pid: int | None = Field(None, description="Told to an admin only: the process that answered.")
    main_pid: int | None = Field(None, description="Told to an admin only: the process that was started.")
    database: str | None = Field(
        None, description="Told to an admin only: its database (a SQLite file's path, another URL without password)."
    )


class DatabaseState(BaseModel):
    up: bool | None = Field(description="null: the service did not tell (GET /databases: it did not answer).")
    kind: str | None = Field(
        description="Why it is down: `unreachable`, `timeout`, `read_only`, `disk_full`, `busy`, `io`."
    )
    since: str | None = Field(description="When it went down (ISO 8601, UTC).")
    detail: str | None = Field(description="What the database's driver said.")


class Ready(BaseModel):
    status: Literal["ready"]
    service: ServiceName | None = Field(None, description="Told to an admin or a service only.")
    database: DatabaseState | None = Field(None, description="Told to an admin or a service only.")
