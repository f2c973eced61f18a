"""Safe to expose: every caller known, every customer in its own lane (OWASP API Security Top 10).

Each attack an anonymous caller (or a customer) made on the code before tokens existed is made
again here, and must be refused with nothing changed."""

from __future__ import annotations

import base64
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import orjson
import pytest
from system import System, client

from oms.auth.tokens import mint
from oms.db import database_label

JSON = {"content-type": "application/json"}
VISA = "pm_card_visa"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    return body


def unauthenticated(response: httpx.Response) -> dict[str, Any]:
    body = problem(response, 401)
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    # invalid_token, or that it expired: nothing of which check failed.
    assert body["detail"] in (
        "The token is not valid (invalid_token).", "The token has expired.",
        "This route needs an Authorization: Bearer token.", "The Authorization header must be: Bearer <token>.",
    ), body  # fmt: skip
    return body


def order_body(sku: str, quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {"items": [{"sku": sku, "quantity": quantity}], "payment_method": VISA, **extra}


@pytest.fixture(scope="module")
def placed(shared_system: System) -> dict[str, Any]:
    """An order of alice's, PLACED, holding stock and charged."""
    s = shared_system
    s.put_item("SEC-1", available=50, unit_price=1000)
    s.put_item("SEC-LAST", available=1, unit_price=500)
    response = s.customer("alice").post(f"{s.url('order')}/orders", json=order_body("SEC-1", 2))
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    assert order["status"] == "PLACED" and order["customer_id"] == "alice"
    return order


def routes(s: System) -> list[tuple[str, str, str]]:
    """(service, method, path) of every documented operation, ids filled in."""
    found = []
    for service in ("order", "inventory", "payment"):
        document = httpx.get(f"{s.url(service)}/openapi.json").json()
        for path, operations in document["paths"].items():
            for method in operations:
                filled = path.replace("{order_id}", "ord_x").replace("{sku}", "SEC-1")
                found.append((service, method.upper(), filled))
    return found


def test_every_route_but_health_needs_a_valid_token(shared_system: System) -> None:
    s = shared_system
    listed = routes(s)
    assert len(listed) >= 15
    now = int(time.time())
    other = mint(s.key, sub="admin", scope="admin", ttl=60).split(".")
    header = base64.urlsafe_b64encode(orjson.dumps({"alg": "none", "typ": "JWT"})).rstrip(b"=").decode()
    wrong_issuer = jwt.encode(
        {"iss": "x", "sub": "admin", "scope": "admin", "iat": now, "exp": now + 60},
        s.key.private,
        algorithm="EdDSA",
        headers={"kid": s.key.kid},
    )
    bad_tokens = {
        "none": None,
        "garbage": "Bearer not-a-jwt",
        "alg none": f"Bearer {header}.{other[1]}.",
        "tampered": f"Bearer {other[0]}.{other[1]}.{other[2][:-4]}AAAA",
        "expired": f"Bearer {mint(s.key, sub='admin', scope='admin', ttl=-300)}",
        "basic": "Basic YWRtaW46YWRtaW4=",
        "wrong issuer": f"Bearer {wrong_issuer}",
    }
    bad_tokens_headers = {"authorization": "Bearer not-a-jwt"}
    for service, method, path in listed:
        if path in ("/health", "/ready"):  # the probes: public, a bad token is no token there
            assert httpx.request(method, f"{s.url(service)}{path}", headers=bad_tokens_headers).status_code == 200
            continue
        for name, authorization in bad_tokens.items():
            headers = dict(JSON)
            if authorization:
                headers["authorization"] = authorization
            response = httpx.request(method, f"{s.url(service)}{path}", headers=headers, content=b"{}")
            assert response.status_code == 401, (name, service, method, path, response.text)
            unauthenticated(response)
    # Anyone may know a service is up, and nothing more; an admin is told which process it is.
    anonymous = httpx.get(f"{s.url('payment')}/health")
    assert anonymous.json() == {"status": "ok"}
    told = s.http.get(f"{s.url('payment')}/health").json()
    assert told["pid"] == s.processes["payment"].pid
    assert told["database"] == database_label(s.database_urls["payment"])  # a password would show as ***


def test_attacks_on_the_participants_are_refused_and_change_nothing(
    shared_system: System, placed: dict[str, Any]
) -> None:
    s = shared_system
    order_id = placed["id"]
    inventory, payment = s.url("inventory"), s.url("payment")
    before_item = s.item("SEC-1")
    alice = s.customer("alice")
    for caller in (httpx.Client(headers=JSON), alice):
        expected = 401 if caller is not alice else 403
        # A refund behind the order's back; a void; a release of another order's stock.
        fake_charge = {"order_id": "ord_fake", "amount": 1, "currency": "USD", "payment_method": VISA}
        fake_hold = {"order_id": "ord_fake", "items": [{"sku": "SEC-LAST", "quantity": 1}]}
        reprice = {"name": "x", "unit_price": 1, "currency": "USD", "available": 1_000_000}
        attempts = [
            # A refund behind the order's back; a void; a release of another order's stock.
            caller.post(f"{payment}/payments/refund", json={"order_id": order_id}),
            caller.post(f"{payment}/payments/void", json={"order_id": order_id}),
            caller.post(f"{inventory}/reservations/{order_id}/release"),
            # A charge and a reservation for an order that does not exist.
            caller.post(f"{payment}/payments", json=fake_charge),
            caller.post(f"{inventory}/reservations", json=fake_hold),
            # Repricing and restocking.
            caller.put(f"{inventory}/items/SEC-1", json=reprice),
            # Reading everyone's payments and reservations.
            caller.get(f"{payment}/payments"),
            caller.get(f"{inventory}/reservations"),
            caller.get(f"{inventory}/reservations/{order_id}"),
            caller.get(f"{s.url('order')}/breakers"),
            caller.get(f"{s.url('order')}/metrics"),
            caller.post(f"{s.url('order')}/orders/{order_id}/retry"),
        ]
        for response in attempts:
            problem(response, expected)
    assert s.order(order_id)["status"] == "PLACED"
    assert [p["status"] for p in s.payments(order_id)] == ["SUCCEEDED"]
    assert s.payments("ord_fake") == []
    assert s.http.get(f"{inventory}/reservations/{order_id}").json()["status"] == "RESERVED"
    assert s.http.get(f"{inventory}/reservations/ord_fake").status_code == 404
    assert s.item("SEC-1") == before_item
    # The next real order gets the last one: no made-up reservation holds it.
    last = alice.post(f"{s.url('order')}/orders", json=order_body("SEC-LAST"))
    assert last.json()["status"] == "PLACED", last.text


def test_customers_see_and_touch_only_their_own_orders(shared_system: System, placed: dict[str, Any]) -> None:
    s = shared_system
    order_url = s.url("order")
    bob = s.customer("bob")
    # Another customer's order is answered as no order at all.
    assert problem(bob.get(f"{order_url}/orders/{placed['id']}"), 404)["detail"] == problem(
        bob.get(f"{order_url}/orders/ord_nope"), 404
    )["detail"].replace("ord_nope", placed["id"])
    problem(bob.post(f"{order_url}/orders/{placed['id']}/cancel"), 404)
    assert s.order(placed["id"])["status"] == "PLACED"
    # Placing for someone else is forbidden; leaving customer_id out places for oneself.
    problem(bob.post(f"{order_url}/orders", json=order_body("SEC-1", customer_id="alice")), 403)
    own = bob.post(f"{order_url}/orders", json=order_body("SEC-1"))
    assert own.status_code == 201 and own.json()["customer_id"] == "bob"
    same = bob.post(f"{order_url}/orders", json=order_body("SEC-1", customer_id="bob"))
    assert same.status_code == 201 and same.json()["customer_id"] == "bob"
    listed = _list(bob.get(f"{order_url}/orders", params={"limit": 1000}))
    assert listed and {o["customer_id"] for o in listed} == {"bob"}
    # The owner reads, then cancels, its own order; an admin sees every customer's.
    alice = s.customer("alice")
    mine = alice.get(f"{order_url}/orders/{placed['id']}")
    assert mine.status_code == 200 and mine.json()["payment_method"] == VISA
    everyone = {o["customer_id"] for o in _list(s.http.get(f"{order_url}/orders", params={"limit": 1000}))}
    assert {"alice", "bob"} <= everyone
    # An admin must say for whom it places.
    problem(s.http.post(f"{order_url}/orders", json=order_body("SEC-1")), 422)
    # The catalog is the customers' to read, not to write.
    assert bob.get(f"{s.url('inventory')}/items/SEC-1").status_code == 200
    assert bob.get(f"{s.url('inventory')}/items").status_code == 200
    problem(bob.put(f"{s.url('inventory')}/items/SEC-2", json={"name": "x", "unit_price": 5, "currency": "USD",
                                                               "available": 1}), 403)  # fmt: skip
    assert s.http.get(f"{s.url('inventory')}/items/SEC-2").status_code == 404
    cancelled = alice.post(f"{order_url}/orders/{placed['id']}/cancel", timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED", cancelled.text


def _list(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    items: list[dict[str, Any]] = body["items"] if isinstance(body, dict) else body
    return items


def test_service_token_only_on_participant_routes(shared_system: System) -> None:
    s = shared_system
    service = client(mint(s.key, sub="order-service", scope="service", ttl=60))
    assert service.get(f"{s.url('payment')}/payments", params={"order_id": "ord_x"}).status_code == 200
    assert service.post(f"{s.url('inventory')}/inventory/check",
                        json={"items": [{"sku": "SEC-1", "quantity": 1}]}).status_code == 200  # fmt: skip
    problem(service.put(f"{s.url('inventory')}/items/SEC-1", json={"name": "x", "unit_price": 5, "currency": "USD",
                                                                   "available": 1}), 403)  # fmt: skip
    problem(service.post(f"{s.url('order')}/orders", json=order_body("SEC-1", customer_id="x")), 403)
    problem(service.get(f"{s.url('order')}/breakers"), 403)
    # The service scope is OrderService's alone; a token that is nobody's role gets nothing.
    impostor = client(mint(s.key, sub="mallory", scope="service", ttl=60))
    problem(impostor.get(f"{s.url('payment')}/payments"), 403)
    problem(impostor.get(f"{s.url('inventory')}/items"), 403)


def test_idempotency_keys_belong_to_their_customer(shared_system: System) -> None:
    s = shared_system
    s.put_item("SEC-KEY", available=10)
    url = f"{s.url('order')}/orders"
    headers = {"Idempotency-Key": "same-key"}
    alice, bob = s.customer("alice"), s.customer("bob")
    first = alice.post(url, json=order_body("SEC-KEY"), headers=headers)
    again = alice.post(url, json=order_body("SEC-KEY"), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    # Bob's equal key, with another body even: his own order, no 422 telling of alice's key.
    bobs = bob.post(url, json=order_body("SEC-KEY", 2), headers=headers)
    assert bobs.status_code == 201 and bobs.json()["id"] != first.json()["id"]
    assert bobs.json()["customer_id"] == "bob"


def test_every_post_and_put_needs_a_json_content_type(shared_system: System, placed: dict[str, Any]) -> None:
    s = shared_system
    token = {"authorization": f"Bearer {s.token}"}
    writes = [(service, method, path) for service, method, path in routes(s) if method in ("POST", "PUT")]
    assert len(writes) >= 10
    for service, method, path in writes:
        for content_type in (None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"):
            headers = dict(token)
            if content_type:
                headers["content-type"] = content_type
            response = httpx.request(method, f"{s.url(service)}{path}", headers=headers, content=b"{}")
            assert "Content-Type" in problem(response, 415)["detail"], (service, path, content_type)
    # A cross-site form post, as a browser sends it, places nothing.
    count = len(_list(s.http.get(f"{s.url('order')}/orders", params={"limit": 1000})))
    form = httpx.post(f"{s.url('order')}/orders", data={"items": "x"}, headers=token)
    problem(form, 415)
    assert len(_list(s.http.get(f"{s.url('order')}/orders", params={"limit": 1000}))) == count


def _parity(hot: httpx.Response, lean: httpx.Response) -> None:
    """A hot route and a FastAPI route answer the same bad request alike."""
    assert hot.status_code == lean.status_code, (hot.text, lean.text)
    a, b = hot.json(), lean.json()
    assert (a["type"], a["title"]) == (b["type"], b["title"]), (a, b)
    for header in ("content-type", "www-authenticate", "retry-after"):
        assert hot.headers.get(header) == lean.headers.get(header), header
    assert hot.headers["x-request-id"] and lean.headers["x-request-id"]


def test_hot_routes_and_framework_routes_answer_alike(shared_system: System) -> None:
    s = shared_system
    hot, framework = f"{s.url('payment')}/payments", f"{s.url('payment')}/payments/refund"
    admin = {"authorization": f"Bearer {s.token}"}
    customer = {"authorization": f"Bearer {mint(s.key, sub='eve', scope='orders', ttl=60)}"}
    cases: list[tuple[dict[str, str], bytes]] = [
        ({**JSON}, b"{}"),  # no token
        ({**JSON, "authorization": "Bearer nope"}, b"{}"),  # bad token
        ({**customer, **JSON}, b"{}"),  # forbidden role
        ({**admin, "content-type": "text/plain"}, b"{}"),  # not JSON
        ({**admin, **JSON}, b'{"order_id": '),  # malformed
        ({**admin, **JSON}, b"x" * 70_000),  # too large
        ({**admin, **JSON}, b'{"order_id": "a", "unexpected": 1}'),  # invalid
    ]
    for headers, content in cases:
        _parity(httpx.post(hot, headers=headers, content=content), httpx.post(framework, headers=headers,
                                                                              content=content))  # fmt: skip
    # The request id is the server's own, whatever the caller sends.
    given = httpx.post(hot, headers={**JSON, "x-request-id": "trace-me-1"}, content=b"{}")
    assert given.headers["x-request-id"] != "trace-me-1" and len(given.headers["x-request-id"]) == 16


def test_the_audit_trail_says_who_did_what_to_which_object(shared_system: System, placed: dict[str, Any]) -> None:
    s = shared_system
    lines = [orjson.loads(line) for line in (s.directory / "payment-audit.log").read_bytes().splitlines()]
    charge = next(line for line in lines if line["action"] == "charge" and line["object"] == placed["id"])
    assert (charge["sub"], charge["role"], charge["status"], charge["outcome"]) == (
        "order-service", "service", 201, "ok",
    )  # fmt: skip
    assert charge["request_id"]
    refused = [line for line in lines if line["outcome"] == "refused" and line["action"].endswith("/refund")]
    assert any(line["sub"] is None for line in refused) and any(line["sub"] == "alice" for line in refused)
    orders = [orjson.loads(line) for line in (s.directory / "order-audit.log").read_bytes().splitlines()]
    assert any(line["action"] == "place" and line["object"] == placed["id"] and line["sub"] == "alice"
               for line in orders)  # fmt: skip
    # Payment methods are written to no log line.
    for name in ("order", "inventory", "payment"):
        for path in (s.directory / f"{name}-audit.log", s.logs[name]):
            if path.exists():
                assert b"pm_card" not in path.read_bytes(), path


def test_a_customer_over_its_rate_gets_429_and_others_are_served(make_system: Callable[..., System]) -> None:
    s = make_system({"OMS_RATE_LIMIT_PER_SECOND": "0.5", "OMS_RATE_LIMIT_BURST": "3"})
    alice, bob = s.customer("alice"), s.customer("bob")
    url = f"{s.url('inventory')}/items"
    answers = [alice.get(url).status_code for _ in range(4)]
    assert answers[:3] == [200, 200, 200]
    limited = alice.get(url)
    body = problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1 and "retry" in body["detail"]
    assert bob.get(url).status_code == 200  # each customer has a bucket of its own
    assert all(s.http.get(url).status_code == 200 for _ in range(20))  # admins are not limited


def test_past_the_saga_cap_new_orders_get_503(make_system: Callable[..., System]) -> None:
    s = make_system({"OMS_MAX_SAGAS_IN_FLIGHT": "2", "OMS_PAYMENT_TIMEOUT": "20"})
    s.put_item("SEC-CAP", available=10)
    s.processes["payment"].send_signal(signal.SIGSTOP)
    try:
        url = f"{s.url('order')}/orders"
        headers = {"Prefer": "respond-async"}
        body = order_body("SEC-CAP", customer_id="c")
        first = [s.http.post(url, json=body, headers=headers) for _ in range(2)]
        assert [r.status_code for r in first] == [202, 202]
        refused = s.http.post(url, json=body, headers=headers)
        problem(refused, 503)
        assert refused.headers["retry-after"] == "1"
        assert len(_list(s.http.get(url, params={"limit": 100}))) == 2  # nothing stored for the refused one
    finally:
        s.processes["payment"].send_signal(signal.SIGCONT)
    for response in first:
        assert s.wait_terminal(response.json()["id"])["status"] == "PLACED"
    assert s.http.post(url, json=order_body("SEC-CAP", customer_id="c")).status_code == 201


def test_a_customer_flood_is_cut_off_by_its_bucket_while_an_admin_is_served(
    make_system: Callable[..., System],
) -> None:
    s = make_system({"OMS_RATE_LIMIT_PER_SECOND": "5", "OMS_RATE_LIMIT_BURST": "5"})
    codes: list[int] = []
    url = f"{s.url('inventory')}/items"

    def flood() -> None:
        mallory = s.customer("mallory")
        codes.extend(mallory.get(url).status_code for _ in range(100))

    began = time.monotonic()
    thread = threading.Thread(target=flood)
    thread.start()
    admin_codes: list[int] = []
    while thread.is_alive() and len(admin_codes) < 500:
        admin_codes.append(s.http.get(url).status_code)
    thread.join(60)
    elapsed = time.monotonic() - began
    assert len(codes) == 100 and set(codes) <= {200, 429}
    assert 5 <= codes.count(200) <= 5 + 5 * elapsed + 1  # the burst, then the rate: never more
    assert admin_codes and set(admin_codes) == {200}


def test_an_identity_providers_tokens_are_accepted(make_system: Callable[..., System]) -> None:
    """With a JWKS URL, issuer and audience set, the services take an identity provider's RS256 tokens."""
    from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
    from jwt.algorithms import RSAAlgorithm

    from jwks import JwksServer

    jwks = JwksServer()
    try:
        rsa = generate_private_key(public_exponent=65537, key_size=2048)
        jwks.keys = [{**RSAAlgorithm.to_jwk(rsa.public_key(), as_dict=True), "kid": "idp-1", "alg": "RS256"}]
        s = make_system({"OMS_AUTH_JWKS_URL": jwks.url, "OMS_AUTH_ISSUER": "https://idp.test",
                         "OMS_AUTH_AUDIENCE": "oms-api"})  # fmt: skip
        s.put_item("SEC-IDP", available=5)
        now = int(time.time())
        claims = {"iss": "https://idp.test", "aud": "oms-api", "sub": "carol", "scope": "orders",
                  "iat": now, "exp": now + 300}  # fmt: skip
        carol = client(jwt.encode(claims, rsa, algorithm="RS256", headers={"kid": "idp-1"}))
        placed = carol.post(f"{s.url('order')}/orders", json=order_body("SEC-IDP"))
        assert placed.status_code == 201 and placed.json()["customer_id"] == "carol", placed.text
        assert carol.get(f"{s.url('order')}/orders/{placed.json()['id']}").status_code == 200
        wrong_audience = jwt.encode({**claims, "aud": "other"}, rsa, algorithm="RS256", headers={"kid": "idp-1"})
        unauthenticated(client(wrong_audience).get(f"{s.url('order')}/orders"))
    finally:
        jwks.close()
