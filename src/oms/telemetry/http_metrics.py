"""Every request of a service, counted and timed by route template and status code.

``oms_http_requests_total{service,method,route,status}`` and
``oms_http_request_seconds{service,method,route}``: the route is the template a request matched
(``/orders/{order_id}``), never its raw path, so the labels stay few whatever paths callers send;
a path that matches no route is ``unmatched``.

The Gate calls :meth:`HttpMetrics.observe` once per request, after the answer. What that costs: the
template is found without matching in the usual cases (a hot route's path is its template; FastAPI
left the route it matched in the scope), and the metric children of one (method, route, status)
are looked up once and kept in a dict, since prometheus_client's ``labels()`` costs a few µs each
time. Only a request that never reached the router (refused by the Gate: 401, 415, 429) is matched
against the routes here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

UNMATCHED = "unmatched"
"""The route label of a request whose path matches no route (a 404)."""

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class HttpMetrics:
    def __init__(
        self,
        service: str,
        registry: CollectorRegistry,
        *,
        routes: Sequence[BaseRoute] = (),
        lean: Collection[str] = (),
    ) -> None:
        """``routes``: the app's routes, to find a template for a request the router never saw;
        ``lean``: the paths of the POST routes answered ahead of the router (``oms.edge.app.Front``),
        each its own template."""
        self.service = service
        self.routes = routes
        self.lean = lean
        self.requests = Counter(
            "oms_http_requests", "HTTP requests answered, by route template and status code",
            ["service", "method", "route", "status"], registry=registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "oms_http_request_seconds", "Time from a request's arrival at the Gate to its answer, by route template",
            ["service", "method", "route"], registry=registry, buckets=BUCKETS,
        )  # fmt: skip
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        method: str = scope["method"]
        route = scope.get("route")
        if route is not None:
            template: str = getattr(route, "path", None) or UNMATCHED
        elif method == "POST" and scope["path"] in self.lean:
            template = scope["path"]
        else:
            template = self.template(scope)
        key = (method, template, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(self.service, method, template, str(status)),
                self.seconds.labels(self.service, method, template),
            )
        children[0].inc()
        children[1].observe(seconds)

    def template(self, scope: Scope) -> str:
        """The template of the route ``scope`` would match (a path and method, or a path alone)."""
        found = UNMATCHED
        probe = {"type": "http", "path": scope["path"], "method": scope["method"], "root_path": ""}
        for route in self.routes:
            match, _ = route.matches(probe)
            if match is Match.FULL:
                return str(getattr(route, "path", UNMATCHED))
            if match is Match.PARTIAL and found == UNMATCHED:
                found = str(getattr(route, "path", UNMATCHED))
        return found
