"""The relay in the cores' idle time (Linux's ``SCHED_IDLE``), and the watch that sees it starve.

Why: an event can wait a few milliseconds; an order should not. At niceness 10 the relay still takes
a core from an OrderService process each time it wakes (an answer came, a pass is due), and the
orders' latency grows by that; in idle time it runs only on a core nothing else wants. Measured with
``oms bench --spawn -n 10000 --webhook --nats`` on two cores, alternating, three sittings: a median of
930, 943 and (same sitting) 922 orders/s in idle time against 907, 922 and 908 at niceness 10, and
the p99 from a change of status to its webhook received 130 to 205 ms (goal: 1 s).

The risk: when every core is busy for long (more orders than the machine takes, or another program),
an idle-time process gets almost nothing (a weight of 3 against 1,024), and the events would wait as
long as that lasts. A process cannot leave idle time without privileges, and a starving one could not
even stop itself in good time (measured: 4 ms of CPU every 3 s beside a busy loop on its core), so
OrderService watches its relay: every ``TICK`` seconds it reads how long the relay's event loop has
run and how long it has waited for a core (``/proc/PID/schedstat``: time running, then time runnable
and not running). Within the last ``WINDOW`` seconds, if it waited ``LEAST`` seconds or more and more
than ``SHARE`` of the time it wanted a core, it is starving: OrderService kills it and starts it again
at its niceness, where it takes its share, for a spell before it goes back to idle time
(``oms.events.process``). Under ``oms bench`` (both cores about 80% busy) an idle-time relay waits about
half the time it wants a core and keeps up; beside a busy loop on its core, 99.9%. The lateness of
its timers is no sign: a process that mostly sleeps is woken on time even in idle time; it is the work
after waking that waits.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field

TICK = 0.25
"""Seconds between two looks."""
WINDOW = 10.0
"""Seconds of lateness added up."""
SHARE = 0.9
"""The share of the time it wanted a core spent waiting for one that is starving."""
LEAST = 2.5
"""Seconds at least waited within the window to be starving."""


def to_idle_time() -> bool:
    """The calling thread (the relay's event loop) to Linux's idle-time policy, and the threads it
    starts from now on; not those started before (``oms.events.aside``'s keeps the niceness)."""
    seen = waited_so_far(os.getpid())
    if not hasattr(os, "SCHED_IDLE") or seen is None or seen[1] == 0:
        return False  # not where OrderService could see it starve (no scheduler statistics: zeros)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        return False
    return True


def in_idle_time(pid: int) -> bool:
    try:
        return hasattr(os, "SCHED_IDLE") and os.sched_getscheduler(pid) == os.SCHED_IDLE
    except OSError:
        return False


def waited_so_far(pid: int) -> tuple[float, float] | None:
    """Seconds the main thread of process ``pid`` has spent runnable but not running, and running,
    since it started; None where the kernel does not tell (not Linux, no scheduler statistics, no such
    process)."""
    try:
        with open(f"/proc/{pid}/schedstat") as stat:
            ran, waited = stat.read().split()[:2]
        return int(waited) / 1e9, int(ran) / 1e9
    except (OSError, ValueError):
        return None


@dataclass
class Watch:
    tick: float = TICK
    window: float = WINDOW
    share: float = SHARE
    least: float = LEAST
    _seen: collections.deque[tuple[float, float, float]] = field(default_factory=collections.deque)

    def came(self, now: float, waited: float, ran: float) -> bool:
        """A look at ``now``: the thread has waited ``waited`` seconds for a core and run ``ran``
        seconds since it started. Whether it is starving: within the last ``window`` seconds it waited
        at least ``least`` seconds, and more than ``share`` of the time it wanted a core."""
        self._seen.append((now, waited, ran))
        while len(self._seen) > 1 and self._seen[1][0] <= now - self.window:
            self._seen.popleft()
        waiting, running = self.waited, self.ran
        return waiting >= self.least and waiting > self.share * (waiting + running)

    @property
    def waited(self) -> float:
        """Seconds waited for a core within the last window."""
        return self._seen[-1][1] - self._seen[0][1] if self._seen else 0.0

    @property
    def ran(self) -> float:
        """Seconds run within the last window."""
        return self._seen[-1][2] - self._seen[0][2] if self._seen else 0.0
