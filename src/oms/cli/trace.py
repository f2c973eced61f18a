"""``oms trace ORDER_ID``: an order's trace as a tree in the terminal, with no tracing server.

The recipe: start the system with ``OTEL_TRACES_EXPORTER=console oms up``. Each service then writes
each span as a line of JSON on its standard output, which ``oms up`` keeps in ``DATA_DIR/SERVICE.log``;
this command asks OrderService for the order's trace id and reads the three logs for its spans: the
order's request and saga steps, the calls to the other two services and their own server spans,
and the sagas run later for the order (recovery, reconcile, cancel), which link to its trace."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

NAMES = ("order", "inventory", "payment")
RECIPE = "start the system with OTEL_TRACES_EXPORTER=console oms up, then place an order"


def spans_in(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every span line of the console exporter in the files (the other lines are log lines)."""
    found = []
    for path in paths:
        if not path.exists():
            continue
        with path.open(errors="replace") as file:
            for line in file:
                if not line.startswith('{"name"'):
                    continue
                try:
                    span = json.loads(line)
                except ValueError:
                    continue
                if isinstance(span, dict) and "span_id" in span and "start_time_unix_nano" in span:
                    found.append(span)
    return found


def of_trace(spans: list[dict[str, Any]], trace_id: str) -> list[dict[str, Any]]:
    """The trace's spans, and the traces that link to it (a saga run later for the order) whole."""
    linked = {s["trace_id"] for s in spans if any(link["trace_id"] == trace_id for link in s.get("links", ()))}
    return [s for s in spans if s["trace_id"] == trace_id or s["trace_id"] in linked]


def tree(trace_id: str, spans: list[dict[str, Any]]) -> Tree:
    """The spans as a tree, children in the order they began, each with its service, duration and
    outcome; a trace linked to the order's is a branch of its own."""
    top = Tree(Text.assemble(("trace ", "bold"), trace_id))
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in sorted(spans, key=lambda s: s["start_time_unix_nano"]):
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children[parent].append(span)

    def add(branch: Tree, span: dict[str, Any]) -> None:
        took = (span["end_time_unix_nano"] - span["start_time_unix_nano"]) / 1e6
        service = str(span.get("resource", {}).get("service.name", "?"))
        label = Text.assemble(
            (span["name"], "bold red" if span["status"] == "ERROR" else "bold"), "  ", (service, "cyan"),
            "  ", f"{took:.1f} ms",
            *((("  " + _outcome(span)), "dim"),) if _outcome(span) else (),
        )  # fmt: skip
        if span["trace_id"] != trace_id and branch is top:  # the root of a trace linked to the order's
            label = Text.assemble(("linked trace ", "yellow"), span["trace_id"], "  ", label)
        node = branch.add(label)
        for child in children.get(span["span_id"], []):
            add(node, child)

    for root in children.get(None, []):
        add(top, root)
    return top


def _outcome(span: dict[str, Any]) -> str:
    attributes = span.get("attributes", {})
    outcome = attributes.get("oms.outcome")
    reason = attributes.get("oms.reason")
    status = attributes.get("http.response.status_code")
    parts = [str(p) for p in (outcome, reason) if p] or ([f"HTTP {status}"] if status else [])
    return " ".join(parts)


def show(console: Console, order: dict[str, Any], data_dir: Path) -> int:
    trace_id = order.get("trace_id")
    if not trace_id:
        console.print(f"[yellow]{order['id']} has no trace[/yellow]: tracing was off when it was placed ({RECIPE})")
        return 1
    paths = [data_dir / f"{name}.log" for name in NAMES]
    spans = of_trace(spans_in(paths), str(trace_id))
    if not spans:
        console.print(
            f"[yellow]no span of trace {trace_id} in {data_dir.resolve()}/{{{','.join(NAMES)}}}.log[/yellow]: the "
            f"services write spans there when {RECIPE}; an exporter to a tracing server keeps them there instead"
        )
        return 1
    console.print(tree(str(trace_id), spans))
    return 0
