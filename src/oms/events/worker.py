"""``python -m oms.events.worker``: the relay's process, started by an OrderService process
(``oms.events.process``) with its settings in ``OMS_RELAY_SETTINGS`` and its name in
``OMS_RELAY_OWNER``. It ends on SIGTERM (its ways written back and let go) and when the OrderService
process that started it ends, however that ends (Linux: the parent-death signal; elsewhere it looks
at its parent every second). With ``relay_idle`` it moves to the cores' idle time once
``OMS_RELAY_IDLE_AFTER`` seconds have passed (``oms.events.idle``)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys

import structlog

from oms import db as storage
from oms.config import Settings
from oms.events.aside import Aside, WaysAside
from oms.events.idle import to_idle_time
from oms.events.metrics import RelayMetrics
from oms.events.nats import EventStream
from oms.events.relay import Relay
from oms.events.sender import new_pool
from oms.events.ways import Ways
from oms.telemetry.logs import configure

log = structlog.get_logger("oms.events.relay")

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent ends (Linux); exit now if it has ended already."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)


async def watch_parent(parent: int, relay: Relay) -> None:
    """Stop the relay once its parent is gone (a poll: nothing tells a process its parent has ended)."""
    while not relay.stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(relay.stopping.wait(), 1.0)
        if os.getppid() != parent:
            relay.stop()


async def go_idle(relay: Relay, after: float) -> None:
    """To the cores' idle time, ``after`` seconds from now."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(relay.stopping.wait(), after)
    if not relay.stopping.is_set():
        if to_idle_time():
            log.info("relay runs in the cores' idle time")
        else:
            log.info("relay cannot run in the cores' idle time here: it stays at its niceness")


async def serve(settings: Settings, owner: str, parent: int) -> None:
    # In idle time, the database work stays at the niceness, on a thread of its own (oms.events.aside).
    aside = Aside() if settings.relay_idle else None
    connecting = storage.connect(
        settings.database_url_for("order"),
        sqlite_synchronous=settings.sqlite_synchronous,
        pool_size=min(4, settings.database_pool_size),
        statement_timeout=settings.database_timeout,
    )
    database = await (aside.run(connecting) if aside is not None else connecting)
    ways = WaysAside(database, aside) if aside is not None else Ways(database)
    # The relay of an earlier process of this OrderService (host and port, and its pid among several
    # workers) is dead, or this one's killed relay: its ways are free.
    await ways.free_leases_of(owner.rsplit("/", 1)[0] + "/")
    delivery = settings.webhook
    nats_url = settings.nats_url
    session = new_pool(settings.webhook.concurrency)
    relay = Relay(
        ways,
        owner=owner,
        delivery=delivery,
        metrics=RelayMetrics(),
        session=session,
        stream=(lambda: EventStream(nats_url, retention=settings.event_retention)) if nats_url else None,
        tally=False,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, relay.stop)
    loop.add_signal_handler(signal.SIGINT, relay.stop)
    watchers = [asyncio.create_task(watch_parent(parent, relay))]
    if settings.relay_idle:
        watchers.append(asyncio.create_task(go_idle(relay, float(os.environ.get("OMS_RELAY_IDLE_AFTER", "0")))))
    log.info("relay started", owner=owner, nats=bool(nats_url))
    try:
        await relay.run()
    finally:
        for watcher in watchers:
            watcher.cancel()
        await session.close()
        if aside is not None:
            try:
                await aside.run(database.close())
            finally:
                aside.close()
        else:
            await database.close()
        log.info("relay stopped", owner=owner)


def main() -> None:
    parent = int(os.environ["OMS_RELAY_PARENT"])
    die_with_parent(parent)
    settings = Settings.model_validate_json(os.environ["OMS_RELAY_SETTINGS"])
    configure(settings.log_level, settings.log_format, "order")
    if settings.relay_nice:
        with contextlib.suppress(OSError):
            os.nice(settings.relay_nice)
    try:
        import uvloop

        uvloop.run(serve(settings, os.environ["OMS_RELAY_OWNER"], parent))
    except ImportError:  # uvloop is Linux and macOS only
        asyncio.run(serve(settings, os.environ["OMS_RELAY_OWNER"], parent))


if __name__ == "__main__":
    main()
