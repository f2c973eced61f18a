"""The relay: every event of the outbox to its ways out, one way at a time per relay, each way in
the hands of one relay at a time (``relay_ways``' lease).

Ways: ``webhook:<id>`` for each enabled endpoint, ``nats`` when ``nats_url`` is set, and ``tally``,
which only counts events (``oms_events_total``). Each way reads the outbox after its cursor and
sends, per order in order, different orders side by side (``window``); every pass writes back what it
did and the way's new cursor in one transaction (``ways``).

Webhooks: an event's first try is made at once; a failed one goes to ``webhook_deliveries`` with its
next try (``schedule``), and the order's later events wait there behind it, so the cursor goes on.
NATS: an event JetStream did not acknowledge is published again until it is, the order's later
events behind it; while NATS is away the window fills and the rest wait in the outbox.

Runs in a process of its own beside each OrderService process (``oms.events.process``): measured,
sending in OrderService's own process took a fifth of its rate (each webhook POST and NATS publish
costs 50 to 100 µs of CPU in the client libraries), where a process beside it uses the other core.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import structlog

from oms.errors import Fault
from oms.events.client import Pool
from oms.events.nats import EventStream, NatsUnavailable
from oms.events.schedule import Verdict, WebhookPolicy, decide, disable_reason
from oms.events.sender import Attempt, deliver
from oms.events.ways import NATS, TALLY, WEBHOOK, Endpoint, Flush, Key, LostLease, Tail, Ways
from oms.events.window import Item, Window
from oms.orders.events import SOURCE
from oms.utc import utc_now

log = structlog.get_logger("oms.events.relay")

LEASE_TTL = 10.0
"""Seconds a relay holds a way without renewing it: a dead relay's ways are taken over after this.
Well within NATS's duplicate window (120 s), so what a dead relay published is not stored twice."""
PASS = 0.1
"""Seconds between two passes of a way with nothing new (a pass that found events goes on at once,
after ``BUSY_PASS``)."""
BUSY_PASS = 0.05
SCAN = 1.0
"""Seconds between two looks at an endpoint's waiting deliveries (sooner after one is delivered)."""
READ = 500
"""Events read a pass at most."""
WRITE_EVERY = 0.25
"""Seconds at least between two write-backs of a way: each is a transaction, which on SQLite takes
the writing turn from OrderService; sends do not wait for them."""
NATS_IN_FLIGHT = 256


def body_of(event: dict[str, Any]) -> bytes:
    """The event as a CloudEvent, JSON structured mode (``oms.orders.events.cloud_event``), its data
    spliced in as stored rather than parsed and written again; made once for every way (kept in the
    row the ways share)."""
    body: bytes | None = event.get("_body")
    if body is None:
        body = event["_body"] = _body_of(event)
    return body


def _body_of(event: dict[str, Any]) -> bytes:
    head = orjson.dumps(
        {
            "specversion": "1.0",
            "id": event["id"],
            "source": SOURCE,
            "type": event["type"],
            "subject": event["order_id"],
            "time": event["time"],
            "datacontenttype": "application/json",
            "sequence": int(event["sequence"]),
        }
    )
    return head[:-1] + b',"data":' + str(event["data"]).encode() + b"}"


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None


def _iso(epoch: float) -> str:
    """``epoch`` as ``oms.utc.utc_now`` writes times (``2026-12-06T07:30:00.123456Z``), in a third of
    the time ``datetime`` takes: two of them a delivery."""
    seconds = int(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((epoch - seconds) * 1e6):06d}Z"


