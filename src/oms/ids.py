"""Ids that sort by the time they were made: a prefix, 12 hex digits of milliseconds, 12 random.

Within one process they also sort by the order they were made (as a monotonic ULID does): an id made
in the same millisecond as the one before, or while the wall clock stepped back, is the one before
plus one. So "oldest first" by id holds for things one process makes in a burst (a list of
endpoints made in the same millisecond, say); across processes it holds to the millisecond."""

from __future__ import annotations

import secrets
import threading
import time

_RANDOM_BITS = 48
_lock = threading.Lock()
_last = 0


def sortable_id(prefix: str) -> str:
    """``prefix`` and 24 hex digits, greater than any this process made before."""
    global _last
    fresh = (int(time.time() * 1000) << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS)
    with _lock:
        value = _last = max(fresh, _last + 1)
    return f"{prefix}{value:024x}"
