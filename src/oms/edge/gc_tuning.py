"""How a service's Python heap is collected once it is serving.

CPython's cyclic garbage collector starts a young-generation pass every 700 container objects
allocated (net), and a full pass now and then that visits every object alive, the hundred thousand
or so that importing FastAPI, pydantic, SQLAlchemy and the app itself leaves behind included. Under
load that measured as a tenth of OrderService's CPU per order (`oms bench`: about 130 µs of 1.2 ms,
read with gc.callbacks), for objects that live as long as the process.

:func:`settle` is called once start-up is over: it collects what start-up left as garbage, moves every
object still alive out of the collector's sight (``gc.freeze``: they are never freed, and scanning
them finds nothing), and spaces the young passes further apart. Reference counting frees almost
everything a request makes the moment it is done with; the collector is only for cycles, and those
are still collected, less often. The threshold is a setting (``gc_threshold``; 0 keeps Python's
own collector as it is).
"""

from __future__ import annotations

import gc

OLDER = (20, 20)
"""Young passes per middle pass, middle passes per full pass (Python's own: 10, 10)."""


_settled = False


def settle(threshold: int) -> None:
    """Start-up is over: collect, freeze what is left, then a young pass every ``threshold``
    allocations. Nothing when ``threshold`` is 0, nor after the first time in a process (a test run
    starts many apps in one)."""
    global _settled
    if threshold <= 0 or _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, *OLDER)
