"""The order's sagas, read from its saga log: where each ran from and to, and how it is drawn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oms.orders.diagram.notation import CLIENT, ORDERS, Activation, Diagram, Pen, Section, message
from oms.orders.diagram.steps import Row, detail_of, span, step, undo, waited
from oms.orders.saga import CANCEL, CHECK, ORDER, PAY, RECONCILE, OrderStatus, status_for
from oms.orders.views import FALLBACK
from oms.saga.engine import SagaEnd, SagaStatus

_LAST_STEP = {ORDER: PAY, RECONCILE: "reserve_deferred", CANCEL: "release_stock"}
_NAMES = {ORDER: "Order Saga", RECONCILE: "Reconcile Saga", CANCEL: "Cancel Saga"}


@dataclass
class _Run:
    """One saga of the order, from its start (or from where it was driven on again) to its end."""

    saga: str
    rows: list[Row]
    resumed: bool


def _runs(log: Sequence[Row]) -> list[_Run]:
    runs: list[_Run] = []
    for row in log:
        saga = str(row.get("saga") or ORDER)
        last = runs[-1] if runs else None
        if last is not None and last.saga == saga and not _again(last.rows, row):
            last.rows.append(row)
        else:
            runs.append(_Run(saga, [row], resumed=any(run.saga == saga for run in runs)))
    return runs


def _again(rows: Sequence[Row], row: Row) -> bool:
    """``row`` starts the saga over from its log: a step asked again, or compensations tried anew."""
    same = any(r.get("kind") == row.get("kind") and r.get("name") == row.get("name") for r in rows)
    if row.get("kind") == "step":
        return same or any(r.get("kind") == "compensation" for r in rows)
    return same and int(row.get("attempt") or 1) == 1


def _end(run: _Run, earlier: Sequence[Row], last: bool, order: Mapping[str, Any]) -> SagaEnd | None:
    """Where the run left its saga, read from its rows (None: not at an end, or still under way)."""
    failed = next(
        (r for r in (*earlier, *run.rows) if r.get("kind") == "step" and r.get("outcome") in ("failed", "uncertain")),
        None,
    )
    final = run.rows[-1]
    if failed is None:
        if final.get("kind") == "step" and final.get("outcome") == "unknown":
            return SagaEnd(SagaStatus.WAITING, final.get("name"), final.get("reason"))
        if final.get("outcome") in ("done", "skipped") and final.get("name") == _LAST_STEP.get(run.saga):
            return SagaEnd(SagaStatus.COMPLETED)
        return None
    undone = [r for r in run.rows if r.get("kind") == "compensation"]
    if undone and undone[-1].get("outcome") not in ("done", "skipped"):
        if not last or order.get("status") == OrderStatus.COMPENSATION_FAILED:
            return SagaEnd(SagaStatus.COMPENSATION_FAILED, undone[-1].get("name"), undone[-1].get("reason"))
        return None  # tried again after a pause, until it succeeds or gives up
    if last and order.get("saga_status") == "running":
        return None  # compensations still to run
    return SagaEnd(SagaStatus.COMPENSATED, failed.get("name"), failed.get("reason"))


def _on_fallback(rows: Sequence[Row]) -> bool:
    for row in rows:
        if row.get("name") == CHECK and row.get("kind") == "step":
            detail = detail_of(row)
            reason = str(row.get("reason") or "")
            return "fallback" in detail or "live" in detail or reason.startswith("fallback:") or reason == FALLBACK
    return False


def _ending(end: SagaEnd | None) -> str | None:
    """Why the saga ended where it did (nothing to say when it completed)."""
    if end is None or end.status is SagaStatus.COMPLETED:
        return None
    return f"waiting on {end.reason}" if end.status is SagaStatus.WAITING else end.reason


def _title(run: _Run, end: SagaEnd | None, status: str, fallback: bool) -> str:
    ending = (status, _ending(end)) if end is not None else ("under way",)
    if run.saga != ORDER or run.resumed:
        return message(_NAMES.get(run.saga, f"{run.saga} saga") + (" Resumed" if run.resumed else ""), *ending)
    if fallback:
        return (
            "Circuit Breaker Scenario" if status == OrderStatus.PLACED else message("Circuit Breaker Scenario", *ending)
        )
    if status == OrderStatus.PLACED:
        return "Successful Order Flow"
    if status == OrderStatus.PAYMENT_FAILED:
        return "Failure Handling with Compensating Transactions"
    if any(r.get("kind") == "compensation" for r in run.rows):
        return message("Failure Handling with Compensating Transactions", *ending)
    return message("Order Saga", *ending)


def _order_reply(end: SagaEnd | None, status: str, fallback: bool) -> tuple[str, str | None]:
    reason = end.reason if end is not None else None
    if status == OrderStatus.PLACED:
        return ("Order Placed (with fallback inventory check)" if fallback else "Order Placed Successfully"), None
    replies: dict[str, tuple[str, str | None]] = {
        OrderStatus.PAYMENT_FAILED: ("Order Failed (Payment Issue)", reason),
        OrderStatus.OUT_OF_STOCK: ("Order Failed (Out of Stock)", None),
        OrderStatus.REJECTED: ("Order Failed (Rejected)", reason),
        OrderStatus.COMPENSATION_FAILED: ("Order Failed (Compensation Failed)", reason),
        OrderStatus.PENDING: ("Order Pending", reason),
    }
    return replies.get(status, (f"Order {status}", reason))


def _draw(pen: Pen, run: _Run, earlier: Sequence[Row], last: bool, order: Mapping[str, Any]) -> SagaEnd | None:
    """Draw ``run`` as a section of its own; the end it reached."""
    end = _end(run, earlier, last, order)
    status = status_for(end, run.saga)
    fallback = run.saga == ORDER and _on_fallback([*earlier, *run.rows])
    pen.lines.append(Section(_title(run, end, status, fallback)))
    asked = not run.resumed and run.saga in (ORDER, CANCEL)  # a client's request started it
    if asked and run.saga == ORDER:
        failure = end is not None and end.status in (SagaStatus.COMPENSATED, SagaStatus.COMPENSATION_FAILED)
        place = "Place Order (with failure scenario)" if failure else "Place Order"
        pen.send(CLIENT, ORDERS, place, _lines(order))
    elif asked:
        pen.send(CLIENT, ORDERS, "Cancel Order")
    pen.lines.append(Activation(ORDERS, True))
    if asked and run.saga == ORDER:
        pen.own("Create Order (PENDING)")
    elif run.resumed:
        pen.note(ORDERS, "Driven on from its saga log, by recovery or by oms order retry")
    elif run.saga == RECONCILE:
        pen.note(ORDERS, "Started by OrderService: the reservation the fallback deferred")
    groups = _groups(run.rows)
    for index, group in enumerate(groups):
        row = group[0]
        if row.get("kind") == "compensation":
            gave_up = end is not None and end.status is SagaStatus.COMPENSATION_FAILED and index == len(groups) - 1
            undo(pen, group, gave_up)
            continue
        step(pen, run.saga, row)
        if row.get("outcome") == "unknown":
            waited(pen, row)
    if end is None:
        pen.note(ORDERS, "Under way" if last else "Stopped here; driven on again below")
    else:
        held = "reservation held" if run.saga == RECONCILE and end.status is SagaStatus.COMPLETED else None
        took = span(run.rows)
        pen.own(f"Update Order Status ({status})", _ending(end), held, f"saga took {took}" if took else None)
        if asked and run.saga == ORDER:
            pen.answer(ORDERS, CLIENT, *_order_reply(end, status, fallback))
        elif asked:
            pen.answer(
                ORDERS,
                CLIENT,
                *(("Order Cancelled", None) if status != OrderStatus.PLACED else ("Cancel Pending", end.reason)),
            )
    pen.lines.append(Activation(ORDERS, False))
    return end


def _groups(rows: Sequence[Row]) -> list[list[Row]]:
    """The rows, each step alone and each compensation's consecutive attempts together."""
    groups: list[list[Row]] = []
    for row in rows:
        previous = groups[-1][-1] if groups else None
        if (
            previous is not None
            and row.get("kind") == "compensation"
            and previous.get("kind") == "compensation"
            and previous.get("name") == row.get("name")
        ):
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _lines(order: Mapping[str, Any]) -> str:
    return ", ".join(f"{item.get('sku')}:{item.get('quantity')}" for item in order.get("items") or ())


