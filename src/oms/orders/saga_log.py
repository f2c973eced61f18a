"""The saga engine's log for OrderService (``SagaLog``): each write of a saga is handed to the order
store with the order's new state, decided here by the domain (``saga.order_state``: its status, and
the hand-off to the reconcile saga), and the stock a step learnt for the fallback catalog, written
in the same transaction as the step's row."""

from __future__ import annotations

from collections.abc import Sequence

from oms.orders.ports import OrderStore
from oms.orders.saga import ORDER, OrderContext, order_state
from oms.saga.engine import LogEntry, SagaEnd


class OrderLog:
    """``SagaLog[OrderContext]`` over an ``OrderStore``."""

    def __init__(self, store: OrderStore) -> None:
        self.store = store

    async def record(
        self,
        saga_id: str,
        entry: LogEntry | None,
        context: OrderContext,
        end: SagaEnd | None,
        *,
        earlier: Sequence[LogEntry] = (),
    ) -> None:
        learnt = context.get("catalog_update", ())
        await self.store.record(
            saga_id,
            context.get("saga", ORDER),
            entry,
            order_state(context, end),
            earlier=earlier,
            catalog=learnt,
        )
        if learnt:
            # Written once, with this row: the saga's later writes need not write it again.
            del context["catalog_update"]
