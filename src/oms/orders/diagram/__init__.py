"""An order's saga log drawn as a sequence diagram: in the notation of the specification,
``docs/spec/order-saga.txt`` (sequencediagram.org, WebSequenceDiagrams), or as Mermaid.

:func:`sequence` turns an order as ``GET /orders/{id}`` shows it, saga log included, into a
:class:`Diagram` (a pure function of the order; ``sagas.py`` reads the log into sagas, ``steps.py``
each row into calls); :func:`to_text` and :func:`to_mermaid` write it (``notation.py``).

The layout, which the tests hold it to:

- The participants are ``Client``, ``OrderService``, ``InventoryService``, ``PaymentService``.
- Each saga of the order is a section headed ``note over OrderService, PaymentService: TITLE``,
  as the specification heads its flows: the order saga first, then each later one in the order it
  ran (reconcile, cancel, a saga driven on again from its log by a retry or by recovery). No other
  note spans exactly those two participants.
- A call is drawn as the specification draws one: ``A->B: request``, ``activate B``,
  ``B-->A: reply``, ``deactivate B``; OrderService's own work is ``OrderService->OrderService``.
- A message starts with the specification's words for it (``Check Inventory``, ``Payment
  Failed``, ``Update Order Status (PLACED)``). What the diagram adds (durations, reasons, SKUs)
  follows `` · ``, so an arrow compares with the specification's by its source, kind (``->`` or
  ``-->``), target, and its words before the first `` · `` (:attr:`Arrow.words`).
- The first section has the specification's title when its flow is one of the three:
  ``Successful Order Flow``, ``Failure Handling with Compensating Transactions`` (a live order
  whose payment failed) and ``Circuit Breaker Scenario`` (an order placed on fallback data); any
  other ending follows after `` · `` (``Order Saga · OUT_OF_STOCK``).
- What the specification does not show is drawn too: a skipped step, a call's tries, a timeout
  and the query that settled it, an outcome still unknown, a compensation's attempts (notes), and
  the calls made to settle an outcome (arrows of their own).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oms.orders.diagram.notation import (
    PARTICIPANTS,
    SEPARATOR,
    Activation,
    Arrow,
    Diagram,
    Line,
    Note,
    Section,
    to_mermaid,
    to_text,
)
from oms.orders.diagram.sagas import sequence
from oms.orders.diagram.svg import to_svg

FORMATS = ("mermaid", "svg")
"""The ``format`` values besides the default, the specification's notation."""

__all__ = [
    "FORMATS",
    "PARTICIPANTS",
    "SEPARATOR",
    "Activation",
    "Arrow",
    "Diagram",
    "Line",
    "Note",
    "Section",
    "render",
    "sequence",
    "to_mermaid",
    "to_svg",
    "to_text",
]


def render(order: Mapping[str, Any], format: str | None = None) -> str:
    """The order's diagram in the specification's notation, or with ``format="mermaid"`` Mermaid's, or
    with ``format="svg"`` drawn as an SVG document."""
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown diagram format {format!r}")
    diagram = sequence(order)
    if format == "svg":
        return to_svg(diagram)
    return to_mermaid(diagram) if format == "mermaid" else to_text(diagram)