class Way:
    """One way out driven by this relay: read, send, write back, until stopped or its lease is lost."""

    name: str
    busy_pass = BUSY_PASS
    idle_pass = PASS

    def __init__(
        self, ways: Ways, owner: str, cursor: Key, *, clock: Callable[[], float], metrics: Any, tail: Tail | None = None
    ) -> None:
        self.ways = ways
        self.tail = tail or Tail(ways)
        self.owner = owner
        self.clock = clock
        self.metrics = metrics
        self.window = Window(cursor)
        self.written = cursor
        self.lease_until = clock() + LEASE_TTL
        self.wrote_at = 0.0
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.unsent: list[Item] = []
        """Events held back while the lease may have lapsed: sent once it is renewed."""

    async def run(self) -> None:
        try:
            await self.begin()
            while not self.stopping:
                try:
                    found = await self.read()
                    await self.write_back()
                    await self.between()
                except LostLease:
                    raise
                except Fault as exc:  # the database is away: the sends go on, the reads wait for it
                    log.warning("relay could not read its way", way=self.name, error=str(exc))
                    found = False
                self.metrics.oldest(self.name, self.oldest_age())
                self.metrics.flush()
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.busy_pass if found else self.idle_pass)
        except LostLease:
            log.info("relay lost a way to another relay", way=self.name)
            self.stopping = True
        finally:
            await self.end()

    async def begin(self) -> None:
        """Before the first pass."""

    async def between(self) -> None:
        """After each pass's write."""

    def oldest_age(self) -> float:
        oldest = self.window.oldest_time()
        return max(0.0, self.clock() - (_epoch(oldest) or self.clock()))

    async def read(self) -> bool:
        room = self.window.room
        if room <= 0:
            return False
        rows = await self.tail.after(self.window.read_to, min(room, READ))
        for item in self.window.add(rows):
            self.start(item)
        return bool(rows)

    def start(self, item: Item) -> None:
        """Send ``item`` now, unless this way is stopping (then it stays not done, for whoever drives
        the way next) or its lease may have lapsed (its database away): then it is sent once the lease
        is renewed, or by whoever takes the way over."""
        if self.stopping:
            return
        if self.clock() > self.lease_until:
            self.unsent.append(item)
            return
        self.launch(item)

    def launch(self, item: Item) -> None:
        task = asyncio.create_task(self.send(item))
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("relay send failed", way=self.name, error=repr(task.exception()))

    async def send(self, item: Item) -> None:
        raise NotImplementedError

    def take_flush(self) -> Flush:
        return Flush()

    def give_back(self, flush: Flush) -> None:
        """A flush that could not be written: kept for the next pass."""

    async def write_back(self, *, force: bool = False) -> None:
        now = self.clock()
        renew = now >= self.lease_until - LEASE_TTL / 2
        if not (force or renew or now - self.wrote_at >= WRITE_EVERY):
            return
        cursor = self.window.advance()
        flush = self.take_flush()
        if not (force or renew or flush or cursor != self.written):
            return
        try:
            await self.ways.write(self.name, self.owner, cursor, now + LEASE_TTL, flush, self.endpoint_id)
        except LostLease:
            raise
        except Fault as exc:  # the database is away: the pass is written again next time
            self.give_back(flush)
            log.warning("relay could not write back", way=self.name, error=str(exc))
            return
        self.written, self.lease_until, self.wrote_at = cursor, now + LEASE_TTL, now
        held, self.unsent = self.unsent, []
        for item in held:
            self.start(item)

    @property
    def endpoint_id(self) -> str | None:
        return None

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def end(self) -> None:
        """Let the sends under way finish (briefly), write back, let the way go."""
        deadline = self.clock() + 2.0
        while self.tasks:  # a send that ends may have started its order's next (not once stopping)
            _, pending = await asyncio.wait(list(self.tasks), timeout=max(0.0, deadline - self.clock()))
            if pending and self.clock() >= deadline:
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending)
                break
        with contextlib.suppress(LostLease, Fault):
            await self.write_back(force=True)
        with contextlib.suppress(Fault):
            await self.ways.release(self.name, self.owner)
        self.metrics.oldest(self.name, 0.0)
        self.metrics.flush()


class TallyWay(Way):
    name = TALLY
    # A count need not be fresher than a scrape: a pass a second costs the relay little (at 20 passes a
    # second, counting cost it 50 µs an order under oms bench).
    busy_pass = idle_pass = 1.0

    async def read(self) -> bool:
        rows = await self.tail.after(self.window.read_to, READ)
        if rows:
            self.metrics.events(Counter(row["type"] for _, row in rows))
            self.window.read_to = rows[-1][0]
        return bool(rows)


