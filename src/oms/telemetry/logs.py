"""structlog set-up: one line per event, as ``key=value`` text (the default) or as one JSON object.

Every line carries ``timestamp`` (UTC, ISO 8601), ``level``, ``event`` and the ``service``, and what
the code running at the time has bound with ``structlog.contextvars.bind_contextvars``: the Gate
binds each request's ``request_id``, OrderService a saga's ``order_id``, ``saga`` and ``step`` (and
anything else, a ``trace_id``, is merged the same way). Lines of the standard library's loggers
(uvicorn's, Alembic's, asyncio's) go through the same processors and renderer, so a log file in
JSON is JSON on every line.

structlog's own lines go to standard output, the standard library's to standard error (where
uvicorn's went before): each is written whole and flushed, so both can share one file.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable
from typing import Any, Literal

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

Format = Literal["json", "text"]
FORMATS: tuple[Format, ...] = ("json", "text")


def context_var(key: str) -> contextvars.ContextVar[Any]:
    """The context variable behind ``structlog.contextvars.bind_contextvars(key=...)``, left unset:
    set directly, it costs one ``ContextVar.set`` per request, without that call's dict and lookups."""
    token = structlog.contextvars.bind_contextvars(**{key: None})[key]
    token.var.reset(token)
    return token.var


def add_service(service: str | None) -> Processor:
    """A processor that puts ``service`` on every line (once per process: no context to look up)."""

    def processor(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if service is not None:
            event_dict.setdefault("service", service)
        return event_dict

    return processor


def _dumps(value: Any, **kwargs: Any) -> str:
    return orjson.dumps(value, **kwargs).decode()


def shared_processors(service: str | None) -> list[Processor]:
    """What every line goes through before it is rendered, from structlog or from ``logging``."""
    return [
        structlog.contextvars.merge_contextvars,
        add_service(service),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def renderer(fmt: Format, *, as_bytes: bool) -> Processor:
    """The last processor: one JSON object (orjson; ``as_bytes`` for structlog's BytesLogger) or text."""
    if fmt == "json":
        return structlog.processors.JSONRenderer(serializer=orjson.dumps if as_bytes else _dumps)
    return structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)


def _level(level: str) -> int:
    numeric = logging.getLevelName(level.upper())
    return numeric if isinstance(numeric, int) else logging.INFO


def configure(level: str = "info", fmt: Format = "text", service: str | None = None) -> None:
    """Set up structlog and the standard library's root logger; uvicorn is then run with
    ``log_config=None``, so its loggers reach the root logger's handler set up here."""
    numeric = _level(level)
    shared = shared_processors(service)
    # A traceback is one string field in JSON (the renderer escapes its newlines); text prints it.
    exc: list[Processor] = [structlog.processors.format_exc_info] if fmt == "json" else []
    factory: Callable[..., Any] = (
        structlog.BytesLoggerFactory(sys.stdout.buffer) if fmt == "json" else structlog.PrintLoggerFactory()
    )
    structlog.configure(
        processors=[*shared, *exc, renderer(fmt, as_bytes=fmt == "json")],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *exc, renderer(fmt, as_bytes=False)],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Other libraries' info lines (a dozen of Alembic's at each start) were never shown before the
    # root logger had a handler, only their warnings: so it stays, unless debug lines are asked for.
    root.setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    # uvicorn's dictConfig, when it ran earlier in this process, gave its loggers handlers of their own.
    # (Not uvicorn.access: uvicorn cuts it off without access_log, and a protocol that finds it
    # reaching a handler writes a line for every request.)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
        named.setLevel(numeric)
    logging.captureWarnings(True)  # a warning is a log line too, not a stray line on stderr
