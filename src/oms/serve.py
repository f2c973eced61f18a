"""``oms serve``: one service in this process, its pid in ``<data_dir>/<service>.pid`` meanwhile."""

from __future__ import annotations

import contextlib
import os
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
    from oms.logs import configure

    settings = Settings.model_validate({})
    configure(settings.log_level, settings.log_format, os.environ["OMS_SERVICE"])
    set_limits(settings)
    return create_app(os.environ["OMS_SERVICE"], settings)


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
    from oms.logs import configure

    configure(settings.log_level, settings.log_format, service)
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
        http=BoundedHttpToolsProtocol,  # httptools, with a header-size limit and a per-request deadline
        log_level=settings.log_level,
        log_config=None,  # its loggers reach the root logger, whose handler oms.logs set up: one format
        access_log=False,
        timeout_graceful_shutdown=10,
    )
