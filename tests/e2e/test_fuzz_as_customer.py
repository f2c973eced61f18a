"""Schemathesis with a customer's token against the three services (``fuzzing``); afterwards ``oms
audit`` finds the three databases in agreement."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzzing import CUSTOMER, fuzz_all, fuzzed_system
from system import System

from oms.auth.tokens import customer_token


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[System]:
    with fuzzed_system(tmp_path) as system:
        yield system


def test_fuzz_as_customer(fuzzed: System) -> None:
    fuzz_all(fuzzed, customer_token(fuzzed.key, CUSTOMER, ttl=3600))
    urls = ["--url", fuzzed.url("order"), "--inventory-url", fuzzed.url("inventory")]
    urls += ["--payment-url", fuzzed.url("payment")]
    command = [sys.executable, "-m", "oms", "audit", *urls, "--key-file", str(fuzzed.key_file)]
    audit = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
