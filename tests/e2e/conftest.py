from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from system import System


@pytest.fixture(scope="module")
def shared_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """One system for the tests that leave every service running."""
    system = System(tmp_path_factory.mktemp("system")).start_all()
    yield system
    system.stop_all()


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    """A system of its own, for a test that kills or pauses a service."""
    system = System(tmp_path).start_all()
    yield system
    system.stop_all()


@pytest.fixture
def make_system(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], System]]:
    """A system of its own with extra OMS_* settings."""
    systems: list[System] = []

    def make(env: dict[str, str]) -> System:
        system = System(tmp_path, env).start_all()
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.stop_all()
