"""The events a way out has read from the outbox and is not done with, in the outbox's order: which
may be sent now, and how far the way's cursor may move. Pure logic: the relay does the sending.

Per order, in order: an order's event goes only once the one before it is done (sent, or handed to
``webhook_deliveries``), so a receiver sees each order's events in order; events of different orders
go side by side. The cursor moves over the longest run of done events from the oldest: an event not
done holds it back (after a crash it and everything after it are sent again: at least once), but
not the events behind it, which go on being sent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Key = tuple[int, int]


@dataclass(eq=False)
class Item:
    key: Key
    event: dict[str, Any]
    done: bool = False

    @property
    def order_id(self) -> str:
        return str(self.event["order_id"])


@dataclass
class Window:
    cursor: Key
    """The last event every event up to which is done."""
    size: int = 2000
    """Events held at most: a way that cannot send stops reading (the rest wait in the outbox)."""
    items: deque[Item] = field(default_factory=deque)
    queued: dict[str, deque[Item]] = field(default_factory=dict)
    """Per order with an event under way: its later events, waiting for it."""
    read_to: Key = (0, 0)

    def __post_init__(self) -> None:
        self.read_to = max(self.read_to, self.cursor)

    @property
    def room(self) -> int:
        return max(0, self.size - len(self.items))

    def add(self, events: Iterable[tuple[Key, dict[str, Any]]], *, skip: Any = None) -> list[Item]:
        """Take events read after ``read_to`` (in order); the ones to send now. ``skip(event)``: true for
        an event this way does not send (done at once)."""
        ready: list[Item] = []
        for key, event in events:
            item = Item(key, event)
            self.items.append(item)
            self.read_to = key
            if skip is not None and skip(event):
                item.done = True
                continue
            waiting = self.queued.get(item.order_id)
            if waiting is None:
                self.queued[item.order_id] = deque()
                ready.append(item)
            else:
                waiting.append(item)
        return ready

    def done(self, item: Item) -> Item | None:
        """``item`` is done: the order's next event, to send now, if one waits for it."""
        item.done = True
        waiting = self.queued.get(item.order_id)
        if waiting:
            return waiting.popleft()
        self.queued.pop(item.order_id, None)
        return None

    def hand_over(self, item: Item) -> list[Item]:
        """``item`` and every later event of its order read so far are done here, handed elsewhere (to
        wait in ``webhook_deliveries``): those later ones, oldest first."""
        item.done = True
        later = list(self.queued.pop(item.order_id, ()))
        for other in later:
            other.done = True
        return later

    def advance(self) -> Key:
        """Drop the done events from the oldest on; the cursor after them."""
        while self.items and self.items[0].done:
            self.cursor = self.items.popleft().key
        if not self.items:
            self.cursor = max(self.cursor, self.read_to)
        return self.cursor

    def oldest_time(self) -> str | None:
        """The time of the oldest event not done, if any."""
        for item in self.items:
            if not item.done:
                return str(item.event["time"])
        return None
