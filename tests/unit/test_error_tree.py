"""One tree of errors: every exception class oms defines (its private helpers aside) is an
``OmsError``, and a refusal is a call failure as much as no answer is."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import oms
from oms.errors import CallFailure, OmsError
from oms.orders.ports import CallError, NoAnswer, Refused, Unavailable


def defined_exceptions() -> list[type[BaseException]]:
    found = []
    for module_info in pkgutil.walk_packages(oms.__path__, "oms."):
        if module_info.name.endswith(("__main__", "migrations.env")) or ".migrations.versions" in module_info.name:
            continue
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found.append(value)
    return found


def test_every_exception_oms_defines_is_an_oms_error() -> None:
    found = defined_exceptions()
    assert len(found) > 20
    strays = [
        f"{e.__module__}.{e.__qualname__}"
        for e in found
        if not issubclass(e, OmsError) and not e.__name__.startswith("_")
    ]
    assert strays == []


def test_a_refusal_and_no_answer_are_both_call_failures() -> None:
    assert all(issubclass(e, CallFailure) for e in (CallError, Unavailable, NoAnswer, Refused))
    assert not issubclass(Refused, CallError)  # a definite no is not an unknown outcome
