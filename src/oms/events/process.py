"""The relay's process, beside an OrderService process: started with it, started again if it dies,
stopped with it (and killed by the kernel if the OrderService process is killed: ``oms.events.worker``).

Its metrics reach OrderService's ``GET /metrics`` through a directory of prometheus-client's
multiprocess files, one per OrderService process, removed when it stops. With ``relay_idle``, its
event loop runs in the cores' idle time and OrderService watches it starve (``oms.events.idle``):
killed then, it is started again at once, at its niceness for a spell."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from oms.config import Settings
from oms.db import Database
from oms.errors import Fault
from oms.events.idle import Watch, in_idle_time, waited_so_far
from oms.events.metrics import EventCount
from oms.events.relay import Relay
from oms.events.ways import TALLY, Ways

log = structlog.get_logger("oms.events.relay")

RESTART_MAX = 30.0
"""Seconds at most between two starts of a relay that keeps dying."""
SPELL = 60.0
"""Seconds a relay that starved in the cores' idle time runs at its niceness before it goes back to
idle time; doubled each time it starves again within ``SPELL_MAX`` of the last, up to it."""
SPELL_MAX = 3600.0


LOOK = 1.0
"""Seconds between two looks for something to send, until there is."""


async def start_tally(database: Database, instance: str, *, alone: bool, registry: CollectorRegistry) -> Relay:
    """The tally (``oms_events_total``), counted in OrderService's own process, its cursor at the
    outbox's head unless it has one: the events written from now on are counted. ``alone``: no other
    live process of this OrderService on the port (one worker): the ways an earlier, dead one held are
    let go at once rather than when their leases lapse."""
    ways = Ways(database)
    if alone:
        await ways.free_leases_of(f"{instance}/")
    await ways.ensure(TALLY, await ways.head())
    return Relay(ways, owner=f"{instance}/tally/{secrets.token_hex(4)}", metrics=EventCount(registry), tally=True,
                 webhooks=False)  # fmt: skip


async def something_to_send(database: Database, settings: Settings) -> bool:
    """NATS is set, or a webhook endpoint is enabled."""
    if settings.nats_url:
        return True
    try:
        return await database.fetch_one("SELECT id FROM webhooks WHERE status = 'enabled' LIMIT 1") is not None
    except Fault:
        return False


def next_spell(spell: float, starved_at: float | None, now: float) -> float:
    """The spell at its niceness of a relay that starved at ``now``, its last spell ``spell`` seconds
    from its last starving at ``starved_at``: doubled if it starved again within ``SPELL_MAX`` of that
    spell's end, up to ``SPELL_MAX``; else ``SPELL``."""
    again = starved_at is not None and spell > 0 and now - (starved_at + spell) < SPELL_MAX
    return min(SPELL_MAX, spell * 2) if again else SPELL


class RelayProcess:
    def __init__(self, settings: Settings, instance: str, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.instance = instance
        """The OrderService process's name (host:port, and its pid among several workers)."""
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="oms-relay-metrics-"))
        MultiProcessCollector(registry, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        self.process: asyncio.subprocess.Process | None = None
        self.watcher: asyncio.Task[None] | None = None
        self.stopping = False
        self.guard: asyncio.Task[None] | None = None
        self.starved = False
        self.spell = 0.0
        """Seconds the next relay started runs at its niceness before going to idle time."""
        self.starved_at: float | None = None

    def _environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "OMS_RELAY_SETTINGS": self.settings.model_dump_json(),
            "OMS_RELAY_OWNER": f"{self.instance}/relay/{secrets.token_hex(4)}",
            "OMS_RELAY_PARENT": str(os.getpid()),
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            "OMS_RELAY_IDLE_AFTER": str(self.spell),
        }

    async def _spawn(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "oms.events.worker", env=self._environment(), stdin=asyncio.subprocess.DEVNULL
        )

    async def start(self) -> None:
        self.process = await self._spawn()
        self.watcher = asyncio.create_task(self._watch())
        if self.settings.relay_idle:
            self.guard = asyncio.create_task(self._guard())

    async def start_when_needed(self, database: Database) -> None:
        """Start the relay process once there is something to send (until then, none runs: a process
        and its memory saved where events only reach the feed), looking every ``LOOK`` seconds."""
        while not self.stopping:
            if await something_to_send(database, self.settings):
                log.info("relay process starting: there are events to send")
                await self.start()
                return
            await asyncio.sleep(LOOK)

    async def _watch(self) -> None:
        wait = 1.0
        while not self.stopped():
            assert self.process is not None
            code = await self.process.wait()
            mark_process_dead(self.process.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
            if self.stopped():
                return
            if self.starved:
                now = time.monotonic()
                self.starved, self.spell = False, next_spell(self.spell, self.starved_at, now)
                self.starved_at = now
            else:
                log.error("relay process ended: starting it again", returncode=code, retry_in=wait)
                await asyncio.sleep(wait)
                wait = min(RESTART_MAX, wait * 2)
            if self.stopped():
                return
            self.process = await self._spawn()
            if self.stopped():  # stop() came while it was being started: it found no process to end
                await self._end(self.process, 0.0)
                return

    async def _guard(self) -> None:
        """Kill the relay if it starves in the cores' idle time, to be started again at its niceness."""
        watch, watching = Watch(), 0
        while not self.stopped():
            await asyncio.sleep(watch.tick)
            process = self.process
            if self.stopped() or process is None or process.returncode is not None or not in_idle_time(process.pid):
                continue
            if process.pid != watching:
                watch, watching = Watch(), process.pid
            seen = waited_so_far(process.pid)
            if seen is not None and watch.came(time.monotonic(), *seen):
                log.warning(
                    "relay starved in the cores' idle time: started again at its niceness",
                    waited=round(watch.waited, 2), ran=round(watch.ran, 2), within=watch.window,
                )  # fmt: skip
                self.starved = True
                try:
                    process.kill()  # a starving process could not stop itself in good time
                except ProcessLookupError:  # it ended by itself meanwhile: an ordinary restart
                    self.starved = False
                await process.wait()

    def stopped(self) -> bool:
        return self.stopping

    async def stop(self, grace: float = 5.0) -> None:
        self.stopping = True
        if self.process is not None:
            await self._end(self.process, grace)
        for task in (self.guard, self.watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        shutil.rmtree(self.metrics_dir, ignore_errors=True)

    @staticmethod
    async def _end(process: asyncio.subprocess.Process, grace: float) -> None:
        """SIGTERM (its ways written back and let go), SIGKILL after ``grace`` seconds."""
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