class NatsWay(Way):
    """Events go to JetStream in batches (``EventStream.publish_many``): what each pass starts is
    published together and acknowledged together, one batch at a time; an event not acknowledged goes
    again in a later batch, its order's next events behind it."""

    name = NATS

    def __init__(self, *args: Any, stream: EventStream, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stream = stream
        self.queue: list[Item] = []
        self.sender: asyncio.Task[None] | None = None
        self.down_until = 0.0
        self.failures = 0

    def launch(self, item: Item) -> None:
        self.queue.append(item)
        if self.sender is None:
            self.sender = asyncio.create_task(self.publish_queued())
            self.tasks.add(self.sender)
            self.sender.add_done_callback(self._finished)

    async def publish_queued(self) -> None:
        try:
            while self.queue and not self.stopping:
                wait = self.down_until - self.clock()
                if wait > 0:
                    await asyncio.sleep(min(wait, 1.0))
                    continue
                if self.clock() > self.lease_until:
                    self.unsent.extend(self.queue)
                    self.queue.clear()
                    break
                batch, self.queue = self.queue[:NATS_IN_FLIGHT], self.queue[NATS_IN_FLIGHT:]
                await self.publish(batch)
        finally:
            self.sender = None  # with no await since the queue was seen empty: a launch after this starts anew

    async def publish(self, batch: list[Item]) -> None:
        events = [(item.event["id"], item.event["type"], body_of(item.event)) for item in batch]
        try:
            if not self.stream.ready:
                await self.stream.open()
            outcomes: list[Any] = await self.stream.publish_many(events)
        except NatsUnavailable as exc:
            outcomes = [exc] * len(batch)
        failure: NatsUnavailable | None = None
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, NatsUnavailable):
                failure = outcome
                self.queue.append(item)
                continue
            self.metrics.published()
            following = self.window.done(item)
            if following is not None:
                self.start(following)
        if failure is None:
            self.failures = 0
            return
        self.failures += 1
        if self.down_until <= self.clock():
            delay = min(30.0, 0.5 * 2 ** min(self.failures, 6))
            self.down_until = self.clock() + delay
            log.warning("nats publish failed: events wait in the outbox", error=str(failure), retry_in=delay)

    async def end(self) -> None:
        await super().end()
        await self.stream.close()


