"""One trace per order across the three services, sent over OTLP/HTTP to a receiver the test runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from system import System

from otlp_receiver import Receiver, Span

TEMPLATE = "http://jaeger:16686/trace/{trace_id}"


def sku() -> str:
    return "SKU-" + uuid.uuid4().hex[:8].upper()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def one(spans: list[Span], service: str, name: str) -> Span:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, (service, name, [(s.service, s.name) for s in spans])
    return found[0]


EXPECTED = {
    ("oms-order", "POST /orders"),
    *(("oms-order", f"step {name}") for name in ("check_inventory", "reserve_inventory", "process_payment")),
    ("oms-inventory", "POST /inventory/check"), ("oms-inventory", "POST /reservations"),
    ("oms-payment", "POST /payments"),
    # A SKU OrderService has not seen yet is looked up before the order is stored (unknown: 422).
    ("oms-inventory", "GET /items/{sku}"),
}  # fmt: skip


def test_an_order_is_one_trace_across_the_three_services(
    make_system: Callable[..., System], receiver: Receiver
) -> None:
    s = make_system({**receiver.env(), "OMS_TRACE_URL_TEMPLATE": TEMPLATE})
    item = sku()
    s.put_item(item, available=5)
    order = s.place([(item, 2)]).json()
    assert order["status"] == "PLACED"
    trace_id = order["trace_id"]
    assert isinstance(trace_id, str) and len(trace_id) == 32 and int(trace_id, 16)
    assert order["trace_url"] == f"http://jaeger:16686/trace/{trace_id}"
    assert s.order(order["id"])["trace_id"] == trace_id

    def whole(spans: list[Span]) -> bool:
        return {(x.service, x.name) for x in spans if x.trace_id == trace_id} >= EXPECTED

    spans = [x for x in receiver.wait_for(whole) if x.trace_id == trace_id]
    assert {(x.service, x.name) for x in spans} == EXPECTED
    # OrderService's server span -> its saga step spans -> the participants' server spans (each call
    # sends its step span's traceparent: no client span of its own)
    root = one(spans, "oms-order", "POST /orders")
    assert root.kind == "server" and root.parent_id == ""
    assert root.attributes["http.response.status_code"] == 201
    assert one(spans, "oms-inventory", "GET /items/{sku}").parent_id == root.span_id
    calls = {
        "check_inventory": ("POST /inventory/check", "oms-inventory"),
        "reserve_inventory": ("POST /reservations", "oms-inventory"),
        "process_payment": ("POST /payments", "oms-payment"),
    }
    for step_name, (call_name, participant) in calls.items():
        step = one(spans, "oms-order", f"step {step_name}")
        assert step.parent_id == root.span_id
        assert step.attributes["oms.order_id"] == order["id"]
        assert (step.attributes["oms.saga"], step.attributes["oms.step"]) == ("order", step_name)
        assert (step.attributes["oms.outcome"], step.attributes["oms.attempt"]) == ("done", 1)
        server = one(spans, participant, call_name)
        assert server.kind == "server" and server.parent_id == step.span_id
        assert server.attributes["http.response.status_code"] in (200, 201)


def test_a_declined_card_shows_the_failed_step_and_its_compensation(
    make_system: Callable[..., System], receiver: Receiver
) -> None:
    s = make_system(receiver.env())
    item = sku()
    s.put_item(item, available=5)
    order = s.place([(item, 1)], method="pm_card_chargeDeclined").json()
    assert order["status"] == "PAYMENT_FAILED" and "trace_url" not in order
    trace_id = order["trace_id"]

    wanted = {
        ("oms-order", "step process_payment"), ("oms-order", "compensation release_inventory"),
        ("oms-inventory", "POST /reservations/{order_id}/release"),
    }  # fmt: skip

    def compensated(spans: list[Span]) -> bool:
        # Each process sends its own spans, in its own time: wait for all of them.
        return {(x.service, x.name) for x in spans if x.trace_id == trace_id} >= wanted

    spans = [x for x in receiver.wait_for(compensated) if x.trace_id == trace_id]
    payment = one(spans, "oms-order", "step process_payment")
    assert (payment.attributes["oms.outcome"], payment.attributes["oms.reason"]) == ("failed", "card_declined")
    undo = one(spans, "oms-order", "compensation release_inventory")
    assert undo.attributes["oms.kind"] == "compensation" and undo.attributes["oms.outcome"] == "done"
    release = one(spans, "oms-inventory", "POST /reservations/{order_id}/release")
    assert release.parent_id == undo.span_id


def test_the_reconcile_saga_after_the_breaker_flow_links_to_the_orders_trace(
    make_system: Callable[..., System], receiver: Receiver
) -> None:
    s = make_system(receiver.env())
    item = sku()
    s.put_item(item, available=3, unit_price=500)
    s.place([(item, 1)])  # a live answer: OrderService now knows this SKU's stock and price
    s.kill("inventory")
    order = s.place([(item, 1)]).json()
    assert order["status"] == "PLACED" and order["reservation"] == "deferred"
    s.start("inventory")
    assert s.wait_reservation(order["id"])["reservation"] == "held"

    def reserved(spans: list[Span]) -> list[Span]:
        return [
            x for x in spans if x.name == "step reserve_deferred" and x.attributes.get("oms.order_id") == order["id"]
            and x.attributes.get("oms.outcome") == "done"
        ]  # fmt: skip

    def sagas(spans: list[Span]) -> list[Span]:
        return [x for x in spans if x.name == "saga reconcile" and x.attributes.get("oms.order_id") == order["id"]]

    def reconciled(spans: list[Span]) -> bool:
        done = reserved(spans)
        if not done or not any(saga.span_id == done[0].parent_id for saga in sagas(spans)):
            return False
        # Each process sends its own spans, in its own time: InventoryService's too.
        return any(x.trace_id == done[0].trace_id and x.service == "oms-inventory" for x in spans)

    spans = receiver.wait_for(reconciled)
    placing = one([x for x in spans if x.trace_id == order["trace_id"]], "oms-order", "POST /orders")
    # Every run of the reconcile saga (it may have found InventoryService still away first) is a trace
    # of its own, linked to the span of the request that placed the order.
    assert sagas(spans)
    for saga in sagas(spans):
        assert (order["trace_id"], placing.span_id) in saga.links, saga
        assert saga.attributes["oms.started_by"] == "recovery" and saga.trace_id != order["trace_id"]
    [step] = reserved(spans)
    [saga] = [x for x in sagas(spans) if x.span_id == step.parent_id]
    in_saga = [x for x in spans if x.trace_id == saga.trace_id]
    assert one(in_saga, "oms-inventory", "POST /reservations").parent_id == step.span_id


def test_without_otel_variables_nothing_is_exported_and_trace_id_is_null(
    make_system: Callable[..., System], receiver: Receiver
) -> None:
    # Everything says where to send, but the SDK is disabled: off, as with no OTEL_* variable at all.
    s = make_system({**receiver.env(), "OTEL_SDK_DISABLED": "true", "OMS_TRACE_URL_TEMPLATE": TEMPLATE})
    item = sku()
    s.put_item(item, available=5)
    order = s.place([(item, 1)]).json()
    assert order["status"] == "PLACED"
    assert order["trace_id"] is None and order["trace_url"] is None
    assert s.order(order["id"])["trace_id"] is None
    s.stop_all()  # a batch span processor would flush at exit: nothing may come even then
    assert receiver.requests == 0 and receiver.received() == []


def test_an_order_shows_a_null_trace_id_when_tracing_is_off(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=5)
    order = s.place([(item, 1)]).json()
    assert order["trace_id"] is None and "trace_url" not in order
