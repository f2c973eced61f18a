"""Schemathesis with an admin's token against the three services (``fuzzing``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzzing import fuzz_all, fuzzed_system
from system import System

from oms.auth.tokens import admin_token


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[System]:
    with fuzzed_system(tmp_path) as system:
        yield system


def test_fuzz_as_admin(fuzzed: System) -> None:
    fuzz_all(fuzzed, admin_token(fuzzed.key, ttl=3600))
