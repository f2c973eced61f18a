"""Schemathesis hooks for ``test_fuzz.py`` (loaded by ``st run`` through ``SCHEMATHESIS_HOOKS``)."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]) -> None:
    # Every POST and PUT must say its body is JSON (the Gate answers 415 otherwise, as the
    # documents say), a body-less one too: without this, a generated call to POST
    # /orders/{order_id}/cancel and the like would never get past the Gate.
    if case.method in ("POST", "PUT") and not case.operation.body:
        headers = case.headers if case.headers is not None else {}
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
            case.headers = headers
