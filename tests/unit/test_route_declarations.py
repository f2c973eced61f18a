"""Default deny: a service whose routes do not all declare their callers refuses to start."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from oms.auth.tokens import Role
from oms.config import Settings
from oms.edge import access
from oms.edge.access import Undeclared, only, public
from oms.edge.app import Front, gated, service_app


@contextlib.asynccontextmanager
async def nothing(app: FastAPI) -> AsyncIterator[None]:
    yield


def app_of(tmp_path: Path) -> tuple[FastAPI, Settings]:
    settings = Settings.model_validate({"data_dir": tmp_path, "audit_log": "off"})
    return service_app("test", "inventory", settings, nothing), settings


def test_a_route_that_declares_nothing_stops_the_service_from_starting(tmp_path: Path) -> None:
    app, settings = app_of(tmp_path)

    @app.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    with pytest.raises(Undeclared, match="GET /forgotten"):
        gated(Front(app, 1024), settings, "inventory")


def test_a_route_that_declares_twice_is_refused_too(tmp_path: Path) -> None:
    app, _ = app_of(tmp_path)

    @app.get("/both", dependencies=[only(Role.ADMIN), public()])
    async def both() -> dict[str, str]:
        return {}

    with pytest.raises(Undeclared, match="/both"):
        access.check(app)


def test_files_mounted_without_a_declaration_are_refused(tmp_path: Path) -> None:
    app, _ = app_of(tmp_path)
    app.mount("/files", StaticFiles(directory=tmp_path), name="files")
    with pytest.raises(Undeclared, match="/files"):
        access.check(app)
    access.public_files(app, "/files")
    _, prefixes = access.check(app)
    assert "/files/" in prefixes


def test_the_public_paths_are_the_declared_ones(tmp_path: Path) -> None:
    app, _ = app_of(tmp_path)
    paths, prefixes = access.check(app)
    assert paths == {"/health", "/ready", "/docs", "/openapi.json"}
    assert prefixes == ("/docs/assets/",)


def test_only_needs_a_role() -> None:
    with pytest.raises(ValueError):
        only()


def test_a_trailing_slash_redirect_is_relative_whatever_the_host(tmp_path: Path) -> None:
    app, _ = app_of(tmp_path)

    async def go() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://evil.example") as http:
            return await http.get("/health/?x=1"), await http.get("/nowhere/")

    answer, missing = asyncio.run(go())
    assert answer.status_code == 307 and answer.headers["location"] == "/health?x=1"
    assert missing.status_code == 404 and "location" not in missing.headers
    assert missing.headers["content-type"] == "application/problem+json"