def sequence(order: Mapping[str, Any]) -> Diagram:
    """The order's sagas, from its saga log, as lines of a sequence diagram."""
    pen = Pen()
    log: Sequence[Row] = order.get("saga") or ()
    runs = _runs(log)
    if not runs or runs[0].saga != ORDER:
        # No row of the order saga yet (its first rows are written together with the payment's).
        pen.lines.append(Section(message("Order Saga", "under way")))
        pen.send(CLIENT, ORDERS, "Place Order", _lines(order))
        pen.lines.append(Activation(ORDERS, True))
        pen.own("Create Order (PENDING)")
        pen.note(ORDERS, "No step on record yet")
        pen.lines.append(Activation(ORDERS, False))
    end: SagaEnd | None = None
    for index, run in enumerate(runs):
        earlier = [row for other in runs[:index] if other.saga == run.saga for row in other.rows]
        end = _draw(pen, run, earlier, index == len(runs) - 1, order)
    waiting = order.get("saga_status") in ("running", "waiting") and order.get("pending_reason")
    if waiting and end is not None and end.status is not SagaStatus.WAITING:
        # The last saga is over and the next has not written a row yet (reconcile, after a fallback).
        waits = order["pending_reason"]
        next_saga = "the reconcile saga, to make the deferred reservation" if waits == "reservation_deferred" else None
        pen.note(ORDERS, f"Still to come: {next_saga or f'a saga waiting on {waits}'}")
    title = f"Order {order.get('id')} ({order.get('status')}) - Saga Sequence Diagram"
    return Diagram(title, tuple(pen.lines))
