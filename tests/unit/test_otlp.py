"""OTLP written by hand (oms.telemetry.otlp), read back with opentelemetry-proto's own classes; the batches
sent to a real OTLP/HTTP receiver (tests/otlp_receiver.py) over a real socket."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from oms.telemetry import otlp
from oms.telemetry.spans import INTERNAL, SERVER, Span
from otlp_receiver import Receiver


def made(name: str = "POST /orders", **attributes: otlp.Value) -> Span:
    span = Span(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 0, True, name, INTERNAL, dict(attributes))
    span.end = span.start + 1_500_000
    return span


def decoded(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return request


def value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value"))


def test_a_span_reads_back_field_for_field() -> None:
    span = Span(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x1234, 0x00F067AA0BA902B7, True, "POST /orders", SERVER, {})
    span.attributes.update({"http.route": "/orders", "http.response.status_code": 201, "ok": False, "ratio": 0.5})
    span.end = span.start + 2_000_000
    span.events.append((span.start + 10, "try failed", {"error.type": "TimeoutError"}))
    span.links.append((0xABC, 0xDEF, {"oms.link": "order"}))
    span.error = "card_declined ✓"
    span.remote_parent = True
    request = decoded(otlp.request({"service.name": "oms-order", "deployment": "eu-1"}, "oms", [span]))

    [resource_spans] = request.resource_spans
    resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
    assert resource == {"service.name": "oms-order", "deployment": "eu-1"}
    [scope_spans] = resource_spans.scope_spans
    assert scope_spans.scope.name == "oms"
    [read] = scope_spans.spans
    assert read.trace_id == (0x4BF92F3577B34DA6A3CE929D0E0E4736).to_bytes(16, "big")
    assert read.span_id == (0x1234).to_bytes(8, "big")
    assert read.parent_span_id == (0x00F067AA0BA902B7).to_bytes(8, "big")
    assert read.name == "POST /orders" and read.kind == ProtoSpan.SPAN_KIND_SERVER
    assert (read.start_time_unix_nano, read.end_time_unix_nano) == (span.start, span.end)
    assert {a.key: value(a.value) for a in read.attributes} == span.attributes
    [event] = read.events
    assert (event.time_unix_nano, event.name) == (span.start + 10, "try failed")
    assert {a.key: value(a.value) for a in event.attributes} == {"error.type": "TimeoutError"}
    [link] = read.links
    assert (link.trace_id, link.span_id) == ((0xABC).to_bytes(16, "big"), (0xDEF).to_bytes(8, "big"))
    assert {a.key: value(a.value) for a in link.attributes} == {"oms.link": "order"}
    assert (read.status.code, read.status.message) == (Status.STATUS_CODE_ERROR, "card_declined ✓")
    assert read.flags == 0x301  # sampled, and its parent was another process's (W3C flags, is_remote)


def test_a_root_span_has_no_parent_and_an_unset_status() -> None:
    [read] = decoded(otlp.request({}, "oms", [made()])).resource_spans[0].scope_spans[0].spans
    assert read.parent_span_id == b"" and not read.HasField("status") and read.flags == 0x101
    assert read.kind == ProtoSpan.SPAN_KIND_INTERNAL


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=40),
        st.one_of(st.text(max_size=300), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False)),
        max_size=8,
    ),
    st.text(max_size=200),
)
def test_any_attributes_and_names_read_back_as_written(attributes: dict[str, otlp.Value], name: str) -> None:
    [read] = decoded(otlp.request({}, "oms", [made(name, **attributes)])).resource_spans[0].scope_spans[0].spans
    assert read.name == name
    assert {a.key: value(a.value) for a in read.attributes} == attributes


def test_values_that_compare_equal_keep_their_own_types() -> None:
    spans = [made("a", x=True), made("b", x=1), made("c", x=1.0), made("d", x="1"), made("e", x=True)]
    read = decoded(otlp.request({}, "oms", spans)).resource_spans[0].scope_spans[0].spans
    assert [(s.attributes[0].value.WhichOneof("value"), value(s.attributes[0].value)) for s in read] == [
        ("bool_value", True), ("int_value", 1), ("double_value", 1.0), ("string_value", "1"), ("bool_value", True),
    ]  # fmt: skip


def test_many_spans_make_one_request_of_one_resource() -> None:
    spans = [made(f"step {n}") for n in range(300)]
    [resource_spans] = decoded(otlp.request({"service.name": "x"}, "oms", spans)).resource_spans
    assert [s.name for s in resource_spans.scope_spans[0].spans] == [f"step {n}" for n in range(300)]


# -- the standard variables ---------------------------------------------------------------------------


def test_the_exporters_variables() -> None:
    assert otlp.Options.from_environment({}).endpoint == "http://localhost:4318/v1/traces"
    assert otlp.Options.from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}).endpoint == (
        "http://c:4318/v1/traces"
    )
    options = otlp.Options.from_environment(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t:443/otlp/traces",  # taken as it is
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%20e,x-tenant=oms",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_BSP_SCHEDULE_DELAY": "250",
            "OTEL_BSP_MAX_QUEUE_SIZE": "100",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
        }
    )
    assert options == otlp.Options(
        endpoint="https://t:443/otlp/traces",
        headers={"api-key": "s e", "x-tenant": "oms"},
        timeout=2.5,
        gzip=True,
        delay=0.25,
        queue_size=100,
        batch_size=10,
    )


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
        {"OTEL_BSP_SCHEDULE_DELAY": "soon"},
    ],
)
def test_a_variable_that_cannot_be_read_is_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="OTEL_"):
        otlp.Options.from_environment(environ)


def test_the_resource_names_the_service_as_the_specification_says() -> None:
    assert otlp.resource_of("oms-order", {})["service.name"] == "oms-order"
    given = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=shop,deployment.environment=prod"}
    resource = otlp.resource_of("oms-order", given)
    assert (resource["service.name"], resource["deployment.environment"]) == ("shop", "prod")
    assert otlp.resource_of("oms-order", {**given, "OTEL_SERVICE_NAME": "orders"})["service.name"] == "orders"


# -- batches over a real socket -------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def batches(receiver: Receiver, **options: Any) -> otlp.Batches:
    settings = otlp.Options(endpoint=f"{receiver.url}/v1/traces", **{"delay": 0.05, **options})
    return otlp.Batches({"service.name": "oms-test"}, "oms", settings, console=None, otlp=True)


def wait(receiver: Receiver, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(receiver.received()) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_spans_reach_the_collector_in_batches_with_its_headers_gzipped(receiver: Receiver) -> None:
    sent = batches(receiver, batch_size=4, gzip=True, headers={"api-key": "secret"})
    for n in range(10):
        sent.add(made(f"step {n}"))
    wait(receiver, 10)
    sent.shutdown()
    assert sorted(s.name for s in receiver.received()) == sorted(f"step {n}" for n in range(10))
    assert {s.service for s in receiver.received()} == {"oms-test"}
    assert receiver.requests >= 3  # at most four a request
    assert all(h["api-key"] == "secret" and h["content-encoding"] == "gzip" for h in receiver.headers)


def test_a_collector_that_answers_503_is_tried_again(receiver: Receiver) -> None:
    receiver.refuse = 2
    sent = batches(receiver)
    sent.add(made("step 1"))
    wait(receiver, 1)
    sent.shutdown()
    assert [s.name for s in receiver.received()] == ["step 1"]
    assert len(receiver.headers) == 3


def test_what_is_left_is_sent_at_shutdown(receiver: Receiver) -> None:
    sent = batches(receiver, delay=60)  # the thread would not send them for a minute
    for n in range(3):
        sent.add(made(f"late {n}"))
    sent.shutdown()
    assert sorted(s.name for s in receiver.received()) == ["late 0", "late 1", "late 2"]


def test_a_full_queue_drops_the_newest_and_counts_them() -> None:
    settings = otlp.Options(endpoint="http://127.0.0.1:9/v1/traces", delay=60, queue_size=3, batch_size=100)
    held = otlp.Batches({}, "oms", settings, console=None, otlp=False)
    for n in range(5):
        held.add(made(f"s{n}"))
    waiting = decoded(otlp.envelope({}, "oms", list(held.queue))).resource_spans[0].scope_spans[0].spans
    assert [s.name for s in waiting] == ["s0", "s1", "s2"] and held.dropped == 2
    held.shutdown()


def test_console_and_otlp_together_each_get_every_span(receiver: Receiver) -> None:
    out = io.StringIO()
    settings = otlp.Options(endpoint=f"{receiver.url}/v1/traces", delay=0.05)
    both = otlp.Batches({"service.name": "oms-test"}, "oms", settings, console=otlp.Console(out), otlp=True)
    for n in range(3):
        both.add(made(f"step {n}"))
    wait(receiver, 3)
    both.shutdown()
    assert sorted(s.name for s in receiver.received()) == ["step 0", "step 1", "step 2"]
    assert sorted(json.loads(line)["name"] for line in out.getvalue().splitlines()) == ["step 0", "step 1", "step 2"]


def test_an_unreachable_collector_loses_spans_not_the_service() -> None:
    settings = otlp.Options(endpoint="http://127.0.0.1:9/v1/traces", timeout=0.2)
    assert otlp.Sender(settings).send(b"") is False  # port 9: nothing listens; logged, not raised


def test_the_console_exporter_prints_a_line_of_json_a_span() -> None:
    out = io.StringIO()
    otlp.Console(out).export({"service.name": "oms-order"}, "oms", [made("step a"), made("step b")])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["name"], line["resource"]["service.name"]) for line in lines] == [
        ("step a", "oms-order"),
        ("step b", "oms-order"),
    ]
    assert lines[0]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" and lines[0]["parent_id"] is None
