"""Who may call each route: every route declares it, and a service that has a route declaring
nothing refuses to start (:func:`check`). Nothing is open by default.

A FastAPI route declares its callers with one dependency, ``dependencies=[only(Role.ADMIN, ...)]``
(checked before its handler runs: 401 without a caller, 403 for another role), or
``dependencies=[public()]`` (anyone, no token needed). A hot route (``oms.edge.app.Front``) names its
``roles``. A mounted directory of files is public only when :func:`public_files` says so.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from oms.auth.tokens import Principal, Role
from oms.edge.problems import Problem
from oms.errors import OmsError


class Undeclared(OmsError, RuntimeError):
    """A route says nothing of who may call it."""


class Access:
    """A route dependency that lets past only callers of ``roles`` (``None``: anyone, no token)."""

    def __init__(self, roles: frozenset[Role] | None) -> None:
        self.roles = roles

    # async: FastAPI runs a plain function dependency in a worker thread, which measured about 200 µs
    # of CPU a request; a coroutine runs on the event loop.
    async def __call__(self, request: Request) -> None:
        if self.roles is not None:
            allow(request, *self.roles)


def only(*roles: Role) -> Any:
    """``dependencies=[only(...)]``: only callers of these roles get past (401, 403)."""
    if not roles:
        raise ValueError("only() needs at least one role; a route for anyone is public()")
    return Depends(Access(frozenset(roles)))


def public() -> Any:
    """``dependencies=[public()]``: anyone may call the route, with or without a token."""
    return Depends(Access(None))


def public_files(app: FastAPI, prefix: str) -> None:
    """Declare the directory mounted at ``prefix`` (``/docs/assets``) public."""
    app.state.public_files = (*getattr(app.state, "public_files", ()), prefix.rstrip("/") + "/")


def declared(route: APIRoute) -> Access | None:
    """What ``route`` declares, or None when it declares nothing."""
    found = [d.dependency for d in route.dependencies if isinstance(d.dependency, Access)]
    return found[0] if len(found) == 1 else None


def check(app: FastAPI) -> tuple[frozenset[str], tuple[str, ...]]:
    """Every route of ``app`` declares its callers, or :class:`Undeclared`; the answer: the public
    paths and the public prefixes, for the Gate (which lets their callers through without a token)."""
    paths: set[str] = set()
    prefixes: tuple[str, ...] = getattr(app.state, "public_files", ())
    for route in app.routes:
        if isinstance(route, APIRoute):
            access = declared(route)
            if access is None:
                methods = ",".join(sorted(route.methods or ()))
                raise Undeclared(f"{methods} {route.path} declares none or several of only(...) and public()")
            if access.roles is None:
                paths.add(route.path)
        elif isinstance(route, Mount):
            if route.path.rstrip("/") + "/" not in prefixes:
                raise Undeclared(f"the files mounted at {route.path} are not declared public_files()")
        elif isinstance(route, Route) and route.path == app.openapi_url:
            paths.add(route.path)  # the OpenAPI document: public, as the API's description
        else:
            raise Undeclared(f"{getattr(route, 'path', route)!r} is not a route whose callers can be declared")
    return frozenset(paths), prefixes


def principal(request: Request) -> Principal | None:
    found: Principal | None = request.scope["state"].get("principal")
    return found


def allow(request: Request, *roles: Role) -> Principal:
    """The caller, if its role is one of ``roles``; else 401 (no caller) or 403."""
    caller = principal(request)
    if caller is None:
        raise Problem(401, "Unauthenticated", "This route needs a bearer token.", type_="/problems/unauthenticated")
    if caller.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise Problem(
            403, "Forbidden", f"A {caller.role.value} token may not do this; it needs the role {allowed}.",
            type_="/problems/forbidden",
        )  # fmt: skip
    return caller


def audit(request: Request, action: str, target: str | None) -> None:
    """Name what this call does and to which object, for its line in the audit trail."""
    request.scope["state"]["audit"] = (action, target)
