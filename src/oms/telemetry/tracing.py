"""Tracing: one OpenTelemetry trace per order across the three services, off unless configured.

The standard variables configure it: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, both with a
comma, ``none``), ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``: an endpoint alone means
``otlp``), ``OTEL_SERVICE_NAME`` (``oms-order``, ``oms-inventory``, ``oms-payment`` by default),
``OTEL_SDK_DISABLED=true``, and the others an SDK reads: ``OTEL_EXPORTER_OTLP_HEADERS``, ``_TIMEOUT``,
``_COMPRESSION``, ``OTEL_BSP_*``, ``OTEL_TRACES_SAMPLER`` (``oms.telemetry.otlp.Options``,
``oms.telemetry.spans.sampler``).

Without an exporter named or an endpoint given, :func:`setup` answers None: :mod:`oms.telemetry.spans` is not
even imported, no span is made; every place that traces checks ``tracing is None`` once (or chose
its path when it was built), and does nothing more. With one, :mod:`oms.telemetry.spans` makes the spans and
:mod:`oms.telemetry.otlp` sends them (see their docstrings for which spans, and why not the SDK's).

This module is pure: reading the environment, naming routes, and the stored form of a span's
context (``trace_context``: the 32 hex digits of its trace id, ``-``, the 16 of its span id).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oms.telemetry.spans import Tracing

EXPORTERS = ("otlp", "console")
_TRACE_CONTEXT = re.compile(r"^[0-9a-f]{32}-[0-9a-f]{16}$")
_current: dict[str, Tracing | None] = {}


def exporters(environ: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for; none: tracing is off.

    Raises ValueError for an exporter this build does not have (a misspelling should not pass for off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not named and (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        named = ["otlp"]  # the specification's default exporter, once told where to send
    if "none" in named:
        return []
    unknown = [n for n in named if n not in EXPORTERS]
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} is not one of otlp, console, none")
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if "otlp" in named and protocol not in (None, "", "http/protobuf"):
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol} is not installed; http/protobuf is")
    return list(dict.fromkeys(named))


def service_name(service: str, environ: Mapping[str, str]) -> str:
    return environ.get("OTEL_SERVICE_NAME") or f"oms-{service}"


def setup(service: str, environ: Mapping[str, str] | None = None) -> Tracing | None:
    """This process's tracing for ``service`` (made once), or None when the environment asks for none."""
    if service not in _current:
        env = os.environ if environ is None else environ
        names = exporters(env)
        if names:
            from oms.telemetry.spans import build

            _current[service] = build(service_name(service, env), names, env)
        else:
            _current[service] = None
    return _current[service]


_TEMPLATED = {"orders": "{order_id}", "reservations": "{order_id}", "items": "{sku}"}


def route_of(path: str) -> str:
    """A path with its ids as the route's parameters (``/orders/{order_id}/cancel``): span names stay
    few, whatever the ids."""
    path = path.split("?", 1)[0]
    parts = path.split("/")
    if len(parts) > 2 and parts[1] in _TEMPLATED and parts[2]:
        parts[2] = _TEMPLATED[parts[1]]
    return "/".join(parts)


def trace_id_of(trace_context: str | None) -> str | None:
    """The trace id (32 hex digits) of a stored ``trace_context``."""
    return trace_context[:32] if trace_context else None


def parse_trace_context(trace_context: str | None) -> tuple[int, int] | None:
    """(trace id, span id) of a stored ``trace_context``, or None when there is none (or it is not one)."""
    if not trace_context or not _TRACE_CONTEXT.match(trace_context):
        return None
    trace_id, span_id = int(trace_context[:32], 16), int(trace_context[33:], 16)
    return (trace_id, span_id) if trace_id and span_id else None


def format_trace_context(trace_id: int, span_id: int) -> str:
    return f"{trace_id:032x}-{span_id:016x}"


def trace_url(template: str | None, trace_id: str | None) -> str | None:
    """``trace_url_template`` with the order's trace id in it (``{trace_id}``), when both are there."""
    if not template or not trace_id:
        return None
    return template.replace("{trace_id}", trace_id)
