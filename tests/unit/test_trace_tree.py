"""``oms trace``'s pure part: span lines found among log lines, the order's trace with the traces that
link to it, and what it says when there is nothing to draw."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from oms.cli.trace import of_trace, show, spans_in

ORDER_TRACE = "a" * 32


def span(
    name: str, trace_id: str, span_id: str, parent: str | None = None, links: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "name": name, "trace_id": trace_id, "span_id": span_id, "parent_id": parent, "kind": "INTERNAL",
        "start_time_unix_nano": int(span_id, 16), "end_time_unix_nano": int(span_id, 16) + 2_000_000,
        "status": "UNSET", "attributes": {}, "events": [],
        "links": [{"trace_id": t, "span_id": "1" * 16, "attributes": {}} for t in links],
        "resource": {"service.name": "oms-order"},
    }  # fmt: skip


def test_span_lines_are_found_among_log_lines_and_linked_traces_come_with_the_order(tmp_path: Path) -> None:
    lines = [
        "2026-12-06T10:00:00Z [info     ] Application startup complete.",
        json.dumps(span("POST /orders", ORDER_TRACE, "0" * 15 + "1")),
        '{"name": "not a span"}',
        json.dumps(span("saga reconcile", "b" * 32, "0" * 15 + "5", links=(ORDER_TRACE,))),
        json.dumps(span("step check_stock", "b" * 32, "0" * 15 + "6", parent="0" * 15 + "5")),
        json.dumps(span("POST /orders", "c" * 32, "0" * 15 + "7")),  # another order's
    ]
    (tmp_path / "order.log").write_text("\n".join(lines) + "\n")
    found = spans_in([tmp_path / "order.log", tmp_path / "missing.log"])
    assert [s["name"] for s in found] == ["POST /orders", "saga reconcile", "step check_stock", "POST /orders"]
    assert [s["name"] for s in of_trace(found, ORDER_TRACE)] == ["POST /orders", "saga reconcile", "step check_stock"]

    console = Console(width=200, record=True)
    assert show(console, {"id": "ord_1", "trace_id": ORDER_TRACE}, tmp_path) == 0
    drawn = console.export_text().splitlines()
    assert drawn[0] == f"trace {ORDER_TRACE}"
    assert drawn[1].startswith("├── POST /orders  oms-order  2.0 ms")
    assert drawn[2].startswith(f"└── linked trace {'b' * 32}  saga reconcile")
    assert drawn[3].startswith("    └── step check_stock")


def test_an_order_without_a_trace_or_without_spans_is_said_so(tmp_path: Path) -> None:
    console = Console(width=300, record=True)
    assert show(console, {"id": "ord_1", "trace_id": None}, tmp_path) == 1
    assert show(console, {"id": "ord_2", "trace_id": ORDER_TRACE}, tmp_path) == 1
    said = console.export_text()
    assert "ord_1 has no trace: tracing was off when it was placed" in said
    assert f"no span of trace {ORDER_TRACE} in" in said and "OTEL_TRACES_EXPORTER=console oms up" in said
