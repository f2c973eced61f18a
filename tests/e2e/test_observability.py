"""What an operator reads: JSON log lines with the request's and the order's ids, each service's
request metrics by route template and status, and a saga that waited counted once at its end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families
from system import SERVICES, System


def sku() -> str:
    return "SKU-" + uuid.uuid4().hex[:8].upper()


def samples(s: System, service: str, name: str) -> list[tuple[dict[str, str], float]]:
    answer = s.http.get(f"{s.url(service)}/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == name
    ]


def requests(s: System, service: str) -> dict[tuple[str, str, str], float]:
    found = {}
    for labels, value in samples(s, service, "oms_http_requests_total"):
        assert labels["service"] == service
        found[(labels["method"], labels["route"], labels["status"])] = value
    return found


def test_json_logs_one_object_a_line_with_the_request_and_order_ids(make_system: Callable[..., System]) -> None:
    s = make_system({"OMS_LOG_FORMAT": "json", "OMS_LOG_LEVEL": "debug"})
    item = sku()
    s.put_item(item, available=3)
    request_id = "e2e-" + uuid.uuid4().hex[:12]
    body = {"customer_id": "c-1", "items": [{"sku": item, "quantity": 1}], "payment_method": "pm_card_visa"}
    answer = s.http.post(f"{s.url('order')}/orders", json=body, headers={"X-Request-Id": request_id})
    # The server's own id; the caller's is kept beside it.
    assert answer.status_code == 201 and answer.headers["x-request-id"] != request_id
    client_request_id, request_id = request_id, answer.headers["x-request-id"]
    order = answer.json()
    assert order["status"] == "PLACED"
    s.stop_all()  # the shutdown's lines too, and every line flushed

    for name in SERVICES:
        lines: list[dict[str, Any]] = []
        for number, line in enumerate(s.logs[name].read_bytes().splitlines(), 1):
            try:
                lines.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                raise AssertionError(f"{name}.log, line {number} is not JSON: {line[:300]!r}") from None
        assert lines, name
        for line in lines:
            assert {"timestamp", "level", "event"} <= set(line) and line["service"] == name, line
            assert datetime.fromisoformat(line["timestamp"]).utcoffset() is not None, line
        assert any(line.get("logger", "").startswith("uvicorn") for line in lines), name  # uvicorn's own, in JSON
    ordered = [orjson.loads(line) for line in s.logs["order"].read_bytes().splitlines()]
    of_the_order = [line for line in ordered if line.get("order_id") == order["id"]]
    assert of_the_order
    assert all(
        line["request_id"] == request_id and line["client_request_id"] == client_request_id and line["saga"] == "order"
        for line in of_the_order
    ), of_the_order
    # OrderService sends the request's id with its calls: the participants log and audit under it.
    for name, actions in (("inventory", {"reserve"}), ("payment", {"charge"})):
        trail = [orjson.loads(line) for line in (s.directory / f"{name}-audit.log").read_bytes().splitlines()]
        of_it = [line for line in trail if line["object"] == order["id"]]
        assert {line["action"] for line in of_it} == actions, trail
        assert all(line["request_id"] == request_id for line in of_it), of_it


def test_each_service_counts_its_requests_by_route_template_and_status(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=3)
    order = s.place([(item, 1)]).json()
    assert order["status"] == "PLACED"
    s.order(order["id"])
    assert s.http.get(f"{s.url('order')}/orders/ord_0000000000000000000000").status_code == 404
    customer = s.customer("c-metrics")
    for service in SERVICES:
        assert customer.get(f"{s.url(service)}/metrics").status_code == 403
    counted = {service: requests(s, service) for service in SERVICES}
    assert counted["order"][("POST", "/orders", "201")] >= 1
    assert counted["order"][("GET", "/orders/{order_id}", "200")] >= 1
    assert counted["order"][("GET", "/orders/{order_id}", "404")] >= 1
    assert counted["inventory"][("POST", "/inventory/check", "200")] >= 1
    assert counted["inventory"][("POST", "/reservations", "201")] >= 1
    assert counted["inventory"][("PUT", "/items/{sku}", "201")] >= 1
    assert counted["payment"][("POST", "/payments", "201")] >= 1
    for service in SERVICES:
        assert counted[service][("GET", "/metrics", "403")] >= 1
        assert not any(order["id"] in route or item in route for _, route, _ in counted[service]), counted[service]
        timed = {labels["route"] for labels, _ in samples(s, service, "oms_http_request_seconds_count")}
        assert "/metrics" in timed
    assert ("POST", "/orders") in {(labels["method"], labels["route"]) for labels, _ in
                                   samples(s, "order", "oms_http_request_seconds_count")}  # fmt: skip
    assert samples(s, "order", "oms_sagas_in_flight") == [({}, 0.0)]
    anonymous = s.http.get(f"{s.url('payment')}/metrics", headers={"authorization": ""})
    assert anonymous.status_code == 401


def test_a_saga_that_waited_several_times_is_counted_once(system: System) -> None:
    s = system
    item = sku()
    s.put_item(item, available=4)
    s.pause("payment")  # the charge is sent and never answered; every later question too
    try:
        order = s.place([(item, 1)]).json()
        assert order["status"] == "PENDING" and order["pending_reason"] == "payment_outcome_unknown"
        deadline = time.monotonic() + 30
        waited = 0
        while waited < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
            rows = s.order(order["id"])["saga"]
            waited = sum(
                row["attempt"] for row in rows if row["name"] == "process_payment" and row["outcome"] == "unknown"
            )
        assert waited >= 3, rows
    finally:
        s.resume("payment")
    final = s.wait_terminal(order["id"])
    assert final["status"] != "PENDING"
    ended = {
        (labels["saga"], labels["status"]): value for labels, value in samples(s, "order", "oms_sagas_ended_total")
    }
    assert ended == {("order", final["status"]): 1.0}
