"""A downstream call that fails says how many of its tries left OrderService (``CallError.sent``),
which the saga log keeps and the order's diagram draws: a circuit that was open from the start sent
nothing, one that opened during the call sent the tries before it."""

from __future__ import annotations

import asyncio

import pytest

from oms.cli.supervisor import free_ports
from oms.orders.clients import Downstream
from oms.orders.ports import Unavailable
from oms.resilience.breaker import BreakerConfig, CircuitBreaker
from oms.resilience.retry import RetryPolicy


def refused_call(breaker: CircuitBreaker, attempts: int = 3) -> Unavailable:
    """The error of a call to a port nobody listens on."""
    [port] = free_ports(1)
    downstream = Downstream(
        "inventory", f"http://127.0.0.1:{port}", timeout=1.0, breaker=breaker,
        retry=RetryPolicy(attempts=attempts, wait_initial=0.001, wait_max=0.002),
    )  # fmt: skip

    async def call() -> Unavailable:
        try:
            with pytest.raises(Unavailable) as raised:
                await downstream.request("POST", "/inventory/check", {"items": []})
            return raised.value
        finally:
            await downstream.close()

    return asyncio.run(call())


def test_every_try_refused_is_counted() -> None:
    error = refused_call(CircuitBreaker("inventory", BreakerConfig(minimum_calls=10)))
    assert (error.reason, error.sent) == ("connection_refused", 3)


def test_an_open_circuit_sends_nothing() -> None:
    breaker = CircuitBreaker("inventory", BreakerConfig(minimum_calls=1, wait_in_open=60))
    refused_call(breaker, attempts=1)  # one failure in one call: open
    error = refused_call(breaker)
    assert (error.reason, error.sent) == ("circuit_open", 0)


def test_a_circuit_that_opens_during_the_call_counts_the_tries_before() -> None:
    error = refused_call(CircuitBreaker("inventory", BreakerConfig(minimum_calls=2, wait_in_open=60)))
    assert (error.reason, error.sent) == ("circuit_open", 2)
