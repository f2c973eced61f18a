"""``oms bench``: drive a running system (or one it starts itself) with orders and report how fast
it placed them, how long each took, how each ended, and what each service spent.

With ``--webhook`` it also runs a webhook receiver (``oms.cli.receiver``) registered for every event
before the measured run, so that the run carries the deliveries, and reports how long each event took
from its status change to the receiver; with ``--nats``, a ``nats-server`` (``oms.cli.broker``) for the
system it spawns, and how many events reached the stream."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from oms.cli.broker import NatsServer, StreamCounter
from oms.cli.loadgen import FLOOD_SOURCE, Connection, FloodProcess
from oms.cli.receiver import ReceiverProcess
from oms.cli.supervisor import Supervisor, health

IN_STOCK = "BENCH-1"
SOLD_OUT = "BENCH-OOS"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DELIVERY_DEADLINE = 60.0
"""Seconds ``--webhook`` and ``--nats`` wait after the run for its events to arrive, then report what is missing."""


@dataclass
class Plan:
    orders: int = 2000
    concurrency: int = 50
    decline_rate: float = 0.0
    out_of_stock_rate: float = 0.0
    respond_async: bool = False
    warmup: int = 200
    clients_per_address: int = 200
    """On a loopback target, the clients past this many connect from further loopback addresses
    (127.0.1.1, 127.0.1.2, ...): so many clients from one address would be one client holding them
    all, past the services' ``max_connections_per_address`` (256)."""
    flood: int = 0
    """Slow connections kept open from 127.0.0.2 during a second measured run; 0: no such run."""
    flood_service: str = "order"
    webhook: bool = False
    """Register a webhook endpoint for every event (``oms.cli.receiver``, a process of its own) before the
    measured run, and report how long each event took from its status change to the receiver."""
    nats: bool = False
    """The spawned system publishes to a ``nats-server`` of the bench's own: count what reached the stream."""


@dataclass
class Report:
    plan: dict[str, Any]
    orders_per_second: float
    seconds: float
    latency_ms: dict[str, float]
    statuses: dict[str, int]
    services: dict[str, dict[str, float]] = field(default_factory=dict)
    load_generator: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stolen: float = 0.0
    """Share of the machine's CPU time the hypervisor gave to others while the run was measured
    (``steal`` in /proc/stat): the figures of a run with much stolen time say more about the host."""
    calibration_ms: float = 0.0
    """How long a fixed pure-Python loop took just before the run: the machine's speed at the time
    (on a virtual machine it varies with what its neighbours do)."""
    flood: dict[str, Any] = field(default_factory=dict)
    """With ``Plan.flood``: the same orders measured again while slow connections flood a service
    (orders per second, latencies, statuses, and the flood's own figures)."""
    webhook: dict[str, Any] = field(default_factory=dict)
    """With ``Plan.webhook``: what the receiver got of the measured orders' events (counts, duplicates,
    out of order, invalid signatures) and the latency from each event's ``time`` to its arrival."""
    nats: dict[str, Any] = field(default_factory=dict)
    """With ``Plan.nats``: every event written so far, and how many of them the stream holds."""
    cpu_until_delivered: dict[str, float] = field(default_factory=dict)
    """With ``Plan.webhook`` or ``Plan.nats``: each process's CPU seconds from the measured run's start
    until its events were all delivered (``services`` stops at the run's end; the relay may not)."""


def _latency_figures(latencies: list[float]) -> dict[str, float]:
    return {
        name: round(percentile(latencies, q) * 1000, 2)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
    }