class WebhookWay(Way):
    def __init__(self, *args: Any, endpoint: Endpoint, session: Pool, delivery: WebhookPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.update(endpoint)
        self.name = WEBHOOK + endpoint.id
        self.session = session
        self.delivery = delivery
        self.gate = asyncio.Semaphore(delivery.concurrency)
        self.rng = random.Random()
        self.flush = Flush()
        self.held: set[str] = set()
        """Orders with deliveries waiting in ``webhook_deliveries``: their later events wait there too."""
        self.held_oldest: str | None = None
        self.retrying: set[int] = set()
        self.next_scan = 0.0
        self.failing_since = _epoch(endpoint.failing_since)
        self.gone = False
        self.tried: list[int] = []
        """Waiting deliveries tried, their rows' new state not yet written: the scan passes over them."""
        self.writing: list[int] = []

    @property
    def endpoint_id(self) -> str | None:
        return self.endpoint.id

    def update(self, endpoint: Endpoint) -> None:
        """The endpoint as now stored (its url, types or secrets changed)."""
        self.endpoint = endpoint

    async def begin(self) -> None:
        self.held, self.held_oldest = await self.ways.waiting(self.endpoint.id)

    def oldest_age(self) -> float:
        ages = [super().oldest_age()]
        if self.held_oldest is not None:
            ages.append(self.clock() - (_epoch(self.held_oldest) or self.clock()))
        return max(ages)

    async def read(self) -> bool:
        room = self.window.room
        if room <= 0 or self.gone:
            return False
        rows = await self.tail.after(self.window.read_to, min(room, READ))
        wanted = self.endpoint.wants
        ready = self.window.add(rows, skip=lambda e: not wanted(e["type"]))
        for item in ready:
            self.go(item)
        return bool(rows)

    def go(self, item: Item) -> None:
        """Send ``item`` now, unless its order has deliveries waiting: then it waits behind them."""
        if item.order_id in self.held:
            self.park(item, [])
        else:
            self.start(item)

    def park(self, item: Item, later: list[Item], first: tuple[float, float] | None = None) -> None:
        """``item`` (and ``later``, its order's next events) to ``webhook_deliveries``; ``first``: when
        its failed first try was made and when the next one is due."""
        later = [*later, *self.window.hand_over(item)]
        now = utc_now()
        self.held.add(item.order_id)
        for n, it in enumerate([item, *later]):
            tried = first if n == 0 and first is not None else None
            self.flush.parked.append({
                "endpoint_id": self.endpoint.id, "event_id": it.event["id"], "order_id": it.order_id,
                "sequence": it.event["sequence"], "tries": 1 if tried else 0,
                "first_tried_at": tried[0] if tried else None, "next_try_at": tried[1] if tried else 0.0,
                "created_at": now,
            })  # fmt: skip

    async def attempt(self, event: dict[str, Any]) -> Attempt:
        async with self.gate:
            return await deliver(
                self.session, self.endpoint.url, str(event["id"]), body_of(event), self.endpoint.secrets,
                time_limit=self.delivery.timeout,
            )  # fmt: skip

    def record(self, event: dict[str, Any], tries: int, attempt: Attempt, outcome: str, next_try: float | None) -> None:
        now = self.clock()
        self.flush.attempts.append({
            "endpoint_id": self.endpoint.id, "event_id": event["id"], "event_type": event["type"],
            "order_id": event["order_id"], "sequence": event["sequence"], "try": tries,
            "status_code": attempt.status, "error": attempt.error, "duration_ms": round(attempt.duration * 1000, 3),
            "outcome": outcome, "next_try_at": _iso(next_try) if next_try is not None else None, "at": _iso(now),
        })  # fmt: skip
        self.metrics.delivered(outcome, attempt.duration)
        if attempt.delivered:
            self.failing_since = None
            self.flush.health = {"last_success_at": _iso(now), "failing_since": None, "at": _iso(now)}
        else:
            if self.failing_since is None:
                self.failing_since = now
                self.flush.health = {
                    "last_success_at": self.endpoint.last_success_at if self.flush.health is None
                    else self.flush.health["last_success_at"],
                    "failing_since": _iso(now), "at": _iso(now),
                }  # fmt: skip
            reason = disable_reason(self.failing_since, now, self.delivery)
            if reason is not None:
                self.disable(reason)

    def disable(self, reason: str) -> None:
        self.gone = True
        self.flush.disable = reason
        if self.flush.health is None:
            self.flush.health = {
                "last_success_at": self.endpoint.last_success_at,
                "failing_since": _iso(self.failing_since) if self.failing_since else None,
                "at": utc_now(),
            }
        log.warning("webhook endpoint disabled", endpoint=self.endpoint.id, url=self.endpoint.url, reason=reason)
        self.stop()

    async def send(self, item: Item) -> None:
        if self.gone:
            return
        started = self.clock()
        attempt = await self.attempt(item.event)
        now = self.clock()
        decision = decide(attempt.status, retry=1, first_tried_at=started, now=now, policy=self.delivery, rng=self.rng)
        self.record(item.event, 1, attempt, decision.verdict.value, decision.next_try_at)
        if decision.verdict is Verdict.ENDPOINT_GONE:
            self.disable(f"the endpoint answered 410 Gone at {_iso(now)}")
        elif decision.verdict is Verdict.RETRY:
            assert decision.next_try_at is not None
            self.park(item, [], (started, decision.next_try_at))
        else:  # delivered, or given up on (a give_up_after shorter than the first wait)
            following = self.window.done(item)
            if following is not None:
                self.go(following)

    async def between(self) -> None:
        now = self.clock()
        if now < self.next_scan or self.gone:
            return
        self.next_scan = now + SCAN
        self.held, self.held_oldest = await self.ways.waiting(self.endpoint.id)
        self.held |= {p["order_id"] for p in self.flush.parked}
        room = self.delivery.concurrency * 4 - len(self.retrying)
        if room <= 0 or not self.held:
            return
        for row in await self.ways.due(self.endpoint.id, now=now, limit=room, skip=sorted(self.retrying)):
            self.retrying.add(int(row["delivery"]))
            task = asyncio.create_task(self.retry(dict(row)))
            self.tasks.add(task)
            task.add_done_callback(self._finished)

    async def retry(self, row: dict[str, Any]) -> None:
        delivery = int(row["delivery"])
        try:
            if row["data"] is None:  # pruned (older than event_retention) while it waited
                self.flush.finished.append(delivery)
                return
            event = {**row, "id": row["event_id"]}
            tries = int(row["tries"]) + 1
            started = self.clock()
            attempt = await self.attempt(event)
            now = self.clock()
            first = row["first_tried_at"] if row["first_tried_at"] is not None else started
            decision = decide(
                attempt.status, retry=tries, first_tried_at=first, now=now, policy=self.delivery, rng=self.rng
            )
            self.record(event, tries, attempt, decision.verdict.value, decision.next_try_at)
            if decision.verdict is Verdict.RETRY:
                assert decision.next_try_at is not None
                self.flush.retried.append((delivery, tries, first, decision.next_try_at))
            elif decision.verdict is Verdict.ENDPOINT_GONE:
                self.disable(f"the endpoint answered 410 Gone at {_iso(now)}")
            else:
                self.flush.finished.append(delivery)
                self.next_scan = 0.0  # the order's next waiting event may go now
                self.wake.set()
        finally:
            # Its row's new state is written with the next pass; only then may the scan see it again.
            self.tried.append(delivery)

    def take_flush(self) -> Flush:
        flush, self.flush = self.flush, Flush()
        self.writing, self.tried = self.tried, []
        return flush

    async def write_back(self, *, force: bool = False) -> None:
        await super().write_back(force=force)
        self.retrying.difference_update(self.writing)
        self.writing = []

    def give_back(self, flush: Flush) -> None:
        newer, self.flush = self.flush, flush
        self.flush.absorb(newer)
        self.tried, self.writing = [*self.writing, *self.tried], []


class Relay:
    """Every way out this relay can hold, each driven while it holds it; looks every ``LOOK`` seconds
    for endpoints added, changed, disabled or removed, and for ways another relay let go."""

    LOOK = 1.0

    def __init__(
        self,
        ways: Ways,
        *,
        owner: str,
        metrics: Any,
        delivery: WebhookPolicy | None = None,
        session: Pool | None = None,
        stream: Callable[[], EventStream] | None = None,
        tally: bool = False,
        webhooks: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ways = ways
        self.tally = tally
        """Drive the ``tally`` (OrderService's own process does, in the relay's stead: it counts on its
        own metrics, and there is no relay process until there is something to send)."""
        self.webhooks = webhooks
        self.owner = owner
        self.delivery = delivery
        self.metrics = metrics
        self.session = session
        self.stream = stream
        self.clock = clock
        self.running: dict[str, tuple[Way, asyncio.Task[None]]] = {}
        self.stopping = asyncio.Event()
        self.tail = Tail(ways)
        self.looks = 0
        """Looks made at the ways wanted (a test waits for the first)."""

    async def run(self) -> None:
        while True:
            try:
                if self.tally:
                    await self.ways.ensure(TALLY, await self.ways.head())
                if self.stream is not None:
                    await self.ways.ensure(NATS, (0, 0))  # NATS newly set: every event kept, published
                break
            except Fault as exc:
                log.warning("relay waits for the database", error=str(exc))
                if await self._stopped_within(self.LOOK):
                    return
        while not self.stopping.is_set():
            try:
                await self.look()
            except Fault as exc:
                log.warning("relay could not look at its ways", error=str(exc))
            if await self._stopped_within(self.LOOK):
                break
        for way, _ in self.running.values():
            way.stop()
        if self.running:
            await asyncio.gather(*(task for _, task in self.running.values()), return_exceptions=True)

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()

    async def look(self) -> None:
        wanted: dict[str, Endpoint | None] = {TALLY: None} if self.tally else {}
        if self.webhooks:
            wanted.update({WEBHOOK + e.id: e for e in await self.ways.enabled_endpoints()})
        if self.stream is not None:
            wanted[NATS] = None
        for name, (way, task) in list(self.running.items()):
            if task.done():
                del self.running[name]
                if not task.cancelled() and task.exception() is not None:
                    log.error("relay way ended on an error", way=name, error=repr(task.exception()))
            elif name not in wanted:
                way.stop()
            elif isinstance(way, WebhookWay):
                endpoint = wanted[name]
                assert endpoint is not None
                way.update(endpoint)
        for name, endpoint in wanted.items():
            if name in self.running:
                continue
            cursor = await self.ways.claim(name, self.owner, now=self.clock(), ttl=LEASE_TTL)
            if cursor is None:
                continue
            way = self.way(name, cursor, endpoint)
            log.info("relay took a way", way=name, cursor=list(cursor))
            self.running[name] = (way, asyncio.create_task(way.run()))
        self.looks += 1

    def way(self, name: str, cursor: Key, endpoint: Endpoint | None) -> Way:
        common: dict[str, Any] = {"clock": self.clock, "metrics": self.metrics, "tail": self.tail}
        if name == TALLY:
            return TallyWay(self.ways, self.owner, cursor, **common)
        if name == NATS:
            assert self.stream is not None
            return NatsWay(self.ways, self.owner, cursor, stream=self.stream(), **common)
        assert endpoint is not None and self.session is not None and self.delivery is not None
        return WebhookWay(
            self.ways, self.owner, cursor, endpoint=endpoint, session=self.session, delivery=self.delivery, **common
        )

    def stop(self) -> None:
        self.stopping.set()
