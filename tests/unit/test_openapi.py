"""Each service's /openapi.json and /docs, read through the whole app (Gate included), with no
process and no database: the app is built, never started."""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, get_args, get_type_hints

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from oms.config import Settings
from oms.edge.openapi import ASSET_FILES, ASSETS, INIT_SCRIPT, Tag, swagger_ui_files
from oms.events import answers as events_answers
from oms.events import store as events_store
from oms.fields import MAX_AMOUNT
from oms.orders import answers, saga
from oms.orders.saga import CANCEL, ORDER, RECONCILE, STATUSES, OrderContext
from oms.payments import store as payments_store
from oms.payments.answers import PaymentStatus
from oms.resilience.breaker import State, WindowType
from oms.saga.engine import Kind, Outcome, SagaStatus
from oms.serve import create_app

SERVICES = ("order", "inventory", "payment")
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


@cache
def app(service: str, directory: Path) -> Any:
    settings = Settings.model_validate({"data_dir": directory, "audit_log": "off"})
    return create_app(service, settings)


def fastapi_of(service: str, directory: Path) -> FastAPI:
    found: FastAPI = app(service, directory).app.app  # the Gate, in front of Front, in front of FastAPI
    return found


def get(service: str, directory: Path, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app(service, directory))
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return await client.get(path)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openapi")


@pytest.fixture(scope="module")
def documents(directory: Path) -> dict[str, dict[str, Any]]:
    answers = {service: get(service, directory, "/openapi.json") for service in SERVICES}
    assert all(a.status_code == 200 for a in answers.values())  # public: no token needed
    return {service: a.json() for service, a in answers.items()}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in document["paths"].items() for m, op in ops.items()]


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_has_the_bearer_scheme_but_the_probes(service: str, documents: dict[str, Any]) -> None:
    document = documents[service]
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for method, path, operation in operations(document):
        if path in ("/health", "/ready"):
            assert "security" not in operation and "401" not in operation["responses"]
        else:
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert {"401", "403", "429", "503"} <= set(operation["responses"]), (method, path)