def cpu_ticks() -> tuple[int, int]:
    """The machine's CPU ticks so far: (all, stolen by the hypervisor)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def calibrate() -> float:
    """Milliseconds a fixed loop of a million additions takes now (best of three)."""
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - began)
    return round(best * 1000, 1)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def client_sources(url: str, clients: int, per_address: int) -> list[str | None]:
    """The local address each simulated client connects from: on a loopback target, 127.0.0.1 (the
    route's own, None) for the first ``per_address`` clients, then 127.0.1.1, 127.0.1.2, ... for
    each next ``per_address``; elsewhere the route's own for all (the loopback addresses reach
    only this machine)."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).version == 4 and ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return [None] * clients
    first = int(ipaddress.IPv4Address("127.0.1.0"))
    return [None if i < per_address else str(ipaddress.IPv4Address(first + i // per_address)) for i in range(clients)]


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it (a service's uvicorn workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def process_figures(pid: int) -> dict[str, float]:
    """CPU seconds so far and peak RSS of a service on this machine (from /proc): the process and
    its workers (or other children, such as OrderService's relay), added up; and the CPU seconds of
    those below it apart (``children_cpu_seconds``)."""
    cpu = peak = own = 0.0
    for member in _tree(pid):
        try:
            with open(f"/proc/{member}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            spent = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            cpu += spent
            if member == pid:
                own = spent
            with open(f"/proc/{member}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak += int(line.split()[1]) / 1024
        except OSError:
            continue  # gone since it was listed
    return {"cpu_seconds": cpu, "peak_rss_mb": peak, "children_cpu_seconds": cpu - own}


def service_pids(urls: dict[str, str], token: str) -> dict[str, int]:
    """The process each service was started as (the parent of its workers, if it has several);
    /health tells it to an admin only."""
    pids = {}
    for name, url in urls.items():
        body = health(url, token, timeout=5) or {}
        if "pid" not in body:
            raise RuntimeError(f"{name} at {url} does not tell its pid (not running, or the token is not an admin's)")
        pids[name] = int(body.get("main_pid", body["pid"]))
    return pids


class Bench:
    def __init__(
        self,
        urls: dict[str, str],
        plan: Plan,
        console: Console,
        *,
        token: str,
        also: dict[str, int] | None = None,
        receiver: ReceiverProcess | None = None,
        nats_url: str | None = None,
    ) -> None:
        self.urls = urls
        self.token = token
        """An admin token: not rate-limited, and it may seed the catalog and read every order."""
        self.plan = plan
        self.console = console
        self.also = also or {}
        """Other processes whose CPU and memory count (name: pid), such as the database server."""
        self.rng = random.Random(7)
        self.alive = set(urls)
        self.receiver = receiver
        """With ``plan.webhook``: the receiver the endpoint is registered for."""
        self.nats_url = nats_url
        """With ``plan.nats``: the NATS server the system publishes to."""
        self.endpoint: str | None = None
        self.notes: list[str] = []

    def body(self, index: int) -> dict[str, Any]:
        roll = self.rng.random()
        sku = SOLD_OUT if roll < self.plan.out_of_stock_rate else IN_STOCK
        declined = self.rng.random() < self.plan.decline_rate
        return {
            "customer_id": f"bench-{index % 997}",
            "items": [{"sku": sku, "quantity": 1}],
            "payment_method": "pm_card_chargeDeclined" if declined else "pm_card_visa",
        }

    async def seed(self, session: aiohttp.ClientSession) -> None:
        stock = {IN_STOCK: 10**9, SOLD_OUT: 0}
        for sku, available in stock.items():
            body = {"name": sku, "unit_price": 1000, "currency": "USD", "available": available}
            async with session.put(f"{self.urls['inventory']}/items/{sku}", json=body) as response:
                response.raise_for_status()

    async def run(self, after_warmup: Callable[[], None] | None = None) -> Report:
        connector = aiohttp.TCPConnector(limit=self.plan.concurrency + 10)
        headers = {"authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            await self.seed(session)
            if self.plan.warmup:
                await self._drive(self.plan.warmup, None)
            if after_warmup is not None:
                after_warmup()
            if self.plan.webhook:
                await self._register(session)
            pids = service_pids({name: url for name, url in self.urls.items() if name in self.alive}, self.token)
            pids.update(self.also)
            calibration = calibrate()
            before = {name: process_figures(pid) for name, pid in pids.items()}
            own_before = resource.getrusage(resource.RUSAGE_SELF)
            ticks_before = cpu_ticks()
            with Progress(
                TextColumn("orders"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=self.console, transient=True,
            ) as progress:  # fmt: skip
                task = progress.add_task("orders", total=self.plan.orders)
                started = time.perf_counter()
                latencies, ids = await self._drive(self.plan.orders, (progress, task))
                if self.plan.respond_async:
                    await self._wait_settled(session)
                seconds = time.perf_counter() - started
            own_after = resource.getrusage(resource.RUSAGE_SELF)
            ticks_after = cpu_ticks()
            after = {name: process_figures(pid) for name, pid in pids.items()}
            ended = time.time()
            statuses = await self._statuses(session, ids)
            webhook, nats, until_delivered = await self._delivered(session, ids, ended, before, pids)
            flood = await self._flooded(session) if self.plan.flood else {}
            await self._unregister(session)
        own_cpu = (own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
        return Report(
            plan=asdict(self.plan),
            orders_per_second=round(self.plan.orders / seconds, 1),
            seconds=round(seconds, 3),
            latency_ms=_latency_figures(latencies),
            statuses=statuses,
            services={
                name: {
                    "cpu_seconds": round(after[name]["cpu_seconds"] - before[name]["cpu_seconds"], 2),
                    "peak_rss_mb": round(after[name]["peak_rss_mb"], 1),
                    "children_cpu_seconds": round(
                        after[name]["children_cpu_seconds"] - before[name]["children_cpu_seconds"], 2
                    ),
                }
                for name in pids
            },
            load_generator={
                "cpu_seconds": round(own_cpu, 2),
                "cpu_share_of_one_core": round(own_cpu / seconds, 3),
                "cpu_us_per_order": round(own_cpu / self.plan.orders * 1e6, 1),
            },
            stolen=round((ticks_after[1] - ticks_before[1]) / max(1, ticks_after[0] - ticks_before[0]), 3),
            calibration_ms=calibration,
            flood=flood,
            webhook=webhook,
            nats=nats,
            cpu_until_delivered=until_delivered,
            notes=self.notes,
        )

    async def _register(self, session: aiohttp.ClientSession) -> None:
        """An endpoint for every event, at the receiver; the receiver told its secret."""
        assert self.receiver is not None
        body = {"url": self.receiver.url, "events": ["*"], "description": "oms bench --webhook"}
        async with session.post(f"{self.urls['order']}/webhooks", json=body) as response:
            answer = await response.read()
            if response.status != 201:
                raise RuntimeError(f"POST /webhooks answered {response.status}: {answer[:300]!r}")
        endpoint = orjson.loads(answer)
        self.endpoint = endpoint["id"]
        self.receiver.ask({"secret": endpoint["secret"]})
        await self._prime(session)

    async def _prime(self, session: aiohttp.ClientSession) -> None:
        """One order, and wait until an event of it reached the receiver: the relay looks for new
        endpoints every second or so, and the measured run must not start before it sends to this one
        (its first events would wait for that, which is not what the run measures)."""
        assert self.receiver is not None
        body = {"customer_id": "bench-primer", "items": [{"sku": IN_STOCK, "quantity": 1}],
                "payment_method": "pm_card_visa"}  # fmt: skip
        async with session.post(f"{self.urls['order']}/orders", json=body) as response:
            answer = await response.read()
            if response.status not in (200, 201, 202):
                raise RuntimeError(f"POST /orders answered {response.status}: {answer[:300]!r}")
        deadline = time.monotonic() + DELIVERY_DEADLINE
        while self.receiver.ask({"progress": True})["received"] == 0:
            if time.monotonic() > deadline:
                self.notes.append(f"No webhook delivery within {DELIVERY_DEADLINE:g} s of registering the endpoint.")
                return
            await asyncio.sleep(0.05)

    async def _unregister(self, session: aiohttp.ClientSession) -> None:
        """The endpoint removed: a system the bench did not start must not go on sending to a receiver
        that is gone."""
        if self.endpoint is not None:
            async with session.delete(f"{self.urls['order']}/webhooks/{self.endpoint}") as response:
                await response.read()
            self.endpoint = None

    async def _events(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """Every event in the feed, oldest first."""
        events: list[dict[str, Any]] = []
        url = f"{self.urls['order']}/events?limit=1000"
        while True:
            async with session.get(url) as response:
                answer = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"GET /events answered {response.status}: {answer[:300]!r}")
            page = orjson.loads(answer)
            events.extend(page["items"])
            if len(page["items"]) < 1000 or page["next"] is None:  # the last page also names a next
                return events
            url = f"{self.urls['order']}/events?limit=1000&next={page['next']}"

    async def _delivered(
        self,
        session: aiohttp.ClientSession,
        ids: list[str],
        ended: float,
        before: dict[str, dict[str, float]],
        pids: dict[str, int],
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
        """With ``plan.webhook``, ``plan.nats``: wait until the receiver has every event of the measured
        orders and the stream every event written (at most ``DELIVERY_DEADLINE`` seconds), then their
        figures; each process's CPU from the measured run's start to then, the delivery of the run's
        last events included."""
        if not (self.plan.webhook or self.plan.nats):
            return {}, {}, {}
        reading = {name: process_figures(pid)["cpu_seconds"] for name, pid in pids.items()}
        events = await self._events(session)
        read = {name: process_figures(pid)["cpu_seconds"] - reading[name] for name, pid in pids.items()}
        measured = set(ids)
        expected = [event["id"] for event in events if event["subject"] in measured]
        if self.receiver is not None:
            self.receiver.ask({"expect": expected})
        deadline = time.monotonic() + DELIVERY_DEADLINE
        in_stream: int | None = None
        stream = StreamCounter(self.nats_url) if self.nats_url is not None else None
        try:
            while True:
                missing = self.receiver.ask({"progress": True})["missing"] if self.receiver is not None else 0
                if stream is not None:
                    in_stream = await stream.messages()
                streamed = stream is None or (in_stream or 0) >= len(events)
                if (missing == 0 and streamed) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        finally:
            if stream is not None:
                await stream.close()
        drained = {name: process_figures(pid) for name, pid in pids.items()}
        cpu = {  # less what reading the feed above cost: that is the bench's doing, not the delivery's
            name: round(drained[name]["cpu_seconds"] - before[name]["cpu_seconds"] - read[name], 2) for name in pids
        }
        webhook: dict[str, Any] = {}
        if self.receiver is not None:
            figures = self.receiver.ask({"report": True})
            last = figures.pop("last_arrival")
            webhook = {
                "url": self.receiver.url,
                **figures,
                "last_arrival_after_run_s": round(max(0.0, last - ended), 3) if last else None,
                "receiver_cpu_seconds": cpu.get("receiver", 0.0),
            }
        nats: dict[str, Any] = {}
        if self.nats_url is not None:
            nats = {
                "url": self.nats_url,
                "events": len(events),
                "in_stream": in_stream,
                "server_cpu_seconds": cpu.get("nats-server", 0.0),
            }
        return webhook, nats, cpu

    async def _flooded(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """The same orders again, while ``plan.flood`` slow connections from 127.0.0.2 are kept open to
        ``plan.flood_service`` (from a process of its own)."""
        target = self.urls[self.plan.flood_service]
        self.console.print(f"{self.plan.flood} slow connections from {FLOOD_SOURCE} to {target}, and the orders again")
        flood = FloodProcess(target, self.plan.flood)
        await asyncio.to_thread(flood.__enter__)
        try:
            started = time.perf_counter()
            latencies, ids = await self._drive(self.plan.orders, None)
            if self.plan.respond_async:
                await self._wait_settled(session)
            seconds = time.perf_counter() - started
        finally:
            await asyncio.to_thread(flood.__exit__, None, None, None)
        return {
            "connections": self.plan.flood,
            "service": self.plan.flood_service,
            "orders_per_second": round(self.plan.orders / seconds, 1),
            "latency_ms": _latency_figures(latencies),
            "statuses": await self._statuses(session, ids),
            "flood": flood.figures,
        }

    async def _drive(self, count: int, progress: tuple[Progress, Any] | None) -> tuple[list[float], list[str]]:
        latencies: list[float] = []
        ids: list[str] = []
        queue = iter(range(count))
        extra = f"authorization: Bearer {self.token}\r\n"
        if self.plan.respond_async:
            extra += "prefer: respond-async\r\n"

        sources = client_sources(self.urls["order"], self.plan.concurrency, self.plan.clients_per_address)

        async def worker(source: str | None) -> None:
            connection = Connection(self.urls["order"], source)
            try:
                for index in queue:
                    data = orjson.dumps(self.body(index))
                    began = time.perf_counter()
                    status, answer = await connection.post("/orders", data, extra)
                    if status not in (200, 201, 202):
                        raise RuntimeError(f"POST /orders answered {status}: {answer[:300]!r}")
                    latencies.append(time.perf_counter() - began)
                    ids.append(orjson.loads(answer)["id"])
                    if progress is not None:
                        progress[0].advance(progress[1])
            finally:
                connection.close()

        await asyncio.gather(*(worker(source) for source in sources))
        return latencies, ids

    async def _wait_settled(self, session: aiohttp.ClientSession) -> None:
        while True:
            async with session.get(self.urls["order"] + "/orders?status=PENDING&limit=1") as response:
                if not orjson.loads(await response.read())["items"]:
                    return
            await asyncio.sleep(0.05)

    async def _statuses(self, session: aiohttp.ClientSession, ids: list[str]) -> dict[str, int]:
        wanted = set(ids)
        counts: dict[str, int] = {}
        url = f"{self.urls['order']}/orders?limit=1000"
        while True:
            async with session.get(url) as response:
                page = orjson.loads(await response.read())
            for order in page["items"]:
                if order["id"] in wanted:
                    counts[order["status"]] = counts.get(order["status"], 0) + 1
            if page["next"] is None or sum(counts.values()) >= len(wanted):
                return dict(sorted(counts.items()))
            url = f"{self.urls['order']}/orders?limit=1000&next={page['next']}"


def spawn(directory: Path, env: dict[str, str], database_urls: dict[str, str] | None = None) -> Supervisor:
    """The three services, on free ports in ``directory`` (their logs there, only warnings and worse),
    for a benchmark: started, and each restartable on its port."""
    return Supervisor(directory, env={"OMS_LOG_LEVEL": "warning", **env}, database_urls=database_urls).start_all()


def print_report(console: Console, report: Report) -> None:
    plan = report.plan
    mode = "async (Prefer: respond-async)" if plan["respond_async"] else "synchronous"
    table = Table(title=f"{plan['orders']} orders, {plan['concurrency']} concurrent, {mode}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("orders per second", f"{report.orders_per_second:,.0f}")
    for name, value in report.latency_ms.items():
        table.add_row(f"latency {name}", f"{value:.1f} ms")
    for status, count in report.statuses.items():
        table.add_row(f"status {status}", str(count))
    for name, figures in report.services.items():
        children = figures.get("children_cpu_seconds", 0.0)
        below = f" ({children:.1f} s in its child processes)" if children >= 0.05 else ""
        table.add_row(f"{name} CPU", f"{figures['cpu_seconds']:.1f} s{below}")
        table.add_row(f"{name} peak RSS", f"{figures['peak_rss_mb']:.0f} MB")
    lg = report.load_generator
    table.add_row("load generator CPU", f"{lg['cpu_seconds']:.1f} s ({lg['cpu_us_per_order']:.0f} µs/order)")
    table.add_row("CPU time stolen by the host", f"{report.stolen:.0%}")
    table.add_row("machine speed (a fixed loop)", f"{report.calibration_ms:.0f} ms")
    console.print(table)
    if report.webhook or report.nats:
        print_delivered(console, report)
    if report.flood:
        print_flood(console, report)
    for note in report.notes:
        console.print(note)


def print_delivered(console: Console, report: Report) -> None:
    table = Table(title="the measured orders' events, delivered")
    table.add_column("figure")
    table.add_column("value", justify="right")
    hook = report.webhook
    if hook:
        table.add_row("webhook: events expected", f"{hook['expected']:,}")
        table.add_row("  received", f"{hook['received']:,}")
        table.add_row("  missing", f"{hook['missing']:,}")
        table.add_row("  duplicates", f"{hook['duplicates']:,}")
        table.add_row("  out of order", f"{hook['out_of_order']:,}")
        table.add_row("  invalid signatures", f"{hook['invalid_signatures']:,}")
        for name, value in hook["latency_ms"].items():
            table.add_row(f"  status change to received, {name}", f"{value:.1f} ms")
        for kind, latency in hook.get("latency_ms_by_type", {}).items():
            table.add_row(
                f"    {kind.rsplit('.', 1)[-1]} events, p50 / p99", f"{latency['p50']:.0f} / {latency['p99']:.0f} ms"
            )
        if hook["last_arrival_after_run_s"] is not None:
            table.add_row("  last event received after the run", f"{hook['last_arrival_after_run_s']:.2f} s")
        table.add_row("  receiver CPU", f"{hook['receiver_cpu_seconds']:.1f} s")
    nats = report.nats
    if nats:
        held = "no stream" if nats["in_stream"] is None else f"{nats['in_stream']:,}"
        table.add_row("NATS: events in the stream", f"{held} of {nats['events']:,}")
        table.add_row("  nats-server CPU", f"{nats['server_cpu_seconds']:.1f} s")
    for name, seconds in report.cpu_until_delivered.items():
        table.add_row(f"{name} CPU until all was delivered", f"{seconds:.1f} s")
    console.print(table)


def print_flood(console: Console, report: Report) -> None:
    flooded = report.flood
    figures = flooded["flood"]
    source = figures.get("source", FLOOD_SOURCE)
    table = Table(title=f"with {flooded['connections']} slow connections from {source} to {flooded['service']}")
    table.add_column("figure")
    table.add_column("without", justify="right")
    table.add_column("with the flood", justify="right")
    table.add_row("orders per second", f"{report.orders_per_second:,.0f}", f"{flooded['orders_per_second']:,.0f}")
    for name, value in report.latency_ms.items():
        table.add_row(f"latency {name}", f"{value:.1f} ms", f"{flooded['latency_ms'][name]:.1f} ms")
    for status in sorted(set(report.statuses) | set(flooded["statuses"])):
        table.add_row(f"status {status}", str(report.statuses.get(status, 0)), str(flooded["statuses"].get(status, 0)))
    for name, meaning in (
        ("held_peak", "slow connections open, unanswered (most at once)"),
        ("opened", "slow connections made"),
        ("refused", "  refused as they opened (503)"),
        ("timed_out", "  cut off, head late (408)"),
        ("closed", "  closed without an answer"),
        ("failed", "slow connections that failed to connect"),
    ):
        table.add_row(meaning, "", f"{figures.get(name, 0):,}")
    console.print(table)


def bench(
    console: Console,
    plan: Plan,
    *,
    urls: dict[str, str] | None,
    spawn_env: dict[str, str] | None,
    json_path: Path | None,
    inventory_down: bool = False,
    database_urls: dict[str, str] | None = None,
    token: str | None = None,
) -> Report:
    """Run the plan; ``inventory_down``: kill the spawned InventoryService after the warm-up, so
    every counted order takes the breaker's fallback path. With ``plan.webhook``, a receiver of the
    bench's own; with ``plan.nats``, a ``nats-server`` of its own for the spawned system."""
    system: Supervisor | None = None
    scratch = None
    broker: NatsServer | None = None
    receiver: ReceiverProcess | None = None
    also: dict[str, int] = {}
    try:
        if urls is None:
            scratch = tempfile.TemporaryDirectory(prefix="oms-bench-")
            env = dict(spawn_env or {})
            if plan.nats:
                broker = NatsServer(Path(scratch.name) / "nats")
                env["OMS_NATS_URL"] = broker.url
                also["nats-server"] = broker.pid
            system = spawn(Path(scratch.name), env, database_urls)
            urls = system.urls
            token = system.token
        elif inventory_down:
            raise ValueError("--inventory-down needs --spawn")
        elif plan.nats:
            raise ValueError("--nats needs --spawn: it runs a nats-server for the system it starts")
        if token is None:
            raise ValueError("a running system needs an admin token: --token, OMS_TOKEN, or its key file")
        if plan.webhook:
            receiver = ReceiverProcess()
            also["receiver"] = receiver.pid
        runner = Bench(
            urls, plan, console, token=token, also=also, receiver=receiver,
            nats_url=broker.url if broker is not None else None,
        )  # fmt: skip

        def kill_inventory() -> None:
            assert system is not None
            system.kill("inventory")
            runner.alive.discard("inventory")

        report = asyncio.run(runner.run(kill_inventory if inventory_down else None))
        if inventory_down:
            report.notes.append("InventoryService was killed after the warm-up: every order used fallback data.")
    finally:
        if system is not None:
            system.stop()
        if receiver is not None:
            receiver.close()
        if broker is not None:
            broker.stop()
        if scratch is not None:
            scratch.cleanup()
    print_report(console, report)
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2))
    return report
