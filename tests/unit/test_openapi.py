"""Each service's /openapi.json and /docs, read through the whole app (Gate included), with no
process and no database: the app is built, never started."""

from __future__ import annotations

import asyncio
import re
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from oms.config import Settings
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
    assert len(assets) == 3
    for asset in assets:
        assert asset.startswith("/docs/assets/")
        answer = get(service, directory, asset)
        assert answer.status_code == 200 and len(answer.content) > 100, asset
    bundle = get(service, directory, "/docs/assets/swagger-ui-bundle.js").text
    assert "isOAS31" in bundle, "Swagger UI 5: 4.x renders no OpenAPI 3.1 document"
    assert get(service, directory, "/docs/oauth2-redirect").status_code == 200
    assert fastapi_of(service, directory).redoc_url is None  # ReDoc's page loads its script from a CDN


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
