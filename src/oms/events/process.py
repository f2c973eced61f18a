"""The relay's process, beside an OrderService process: started with it, started again if it dies,
stopped with it (and killed by the kernel if the OrderService process is killed: ``oms.events.worker``).

Its metrics reach OrderService's ``GET /metrics`` through a directory of prometheus-client's
multiprocess files, one per OrderService process, removed when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from oms.config import Settings
from oms.db import Database
from oms.errors import Fault
from oms.events.metrics import EventCount
from oms.events.relay import Relay
from oms.events.ways import TALLY, Ways

log = structlog.get_logger("oms.events.relay")

RESTART_MAX = 30.0
"""Seconds at most between two starts of a relay that keeps dying."""


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

    def _environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "OMS_RELAY_SETTINGS": self.settings.model_dump_json(),
            "OMS_RELAY_OWNER": f"{self.instance}/relay/{secrets.token_hex(4)}",
            "OMS_RELAY_PARENT": str(os.getpid()),
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
        }

    async def _spawn(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "oms.events.worker", env=self._environment(), stdin=asyncio.subprocess.DEVNULL
        )

    async def start(self) -> None:
        self.process = await self._spawn()
        self.watcher = asyncio.create_task(self._watch())

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
            log.error("relay process ended: starting it again", returncode=code, retry_in=wait)
            await asyncio.sleep(wait)
            wait = min(RESTART_MAX, wait * 2)
            self.process = await self._spawn()

    def stopped(self) -> bool:
        return self.stopping

    async def stop(self, grace: float = 5.0) -> None:
        self.stopping = True
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self.watcher is not None:
            self.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watcher
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
