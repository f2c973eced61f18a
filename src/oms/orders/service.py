"""OrderService: takes orders, stores them PENDING, and drives each one's saga.

It knows its store and its catalog by their ports (``OrderStore``, ``CatalogPort``), never by
their tables: what a saga write makes of the order is decided in ``saga.py``, written through
``saga_log.OrderLog``."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from oms.edge.paging import Page
from oms.errors import CallFailure, Fault
from oms.fields import MAX_AMOUNT
from oms.ids import sortable_id
from oms.orders.errors import Busy, KeyReused, NotCancellable, NothingToRetry, Overloaded, TooLarge, UnknownSkus
from oms.orders.ports import CatalogPort, InventoryPort, Item, OrderStore
from oms.orders.saga import CANCEL, ORDER, OrderContext, OrderStatus
from oms.saga.engine import Action, SagaDefinition, SagaEnd, SagaEngine, Step, StepResult
from oms.utc import utc_after, utc_now

if TYPE_CHECKING:
    from oms.telemetry.spans import Tracing

log = structlog.get_logger("oms.orders")


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
    return sortable_id("ord_")


def _named(name: str, action: Action[OrderContext]) -> Action[OrderContext]:
    async def named(context: OrderContext) -> StepResult:
        with structlog.contextvars.bound_contextvars(step=name):
            return await action(context)

    return named


def _naming_steps(definition: SagaDefinition[OrderContext]) -> SagaDefinition[OrderContext]:
    """``definition`` whose steps and compensations bind their name as ``step`` on the log lines
    written while they run (the engine stays free of logging)."""

    def naming(step: Step[OrderContext]) -> Step[OrderContext]:
        return replace(
            step,
            action=_named(step.name, step.action),
            compensation=step.compensation and _named(step.undo_name, step.compensation),
            recover=step.recover and _named(step.name, step.recover),
        )

    return replace(
        definition,
        steps=tuple(naming(step) for step in definition.steps),
        given=tuple(naming(step) for step in definition.given),
    )


class OrderService:
    def __init__(
        self,
        *,
        orders: OrderStore,
        catalog: CatalogPort,
        engine: SagaEngine,
        sagas: dict[str, SagaDefinition[OrderContext]],
        inventory: InventoryPort,
        wait: float,
        lease_ttl: float,
        max_in_flight: int,
        key_ttl: float,
        instance: str = "",
        paused: Callable[[str], bool] = lambda saga: False,
        tracing: Tracing | None = None,
        release_waits: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        self.orders = orders
        self.catalog = catalog
        self.engine = engine
        self.sagas = {name: _naming_steps(definition) for name, definition in sagas.items()}
        self.inventory = inventory
        self.wait = wait
        self.lease_ttl = lease_ttl
        self.paused = paused
        self.max_in_flight = max_in_flight
        """Sagas this process drives at once at most: past it, new orders are refused, not queued."""
        self.key_ttl = key_ttl
        """Seconds an idempotency key names its order; then it is forgotten."""
        """Whether recovery should leave the sagas of this name alone for now (their participant is
        known to be down: asking would only fail and write another row)."""
        # The instance (host and port) comes first: only one live process can listen there, so a
        # process that starts on it knows the leases its predecessor there held are dead.
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self.owner = f"{self.instance}/{os.getpid()}:{secrets.token_hex(3)}"
        self.prices: dict[str, int] = {}
        """Last known unit price of every SKU known to exist (from the catalog, its syncs and
        InventoryService's answers): an order is refused on it before anything is stored."""
        self.running: dict[str, asyncio.Task[Any]] = {}
        """The sagas this process drives now: only their leases are renewed."""
        self.releasing: dict[str, asyncio.Task[None]] = {}
        """Sagas this process stopped driving on a failure (a write the database did not take):
        their leases are being let go, so that recovery drives them on from their logs (``_release``)."""
        self._claiming: set[str] = set()
        self._starting = 0
        """New orders between the saga cap's check and their saga's start: each holds a slot."""
        self.release_waits = release_waits
        """Seconds between two tries to let go of a lease while the database does not answer: the
        first pause, doubling up to the second."""
        self.tracing = tracing
        """Spans, when tracing is on: a new order keeps its request's span (``trace_context``), and a
        saga driven outside that request gets a span of its own, linked to it (``_traced``)."""

    async def start(self) -> None:
        self.prices = await self.catalog.prices()
        await self.catalog.held()
        freed = await self.orders.free_leases_of(self.instance + "/")
        if freed:
            log.info("taking over the sagas of this instance's previous process", count=freed)

    async def place(
        self, request: PlaceOrder, idempotency_key: str | None, *, wait: bool = True
    ) -> tuple[dict[str, Any], bool]:
        """Run the order's saga and answer with the order once it ends (or after ``self.wait``
        seconds); with ``wait=False``, as soon as the order is stored PENDING and its saga started.

        True with a new order; False with the order this idempotency key created before."""
        fingerprint = request.fingerprint()
        if idempotency_key is not None:
            replay = await self._replay(idempotency_key, fingerprint, wait)
            if replay is not None:
                return replay, False
        in_flight = len(self.running) + self._starting
        if in_flight >= self.max_in_flight:
            raise Overloaded(in_flight)
        # The saga's slot is taken before the first await and given back on every way out (or
        # handed to self.running by _drive): a burst never gets past the cap.
        self._starting += 1
        try:
            # Bad input is refused before anything is stored; the only calls that may come first are
            # reads (docs/failures.md, "When a process dies"): a crash here leaves nothing behind.
            await self._refuse_unknown_skus([sku for sku, _ in request.lines])
            await self._refuse_unchargeable(request.lines)
            order_id = new_order_id()
            try:
                created = await self.orders.create(
                    owner=self.owner,
                    lease_until=utc_after(self.lease_ttl),
                    order_id=order_id,
                    idempotency_key=idempotency_key,
                    request_hash=fingerprint,
                    customer_id=request.customer_id,
                    payment_method=request.payment_method,
                    lines=request.lines,
                    watch=wait,
                    trace_context=self.tracing.current() if self.tracing is not None else None,
                )
            except Exception:
                # The order may have been stored all the same (a commit whose answer was lost), leased
                # to this process: let it go, so recovery drives it (a retry with the key finds it).
                self._release(order_id)
                raise
            if not created:  # the key was taken meanwhile, by a request with the same key
                assert idempotency_key is not None
                replay = await self._replay(idempotency_key, fingerprint, wait)
                assert replay is not None
                return replay, False
            context: OrderContext = {
                "saga": ORDER,
                "order_id": order_id,
                "lines": request.lines,
                "payment_method": request.payment_method,
            }
            self._drive(order_id, ORDER, self.engine.run(self.sagas[ORDER], order_id, context))
        finally:
            self._starting -= 1
        if wait:
            try:
                await self._wait_for(order_id)
            finally:
                order = self.orders.take_watched(order_id)
        else:
            order = await self.orders.get(order_id)
        assert order is not None
        return order, True

    def _drive(self, order_id: str, name: str, saga: Coroutine[Any, Any, SagaEnd]) -> None:
        async def drive() -> bool:
            # On every log line of the saga (the task has a context of its own: nothing to unbind).
            structlog.contextvars.bind_contextvars(order_id=order_id, saga=name)
            try:
                result = await saga
            except Fault as exc:
                # A write the database did not take (it is down, full, read-only...): what was
                # written stands, what was not may have happened. The saga stops here, as at a
                # crash, and recovery drives it on from its log once the database answers.
                log.warning("saga stopped: a write failed; recovery drives it on", order_id=order_id, error=str(exc))
                return False
            except Exception:
                log.exception("saga stopped; recovery drives it on", order_id=order_id)  # a bug: its traceback
                return False
            log.debug("saga ended", order_id=order_id, status=result.status.value)
            return True

        def done(task: asyncio.Task[bool]) -> None:
            if self.running.get(order_id) is task:
                del self.running[order_id]
            # Cancelled: the process is stopping; its leases lapse, or its successor frees them.
            if not task.cancelled() and task.exception() is None and not task.result():
                self._release(order_id)

        task = asyncio.create_task(drive())
        self.running[order_id] = task
        task.add_done_callback(done)

    def _release(self, order_id: str) -> None:
        """Let go of the lease of a saga this process no longer drives, at once and with backoff
        while the database does not answer: recovery (this process's or another replica's) then
        drives it on from its log. A lease let go of by nobody lapses within ``lease_ttl`` all the
        same, since a process renews only the leases of the sagas it is driving."""
        if order_id in self.releasing:
            return

        async def release() -> None:
            loop = asyncio.get_running_loop()
            give_up = loop.time() + self.lease_ttl  # then the lease has lapsed by itself
            wait, longest = self.release_waits
            while True:
                try:
                    await self.orders.let_go(order_id, self.owner)
                    return
                except Exception as exc:
                    if loop.time() + wait > give_up:
                        log.info("lease left to lapse", order_id=order_id, error=str(exc))
                        return
                await asyncio.sleep(wait * (1 + secrets.randbelow(256) / 1024))
                wait = min(wait * 2, longest)

        task = asyncio.create_task(release())
        self.releasing[order_id] = task
        task.add_done_callback(lambda _t: self.releasing.pop(order_id, None))

    def _traced(
        self, saga: Coroutine[Any, Any, SagaEnd], context: OrderContext, started_by: str
    ) -> Coroutine[Any, Any, SagaEnd]:
        """``saga``, in a span of its own linked to the order's trace when tracing is on: a saga
        driven outside the request that placed the order (recovery, reconcile, cancel, retry)."""
        if self.tracing is None:
            return saga
        tracing, name, order_id = self.tracing, context["saga"], context["order_id"]

        async def traced() -> SagaEnd:
            with tracing.saga(name, order_id, context.get("trace_context"), started_by):
                return await saga

        return traced()

    async def _replay(self, key: str, fingerprint: str, wait: bool) -> dict[str, Any] | None:
        row = await self.orders.by_key(key)
        if row is None:
            return None
        if row["created_at"] < utc_after(-self.key_ttl):
            await self.orders.forget_key(row["id"], key)
            return None
        if row["request_hash"] != fingerprint:
            raise KeyReused(key)
        if wait:
            await self._wait_for(row["id"])
        return await self.orders.get(row["id"])

    async def recover(self, limit: int = 100) -> int:
        """Drive on every saga that is not over and that no live process holds. Returns how many."""
        started = 0
        skip = [name for name in self.sagas if self.paused(name)]
        for order_id in await self.orders.unfinished(now=utc_now(), limit=limit, skip=skip):
            if order_id not in self.running and await self._resume(order_id, ("running", "waiting")):
                started += 1
        return started

    async def retry(self, order_id: str) -> dict[str, Any] | None:
        """Try a COMPENSATION_FAILED saga's compensations again (or drive on a waiting one now)."""
        order = await self.orders.get(order_id, with_saga=False)
        if order is None:
            return None
        if order["status"] != OrderStatus.COMPENSATION_FAILED and order["saga_status"] not in ("waiting", "running"):
            raise NothingToRetry(order_id, order["status"])
        if order_id not in self.running:
            log.info("retry asked for", order_id=order_id, status=order["status"])
            await self._resume(order_id, ("compensation_failed", "waiting", "running"))
        await self._wait_for(order_id)
        return await self.orders.get(order_id)

    async def _resume(self, order_id: str, statuses: tuple[str, ...]) -> bool:
        # One claim of a saga at a time in this process (recovery and a person's retry may race),
        # and none while its lease is being let go: that would free the lease of a saga driven again.
        if order_id in self.running or order_id in self._claiming or order_id in self.releasing:
            return False
        self._claiming.add(order_id)
        try:
            return await self._claim_and_drive(order_id, statuses)
        finally:
            self._claiming.discard(order_id)

    async def _claim_and_drive(self, order_id: str, statuses: tuple[str, ...]) -> bool:
        now = utc_now()
        until = utc_after(self.lease_ttl)
        # A lease held by another live process is respected, even when a person asked.
        try:
            claimed = await self.orders.claim(order_id, owner=self.owner, until=until, now=now, statuses=statuses)
            if not claimed:
                return False
            loaded = await self.orders.load_saga(order_id)
        except Exception:
            self._release(order_id)  # the claim may stand: not to be held by a saga nobody drives
            raise
        if loaded is None:
            return False
        context, logged = loaded
        log.info("resuming saga", order_id=order_id, saga=context["saga"])
        saga = context["saga"]
        self._drive(
            order_id,
            saga,
            self._traced(self.engine.resume(self.sagas[saga], order_id, context, logged), context, "recovery"),
        )
        return True

    async def get(self, order_id: str, *, customer_id: str | None = None) -> dict[str, Any] | None:
        """The order, or None when there is none (or, with ``customer_id``, none of that customer's)."""
        order = await self.orders.get(order_id)
        if order is None or (customer_id is not None and order["customer_id"] != customer_id):
            return None
        return order

    async def recent(
        self,
        *,
        status: str | None,
        limit: int,
        offset: int = 0,
        customer_id: str | None = None,
        after: Sequence[str] | None = None,
    ) -> Page[dict[str, Any]]:
        return await self.orders.recent(status=status, limit=limit, offset=offset, customer_id=customer_id, after=after)

    async def activity(
        self, *, since: str, customer_id: str | None = None
    ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """The dashboard's figures of the orders created since ``since`` (of one customer's, when
        given): see ``OrderStore.activity``."""
        return await self.orders.activity(since=since, customer_id=customer_id)

    async def cancel(self, order_id: str, *, customer_id: str | None = None) -> dict[str, Any] | None:
        """Refund a PLACED order and give its stock back, as a saga of its own; CANCELLED at its end.
        None when there is no such order (of this customer, when one is given)."""
        order = await self.orders.get(order_id, with_saga=False)
        if order is None or (customer_id is not None and order["customer_id"] != customer_id):
            return None
        if order["status"] != OrderStatus.PLACED:
            raise NotCancellable(order_id, order["status"])
        if order_id in self.running or order_id in self._claiming or order_id in self.releasing:
            raise Busy(order_id)
        now = utc_now()
        self._claiming.add(order_id)  # recovery's claim (it takes a lease that is ours) must wait
        try:
            if not await self.orders.begin(
                order_id, CANCEL, status=OrderStatus.PLACED, owner=self.owner, until=utc_after(self.lease_ttl), now=now
            ):
                raise Busy(order_id)
            loaded = await self.orders.load_saga(order_id)
        except Exception as exc:
            if not isinstance(exc, Busy):
                # The cancel saga may have begun: recovery drives it on, and the order ends CANCELLED.
                self._release(order_id)
            raise
        finally:
            self._claiming.discard(order_id)
        assert loaded is not None
        context, _ = loaded
        self._drive(
            order_id, CANCEL, self._traced(self.engine.run(self.sagas[CANCEL], order_id, context), context, "cancel")
        )
        await self._wait_for(order_id)
        return await self.orders.get(order_id)

    async def recover_forever(self, interval: float, batch: int = 500) -> None:
        while True:
            count = 0
            try:
                await self.orders.renew(self.owner, utc_after(self.lease_ttl), list(self.running))
                count = await self.recover(limit=batch)
                if count:
                    log.info("recovery resumed sagas", count=count)
            except Fault as exc:  # the database is away: said once a pass, without a traceback
                log.warning("recovery pass failed", error=str(exc))
            except Exception:
                log.exception("recovery pass failed")
            # A full batch means more are waiting (after a crash): take the next batch at once.
            await asyncio.sleep(0 if count >= batch else interval)

    async def _wait_for(self, order_id: str) -> None:
        task = self.running.get(order_id)
        if task is not None:
            # asyncio.wait neither cancels the saga at the time limit nor when the client hangs up.
            await asyncio.wait((task,), timeout=self.wait)

    async def _refuse_unknown_skus(self, skus: Sequence[str]) -> None:
        """An unknown SKU is bad input, refused before anything is stored, when InventoryService can say so."""
        unknown = []
        for sku in skus:
            if sku in self.prices:
                continue
            try:
                item = await self.inventory.get_item(sku)
            except CallFailure:
                return  # cannot tell now: the saga decides, on fallback data if need be
            if item is None:
                unknown.append(sku)
            else:
                await self.catalog.remember([item])
                self._learn([item])
        if unknown:
            raise UnknownSkus(unknown)

    def _known_total(self, lines: Sequence[tuple[str, int]]) -> int:
        # A SKU of unknown price counts 0: the total is at least this.
        return sum(self.prices.get(sku, 0) * quantity for sku, quantity in lines)

    async def _refuse_unchargeable(self, lines: Sequence[tuple[str, int]]) -> None:
        """An order over the largest chargeable amount is bad input, refused before anything is
        stored. Decided on the last known prices, read from memory: no cost on the hot path. Only an
        order they say is too large asks InventoryService for today's prices (one may have dropped),
        and stands refused on the last known ones when it cannot ask: the fallback would charge those."""
        if self._known_total(lines) <= MAX_AMOUNT:
            return
        try:
            answer = await self.inventory.check(lines)
        except CallFailure:
            pass
        else:
            await self.catalog.remember(answer.items)
            self._learn(answer.items)
        total = self._known_total(lines)
        if total > MAX_AMOUNT:
            raise TooLarge(total)

    def _learn(self, items: Sequence[Item]) -> None:
        for item in items:
            self.prices[item.sku] = item.unit_price

    async def sync_catalog(self, page_size: int = 1000) -> int:
        """Remember every item InventoryService lists, a page at a time. Returns how many."""
        count, cursor = 0, None
        while True:
            items, cursor = await self.inventory.list_items(cursor, limit=page_size)
            await self.catalog.remember(items)
            self._learn(items)
            count += len(items)
            if cursor is None:
                break
        await self.catalog.held()  # refreshes whether any order is owed fallback units
        return count

    async def sync_forever(self, interval: float) -> None:
        while True:
            try:
                count = await self.sync_catalog()
                log.debug("catalog synced", items=count)
            except CallFailure as exc:
                log.info("catalog sync skipped", reason=str(exc))
                count = 0
            except Fault as exc:
                log.warning("catalog sync failed", error=str(exc))
                count = 0
            except Exception:
                # A storage error must not end the loop: the fallback data would never be fresh again.
                log.exception("catalog sync failed")
                count = 0
            # With nothing known yet there is no fallback at all: ask again soon.
            await asyncio.sleep(interval if count else min(interval, 2.0))

    async def drain(self, grace: float) -> None:
        """On shutdown: let running sagas finish for a while; what is left stays PENDING in the log."""
        tasks = list(self.running.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
        for task in list(self.releasing.values()):
            task.cancel()  # their leases lapse by themselves
