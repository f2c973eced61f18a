"""The collector's settings once a service is serving (oms.edge.gc_tuning)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI

from oms.config import Settings
from oms.edge import gc_tuning
from oms.edge.app import service_app


@pytest.fixture
def collector() -> Iterator[None]:
    """Put the test process's collector back as it was."""
    before = gc.get_threshold()
    gc_tuning._settled = False
    yield
    gc.unfreeze()
    gc.set_threshold(*before)
    gc_tuning._settled = False


@asynccontextmanager
async def nothing(app: FastAPI) -> AsyncIterator[None]:
    yield


def test_a_service_settles_its_heap_once_started(collector: None) -> None:
    app = service_app("t", "payment", Settings.model_validate({"gc_threshold": 12345}), nothing)
    assert gc.get_threshold()[0] != 12345

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            assert gc.get_threshold() == (12345, *gc_tuning.OLDER)
            assert gc.get_freeze_count() > 1000  # what start-up left: out of the collector's sight

    asyncio.run(serve())


def test_zero_keeps_pythons_collector(collector: None) -> None:
    before = gc.get_threshold()
    gc_tuning.settle(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_only_the_first_settle_counts(collector: None) -> None:
    gc_tuning.settle(5000)
    gc_tuning.settle(9000)
    assert gc.get_threshold()[0] == 5000
