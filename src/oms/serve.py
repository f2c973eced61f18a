"""``oms serve``: one service in this process, its pid in ``<data_dir>/<service>.pid`` meanwhile."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from typing import Any

from oms.config import Settings
from oms.pidfile import claim_pid_file, pid_file, release_pid_file


def create_app(service: str, settings: Settings) -> Any:
    """The service's ASGI app: its routes behind the Gate (which makes a server span per request
    when tracing is on)."""
    if service == "order":
        from oms.orders.api import create_app as order_app

        return order_app(settings)
    if service == "inventory":
        from oms.inventory.api import create_app as inventory_app

        return inventory_app(settings)
    from oms.payments.api import create_app as payment_app

    return payment_app(settings)


def app_from_environment() -> Any:
    """For ``--workers``: each worker process builds its app from the OMS_* environment."""
    from oms.edge.protocol import set_limits
    from oms.telemetry.logs import configure

    settings = Settings.model_validate({})
    configure(settings.log_level, settings.log_format, os.environ["OMS_SERVICE"])
    set_limits(settings)
    return create_app(os.environ["OMS_SERVICE"], settings)


OPEN_FILES_BESIDES_CONNECTIONS = 200
"""Files a service keeps open besides its clients' connections: its database's, its log and audit
files, the listening socket, its own connections to the services it calls (100 a downstream), some
to spare."""

NO_HARD_LIMIT_TARGET = 1 << 20
"""The soft limit sought when the hard one is unlimited: Linux's default ``fs.nr_open``, the most a
process may open."""


def raise_open_files_limit() -> tuple[int, int]:
    """Raises this process's soft limit on open files (RLIMIT_NOFILE) to its hard limit, so that it
    can hold ``max_connections`` sockets: distributions start processes with a soft limit of 1024
    while the hard one is far higher, and a socket past the soft limit fails to be accepted (the
    client waits in the listen queue). Its workers inherit it. Answers (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = NO_HARD_LIMIT_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):  # beyond what the kernel allows (macOS caps below unlimited)
            return soft, soft
        return soft, wanted
    return soft, soft


def _open_files_limit(settings: Settings) -> None:
    import structlog

    log = structlog.get_logger("oms.serve")
    before, after = raise_open_files_limit()
    if after != before:
        log.info("open files limit raised", before=before, after=after)
    if after != resource.RLIM_INFINITY and after < settings.max_connections + OPEN_FILES_BESIDES_CONNECTIONS:
        log.warning(
            "open files limit too low for max_connections: raise the hard limit (ulimit -Hn, LimitNOFILE= in a "
            "systemd unit, --ulimit nofile= for Docker) or lower max_connections",
            limit=after, max_connections=settings.max_connections,
        )  # fmt: skip


def listen_backlog(settings: Settings) -> int:
    """Connections the kernel queues before the service accepts them: enough for a burst of
    ``max_connections`` (the kernel caps it at ``net.core.somaxconn``, 4096 on Linux 5.4 and later)."""
    return min(max(2048, settings.max_connections), 65535)


def _stopped(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def serve(service: str, settings: Settings) -> None:
    """Run ``service`` until it is stopped; its pid is in ``<data_dir>/<service>.pid`` meanwhile."""
    pid = os.getpid()
    path = pid_file(settings.data_dir, service)
    # SIGTERM is a clean stop, even before uvicorn takes the signal over (and uvicorn raises it again
    # once it has shut down): exit 0 through the ``finally`` below, instead of dying of it.
    signal.signal(signal.SIGTERM, _stopped)
    claimed = claim_pid_file(path, pid)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the same clean stop
            _serve(service, settings)
    finally:
        if claimed:
            release_pid_file(path, pid)


def _serve(service: str, settings: Settings) -> None:
    import uvicorn

    from oms.edge.protocol import BoundedHttpToolsProtocol, set_limits
    from oms.telemetry.logs import configure

    configure(settings.log_level, settings.log_format, service)
    _open_files_limit(settings)  # before the workers, which inherit it
    set_limits(settings)  # before the app: each connection reads them when it opens
    app: Any
    if settings.workers == 1:
        app = create_app(service, settings)
    else:
        # Workers are new processes: they read the settings (flags included) from the environment.
        os.environ.update(settings.environment())
        os.environ["OMS_SERVICE"] = service
        os.environ["OMS_MAIN_PID"] = str(os.getpid())
        app = "oms.serve:app_from_environment"
    uvicorn.run(
        app,
        factory=settings.workers > 1,
        workers=settings.workers,
        host=settings.host,
        port=settings.port_for(service),
        loop="uvloop",
        http=BoundedHttpToolsProtocol,  # httptools, with connection caps, a header-size limit and deadlines
        backlog=listen_backlog(settings),
        log_level=settings.log_level,
        log_config=None,  # its loggers reach the root logger, whose handler oms.telemetry.logs set up: one format
        access_log=False,
        timeout_graceful_shutdown=10,
    )
