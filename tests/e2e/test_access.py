"""Default deny: every route of the three services, the dashboard's pages and files included, answers
each kind of caller as the route declares (``oms.edge.access``): no token, a token of each role, and
a valid token that grants no role. The declarations are read from the apps themselves, so a route
added later is covered without this file changing."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route
from system import SERVICES, System

from oms.auth.tokens import SERVICE_SUBJECT, Role, admin_token, customer_token, mint
from oms.config import Settings
from oms.edge.access import declared
from oms.serve import create_app

SAMPLES = {"order_id": "ord_nobody", "sku": "NO-SUCH-SKU", "name": "inventory", "webhook_id": "we_000000000000"}
"""A value for each path parameter: none names anything that exists, so no call changes a thing."""
FILES = {"/ui/static/{name}": "/ui/static/dashboard.js", "/docs/assets": "/docs/assets/swagger-ui.css"}

# Who may call what is the edge's, the same whatever the database: SQLite only.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

Declared = tuple[str, str, frozenset[Role] | None]
"""A method, a path to call, and who may call it (None: anyone)."""


def declarations(app: FastAPI) -> Iterator[Declared]:
    for route in app.routes:
        if isinstance(route, APIRoute):
            access = declared(route)
            assert access is not None, route.path  # the service would not have started
            path = FILES.get(route.path) or re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], route.path)
            for method in sorted(route.methods or ()):
                yield method, path, access.roles
        elif isinstance(route, Mount):
            yield "GET", FILES[route.path], None
        elif isinstance(route, Route):
            yield "GET", route.path, None  # /openapi.json


@pytest.fixture(scope="module")
def callers(shared_system: System) -> dict[str, str | None]:
    key = shared_system.key
    return {
        "anonymous": None,
        Role.ADMIN: admin_token(key),
        Role.SERVICE: mint(key, sub=SERVICE_SUBJECT, scope="service", ttl=3600),
        Role.CUSTOMER: customer_token(key, "c-access"),
        Role.NONE: mint(key, sub="nobody", scope="", ttl=3600),
    }


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_answers_each_caller_as_it_declares(
    service: str, shared_system: System, callers: dict[str, str | None], tmp_path: Path
) -> None:
    settings = Settings.model_validate(
        {"data_dir": tmp_path, "auth_key_file": shared_system.key_file, "audit_log": "off"}
    )
    routes = list(declarations(create_app(service, settings).app.app))
    assert len(routes) >= 8, routes
    wrong = []
    with httpx.Client(base_url=shared_system.url(service), timeout=30) as http:
        for method, path, roles in routes:
            for name, token in callers.items():
                headers = {"authorization": f"Bearer {token}"} if token else {}
                content = None
                if method in ("POST", "PUT"):
                    headers["content-type"] = "application/json"
                    content = b"{}"  # never a valid body: nothing is changed
                status = http.request(method, path, headers=headers, content=content).status_code
                if roles is None:
                    expected = "served"
                elif token is None:
                    expected = "401"
                elif name in roles:
                    expected = "served"
                else:
                    expected = "403"
                got = "401" if status == 401 else "403" if status == 403 else "served"
                if got != expected or status >= 500:
                    wrong.append(f"{method} {path} as {name}: {status}, expected {expected}")
    assert not wrong, "\n".join(wrong)


def test_an_address_that_keeps_failing_authentication_is_told_to_wait(
    make_system: Callable[..., System],
) -> None:
    # One token back a hundred seconds after the burst: the test is over long before.
    s = make_system({"OMS_AUTH_FAILURE_RATE_PER_SECOND": "0.01", "OMS_AUTH_FAILURE_BURST": "5"})
    forged = {"authorization": "Bearer forged.token.here"}
    for name in SERVICES:
        answers = [httpx.get(s.url(name) + "/metrics", headers=forged if n % 2 else {}) for n in range(6)]
        assert [a.status_code for a in answers] == [401] * 5 + [429], name
        assert answers[-1].headers["retry-after"].isdigit()
        assert answers[-1].headers["content-type"] == "application/problem+json"
        # A caller whose token is good is served all the same, and anyone may still ask /health.
        assert s.http.get(s.url(name) + "/metrics").status_code == 200
        assert httpx.get(s.url(name) + "/health").status_code == 200
