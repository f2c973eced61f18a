"""OrderService: takes orders, stores them PENDING, and drives each one's saga."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from oms.db import IntegrityError
from oms.orders.ports import CallError, InventoryPort, Refused
from oms.orders.repository import OrderRepository, SqlCatalog
from oms.saga.engine import SagaDefinition, SagaEngine

log = structlog.get_logger("oms.orders")


class UnknownSkus(Exception):
    def __init__(self, skus: Sequence[str]) -> None:
        super().__init__(", ".join(skus))
        self.skus = list(skus)


class KeyReused(Exception):
    """The idempotency key was used for another request body."""


@dataclass(frozen=True)
class PlaceOrder:
    customer_id: str
    payment_method: str
    lines: list[tuple[str, int]]

    def fingerprint(self) -> str:
        canonical = orjson.dumps(
            {"customer_id": self.customer_id, "payment_method": self.payment_method, "lines": self.lines}
        )
        return hashlib.sha256(canonical).hexdigest()


def new_order_id() -> str:
    # Time first, so ids sort by creation; 48 random bits make a clash within a millisecond unlikely.
    return f"ord_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


class OrderService:
    def __init__(
        self,
        *,
        repository: OrderRepository,
        catalog: SqlCatalog,
        engine: SagaEngine,
        saga: SagaDefinition,
        inventory: InventoryPort,
        wait: float,
    ) -> None:
        self.repository = repository
        self.catalog = catalog
        self.engine = engine
        self.saga = saga
        self.inventory = inventory
        self.wait = wait
        self.known_skus: set[str] = set()
        self.running: dict[str, asyncio.Task[Any]] = {}

    async def start(self) -> None:
        self.known_skus = await self.catalog.skus()

    async def place(self, request: PlaceOrder, idempotency_key: str | None) -> tuple[dict[str, Any], bool]:
        """Run the order's saga and answer with the order once it ends (or after ``wait`` seconds).

        True with a new order; False with the order this idempotency key created before."""
        fingerprint = request.fingerprint()
        if idempotency_key is not None:
            replay = await self._replay(idempotency_key, fingerprint)
            if replay is not None:
                return replay, False
        await self._refuse_unknown_skus([sku for sku, _ in request.lines])
        order_id = new_order_id()
        try:
            await self.repository.create(
                order_id=order_id,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
                customer_id=request.customer_id,
                payment_method=request.payment_method,
                lines=request.lines,
            )
        except IntegrityError:
            assert idempotency_key is not None  # ids are unique; only the key can clash
            replay = await self._replay(idempotency_key, fingerprint)
            assert replay is not None
            return replay, False
        context: dict[str, Any] = {
            "order_id": order_id,
            "lines": request.lines,
            "payment_method": request.payment_method,
        }
        task = asyncio.create_task(self.engine.run(self.saga, order_id, context))
        self.running[order_id] = task
        task.add_done_callback(lambda _t: self.running.pop(order_id, None))
        await self._wait_for(order_id)
        order = await self.repository.get(order_id)
        assert order is not None
        return order, True

    async def _replay(self, key: str, fingerprint: str) -> dict[str, Any] | None:
        row = await self.repository.by_key(key)
        if row is None:
            return None
        if row["request_hash"] != fingerprint:
            raise KeyReused(key)
        await self._wait_for(row["id"])
        return await self.repository.get(row["id"])

    async def _wait_for(self, order_id: str) -> None:
        task = self.running.get(order_id)
        if task is not None:
            # shield: a client that hangs up does not stop the saga.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self.wait)

    async def _refuse_unknown_skus(self, skus: Sequence[str]) -> None:
        """An unknown SKU is bad input, refused before anything is stored, when InventoryService can say so."""
        unknown = []
        for sku in skus:
            if sku in self.known_skus:
                continue
            try:
                item = await self.inventory.get_item(sku)
            except (CallError, Refused):
                return  # cannot tell now: the saga decides, on fallback data if need be
            if item is None:
                unknown.append(sku)
            else:
                self.known_skus.add(sku)
                await self.catalog.remember([item])
        if unknown:
            raise UnknownSkus(unknown)

    async def sync_catalog(self) -> int:
        items = await self.inventory.list_items()
        await self.catalog.remember(items)
        self.known_skus.update(item.sku for item in items)
        return len(items)

    async def sync_forever(self, interval: float) -> None:
        while True:
            try:
                count = await self.sync_catalog()
                log.debug("catalog synced", items=count)
            except (CallError, Refused) as exc:
                log.info("catalog sync skipped", reason=str(exc))
            await asyncio.sleep(interval)

    async def drain(self, grace: float) -> None:
        """On shutdown: let running sagas finish for a while; what is left stays PENDING in the log."""
        tasks = list(self.running.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