@pytest.mark.parametrize("service", SERVICES)
def test_every_error_is_problem_json_and_every_answer_has_a_request_id(service: str, documents: dict[str, Any]) -> None:
    for method, path, operation in operations(documents[service]):
        responses = operation["responses"]
        assert {"413", "500"} <= set(responses), (method, path)
        if method in ("POST", "PUT"):
            assert "415" in responses and "Accept" in responses["415"]["headers"], (method, path)
        for code, response in responses.items():
            assert "X-Request-Id" in response["headers"], (method, path, code)
            if int(code) >= 400:
                assert response["content"] == PROBLEM, (method, path, code)
        assert "WWW-Authenticate" in responses.get("401", {"headers": {"WWW-Authenticate": 1}})["headers"]
        for code in ("429", "503"):
            if code in responses:
                assert "Retry-After" in responses[code]["headers"], (method, path, code)
        assert any(p["name"] == "X-Request-Id" and p["in"] == "header" for p in operation["parameters"])
    schemas = documents[service]["components"]["schemas"]
    problem = schemas["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    assert {"instance", "request_id", "errors"} <= set(problem["properties"])
    assert problem.get("additionalProperties", True) is not False  # extras: skus, shortages, ...
    assert "HTTPValidationError" not in schemas


@pytest.mark.parametrize("service", SERVICES)
def test_every_success_body_is_its_model_not_a_string(service: str, documents: dict[str, Any]) -> None:
    for method, path, operation in operations(documents[service]):
        for code, response in operation["responses"].items():
            if int(code) >= 300:
                continue
            if int(code) == 204:  # no body
                assert "content" not in response, (method, path)
                continue
            content = response["content"]
            if path == "/metrics":
                assert content == {"text/plain": {"schema": {"type": "string"}}}
                continue
            if path == "/orders/{order_id}/diagram":  # a sequence diagram, as text (or drawn, format=svg)
                assert list(content) == ["text/plain", "image/svg+xml"]
                assert content["text/plain"]["schema"] == content["image/svg+xml"]["schema"] == {"type": "string"}
                assert content["text/plain"]["example"].startswith("title Order ")
                continue
            assert list(content) == ["application/json"], (method, path, code)
            schema = content["application/json"]["schema"]
            assert set(schema) == {"$ref"}, (method, path, code, schema)


def test_the_status_codes_each_route_can_answer(documents: dict[str, Any]) -> None:
    def codes(service: str, method: str, path: str) -> set[int]:
        return {int(c) for c in documents[service]["paths"][path][method.lower()]["responses"]}

    common = {401, 403, 413, 429, 500, 503}  # 503: the database unavailable, on every route but /health
    assert codes("order", "POST", "/orders") == common | {200, 201, 202, 400, 415, 422}
    assert codes("order", "POST", "/orders/{order_id}/cancel") == common | {200, 404, 409, 415, 422}
    assert codes("order", "GET", "/orders/{order_id}") == common | {200, 404, 422}
    assert codes("order", "GET", "/orders/{order_id}/diagram") == common | {200, 404, 422}
    assert codes("order", "GET", "/breakers") == common | {200}
    assert codes("order", "GET", "/health") == {200, 413, 500}
    for service in SERVICES:  # public, and 503 (with Retry-After) while not ready
        assert codes(service, "GET", "/ready") == {200, 413, 500, 503}
        ready = documents[service]["paths"]["/ready"]["get"]["responses"]
        assert "Retry-After" in ready["503"]["headers"]
        assert ready["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Ready"}
    assert codes("inventory", "PUT", "/items/{sku}") == common | {200, 201, 400, 415, 422}
    assert codes("inventory", "POST", "/reservations") == common | {200, 201, 400, 409, 415, 422}
    assert codes("inventory", "POST", "/inventory/check") == common | {200, 400, 415, 422}
    assert codes("payment", "POST", "/payments") == common | {200, 201, 400, 409, 415, 422}
    assert codes("payment", "POST", "/payments/refund") == common | {200, 400, 404, 409, 415, 422}
    assert codes("order", "POST", "/webhooks") == common | {201, 400, 415, 422}
    assert codes("order", "DELETE", "/webhooks/{webhook_id}") == common | {204, 404, 422}
    assert codes("order", "POST", "/webhooks/{webhook_id}/replay") == common | {202, 400, 404, 415, 422}
    assert codes("order", "POST", "/webhooks/{webhook_id}/test") == common | {200, 404, 415, 422}
    for service in SERVICES:  # every service's metrics, for admins
        assert codes(service, "GET", "/metrics") == common | {200}


def test_post_orders_documents_its_headers(documents: dict[str, Any]) -> None:
    operation = documents["order"]["paths"]["/orders"]["post"]
    assert {"Idempotency-Key", "Prefer"} <= {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    responses = operation["responses"]
    assert "Location" in responses["201"]["headers"]
    assert {"Location", "Idempotent-Replayed"} <= set(responses["200"]["headers"])
    assert {"Location", "Preference-Applied"} <= set(responses["202"]["headers"])
    assert "Retry-After" in responses["503"]["headers"]
    assert responses["201"]["links"]["get"]["parameters"] == {"order_id": "$response.body#/id"}


@pytest.mark.parametrize("service", SERVICES)
def test_no_route_serialises_through_a_response_model(service: str, directory: Path) -> None:
    """The models only document: FastAPI never validates an answer through them (the hot routes
    are answered ahead of FastAPI anyway, oms.edge.app.Front)."""
    routes = [r for r in fastapi_of(service, directory).routes if isinstance(r, APIRoute)]
    assert routes
    for route in routes:
        assert route.response_model is None and route.response_field is None, route.path


@pytest.mark.parametrize("service", SERVICES)
def test_docs_work_offline(service: str, directory: Path) -> None:
    page = get(service, directory, "/docs")  # public, like every file it loads
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "://" not in page.text, "the page loads nothing from elsewhere"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == sorted(f"{ASSETS}/{name}" for name in ASSET_FILES)  # all it loads, and only those
    for asset in assets:
        answer = get(service, directory, asset)
        assert answer.status_code == 200 and len(answer.content) > 100, asset
        assert answer.headers["x-content-type-options"] == "nosniff"
    bundle = get(service, directory, "/docs/assets/swagger-ui-bundle.js").text
    assert "isOAS31" in bundle, "Swagger UI 5: 4.x renders no OpenAPI 3.1 document"
    init = get(service, directory, "/docs/assets/docs-init.js")
    assert init.headers["content-type"].startswith("text/javascript") and "SwaggerUIBundle({" in init.text
    assert fastapi_of(service, directory).redoc_url is None  # ReDoc's page loads its script from a CDN


@pytest.mark.parametrize("service", SERVICES)
def test_docs_assets_serve_only_the_files_the_page_loads(service: str, directory: Path) -> None:
    packaged = {path.name for path in swagger_ui_files().iterdir()}
    assert any(name.endswith(".map") for name in packaged)  # the package's source maps, 8 MB the largest
    for name in [*sorted(packaged - set(ASSET_FILES)), "", "swagger-ui-bundle.js.map"]:
        answer = get(service, directory, f"{ASSETS}/{name}")
        assert answer.status_code == 404, name
        assert answer.headers["content-type"] == "application/problem+json"
    assert get(service, directory, "/docs/oauth2-redirect").status_code == 401  # gone: no OAuth2 flow to end


@pytest.mark.parametrize("service", SERVICES)
def test_the_docs_page_runs_no_inline_script_and_cannot_be_framed(service: str, directory: Path) -> None:
    page = get(service, directory, "/docs")
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert (policy["script-src"], policy["style-src"], policy["connect-src"]) == ("'self'", "'self'", "'self'")
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all('src="' in attributes and not body.strip() for attributes, body in scripts)
    assert "requestInterceptor" not in get(service, directory, f"{ASSETS}/{INIT_SCRIPT}").text


@pytest.mark.parametrize(("service", "reason"), [("order", "catalog not loaded"), ("inventory", "database not open")])
def test_ready_answers_503_to_anyone_until_the_start_up_is_over(service: str, reason: str, directory: Path) -> None:
    # The app is built, never started: its lifespan (database, OrderService's catalog) has not run.
    answer = get(service, directory, "/ready")
    assert answer.status_code == 503  # not 401: a probe carries no token
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "2"
    body = answer.json()
    assert (body["type"], body["reason"]) == ("/problems/not-ready", reason)
    assert "database" not in body and "service" not in body  # the details are for admins
    assert get(service, directory, "/health").status_code == 200


OPERATIONS = {
    "order": {
        "health", "ready", "get_metrics", "place_order", "list_orders", "get_order", "cancel_order", "retry_order",
        "get_order_diagram", "order_stats", "get_breakers", "switch_breaker", "get_databases", "get_audit",
        "list_events", "create_webhook", "list_webhooks", "list_order_deliveries", "get_webhook", "update_webhook",
        "delete_webhook", "rotate_webhook_secret", "list_webhook_deliveries", "replay_webhook", "test_webhook",
    },
    "inventory": {
        "health", "ready", "get_metrics", "put_item", "get_item", "list_items", "check_inventory", "reserve",
        "list_reservations", "get_reservation", "release_reservation",
    },
    "payment": {"health", "ready", "get_metrics", "charge", "list_payments", "void", "refund"},
}  # fmt: skip


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_has_a_short_id_and_one_tag(service: str, documents: dict[str, Any]) -> None:
    """A generated client names its functions after the ids and its modules after the tags."""
    document = documents[service]
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert sorted(ids) == sorted(OPERATIONS[service])  # each once
    for method, path, operation in operations(document):
        assert len(operation["tags"]) == 1 and operation["tags"][0] in set(Tag), (method, path)
    used = {operation["tags"][0] for _, _, operation in operations(document)}
    assert [t["name"] for t in document["tags"]] == [t.value for t in Tag if t.value in used]
    assert all(t["description"] for t in document["tags"])
    tag = {op["operationId"]: op["tags"][0] for _, _, op in operations(document)}
    assert tag["health"] == tag["get_metrics"] == "operations"
    if service == "order":
        assert (tag["cancel_order"], tag["get_order_diagram"], tag["switch_breaker"]) == ("orders",) * 2 + ("breakers",)
    if service == "inventory":
        assert (tag["put_item"], tag["check_inventory"], tag["reserve"]) == ("catalog", "catalog", "reservations")


def enums_in(node: Any, where: str = "") -> Iterator[tuple[str, frozenset[Any]]]:
    """Every schema with an ``enum`` of two values or more in ``node``, with where it is."""
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list) and len(node["enum"]) > 1:
            yield where, frozenset(node["enum"])
        for key, value in node.items():
            yield from enums_in(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from enums_in(value, f"{where}/{index}")


@pytest.mark.parametrize("service", SERVICES)
def test_every_enum_is_one_named_schema(service: str, documents: dict[str, Any]) -> None:
    document = documents[service]
    found = list(enums_in(document))
    named = {values: where.rsplit("/", 1)[1] for where, values in found if where.count("/") == 3}
    assert len(named) == len([where for where, _ in found if where.count("/") == 3])  # no two alike
    for where, values in found:  # an inline enum (a body's, a parameter's) is one of no named schema
        assert where.count("/") == 3 or values not in named, (where, named.get(values))
    schemas = document["components"]["schemas"]
    assert schemas["Health"]["properties"]["service"]["anyOf"][0] == {"$ref": "#/components/schemas/ServiceName"}


def test_the_enums_are_shared_by_the_bodies_and_parameters_that_hold_them(documents: dict[str, Any]) -> None:
    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def parameter(service: str, path: str, name: str) -> Any:
        [found] = [p for p in documents[service]["paths"][path]["get"]["parameters"] if p["name"] == name]
        return found["schema"]["anyOf"][0]

    orders = documents["order"]["components"]["schemas"]
    assert parameter("order", "/orders", "status") == orders["Order"]["properties"]["status"] == ref("OrderStatus")
    assert orders["OrderStatus"]["enum"] == list(STATUSES)
    assert orders["SagaEntry"]["properties"]["outcome"] == ref("StepOutcome")
    assert orders["Breaker"]["properties"]["state"] == ref("BreakerState")
    failure = orders["Order"]["properties"]["failure_reason"]["anyOf"]
    assert failure[0] == ref("FailureReason") and failure[1]["pattern"] == "^error:" and failure[2] == {"type": "null"}
    inventory = documents["inventory"]["components"]["schemas"]
    assert parameter("inventory", "/reservations", "status") == ref("ReservationStatus")
    assert inventory["Reservation"]["properties"]["status"] == ref("ReservationStatus")
    assert inventory["Reserved"]["properties"]["status"] == ref("ReservationStatus")
    assert documents["payment"]["components"]["schemas"]["Payment"]["properties"]["status"] == ref("PaymentStatus")


def test_the_documents_enums_hold_the_domains_values() -> None:
    """The enums that only document (``oms.*.answers``) against the values the code writes."""
    assert {s.value for s in answers.SagaStatus} == {s.value for s in SagaStatus} | {"running"}
    assert {o.value for o in answers.StepOutcome} == {o.value for o in Outcome}
    assert {k.value for k in answers.StepKind} == set(get_args(Kind))
    assert {n.value for n in answers.SagaName} == {ORDER, RECONCILE, CANCEL}
    assert {s.value for s in answers.BreakerState} == {s.value for s in State}
    assert {w.value for w in answers.WindowType} == set(get_args(WindowType))
    context = get_type_hints(OrderContext)
    assert {c.value for c in answers.InventoryCheck} == set(get_args(context["inventory_check"]))
    assert {r.value for r in answers.OrderReservation} == set(get_args(context["reservation"]))
    assert {s.value for s in PaymentStatus} == {s.value for s in payments_store.PaymentStatus} - {"VOIDED"}
    assert [s.value for s in events_answers.WebhookStatus] == list(events_store.STATUSES)
    assert [o.value for o in events_answers.AttemptOutcome] == list(events_store.OUTCOMES)


def test_every_failure_reason_the_sagas_give_is_in_the_enum() -> None:
    """An order's ``failure_reason`` is the reason of the step that failed (or was uncertain), or of
    the compensation that gave up: every such reason in ``oms.orders.saga``, and the decline codes
    PaymentService gives. A generated client refuses an enum value it does not know, so the enum
    must hold them all (a new reason fails here until it is added)."""
    tree = ast.parse(Path(saga.__file__).read_text())
    reasons: set[str] = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.AsyncFunctionDef | ast.FunctionDef):
            continue
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("failed", "uncertain")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "StepResult"
            ):
                argument = node.args[0]
                given = assigned.get(argument.id, []) if isinstance(argument, ast.Name) else [argument]
                for expression in given:
                    for constant in ast.walk(expression):
                        text = constant.value if isinstance(constant, ast.Constant) else None
                        if isinstance(text, str) and re.fullmatch(r"[a-z][a-z0-9_]*", text):
                            reasons.add(text)
    declines = {code for code in payments_store.DECLINES.values() if code} | {payments_store.decline_code("pm_x")}
    assert "release_failed" in reasons and "card_declined" in reasons  # the walk finds what it should
    assert {r.value for r in answers.FailureReason} == reasons | declines


BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


@pytest.mark.parametrize("service", SERVICES)
def test_integer_bounds_are_integers(service: str, documents: dict[str, Any]) -> None:
    def bounds(node: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in BOUNDS and not isinstance(value, dict):
                    yield key, value
                else:
                    yield from bounds(value)
        elif isinstance(node, list):
            for value in node:
                yield from bounds(value)

    found = list(bounds(documents[service]))
    assert found and all(type(value) is int for _, value in found), found
    if service == "inventory":
        price = documents[service]["components"]["schemas"]["ItemIn"]["properties"]["unit_price"]
        assert (price["type"], price["minimum"], price["maximum"]) == ("integer", 1, MAX_AMOUNT)


def test_the_description_says_a_post_without_a_body_needs_no_content_type(documents: dict[str, Any]) -> None:
    for service in SERVICES:
        document = documents[service]
        assert "needs no Content-Type" in document["info"]["description"]
        assert "a body-less one too" not in document["info"]["description"]
        for method, path, operation in operations(document):
            if "415" in operation["responses"]:
                assert "with a body" in operation["responses"]["415"]["description"], (method, path)
