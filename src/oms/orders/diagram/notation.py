"""The lines of a sequence diagram, and the two notations they are written in: the
specification's (sequencediagram.org, WebSequenceDiagrams) and Mermaid's."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

CLIENT, ORDERS, INVENTORY, PAYMENTS = "Client", "OrderService", "InventoryService", "PaymentService"
PARTICIPANTS = (CLIENT, ORDERS, INVENTORY, PAYMENTS)
SEPARATOR = " · "
"""Between a message's words from the specification and what the diagram adds to them."""


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    message: str
    reply: bool = False

    @property
    def kind(self) -> str:
        return "-->" if self.reply else "->"

    @property
    def words(self) -> str:
        """The message's words from the specification: what comes before the first `` · ``."""
        return self.message.split(SEPARATOR, 1)[0]


@dataclass(frozen=True)
class Note:
    over: tuple[str, ...]
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Activation:
    participant: str
    active: bool


@dataclass(frozen=True)
class Section:
    """A saga of the order, headed as the specification heads a flow."""

    title: str


Line = Arrow | Note | Activation | Section


@dataclass(frozen=True)
class Diagram:
    title: str
    lines: tuple[Line, ...]
    participants: tuple[str, ...] = PARTICIPANTS

    @property
    def arrows(self) -> list[Arrow]:
        return [line for line in self.lines if isinstance(line, Arrow)]


def message(words: str, *extras: object) -> str:
    added = [str(extra) for extra in extras if extra not in (None, "")]
    return words + SEPARATOR + ", ".join(added) if added else words


class Pen:
    def __init__(self) -> None:
        self.lines: list[Line] = []

    def send(self, source: str, target: str, words: str, *extras: object) -> None:
        self.lines.append(Arrow(source, target, message(words, *extras)))

    def answer(self, source: str, target: str, words: str, *extras: object) -> None:
        self.lines.append(Arrow(source, target, message(words, *extras), reply=True))

    def own(self, words: str, *extras: object) -> None:
        self.send(ORDERS, ORDERS, words, *extras)

    def call(self, target: str, request: str, reply: str, *extras: object) -> None:
        self.send(ORDERS, target, request)
        self.lines += [Activation(target, True)]
        self.answer(target, ORDERS, reply, *extras)
        self.lines += [Activation(target, False)]

    def note(self, over: str, *lines: str | None) -> None:
        """A note over one participant (only a section's heading spans OrderService to PaymentService)."""
        said = tuple(line for line in lines if line)
        if said:
            self.lines.append(Note((over,), said))


# -- the two notations -------------------------------------------------------------------------


def _clean(text: str) -> str:
    """One line of printable text: control and format characters become spaces."""
    return "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)


def to_text(diagram: Diagram) -> str:
    """The notation of the specification (sequencediagram.org, WebSequenceDiagrams)."""
    out = [f"title {_clean(diagram.title)}", ""]
    out += [f"participant {name}" for name in diagram.participants]
    for line in diagram.lines:
        if isinstance(line, Section):
            out += ["", f"note over {ORDERS}, {PAYMENTS}: {_clean(line.title)}"]
        elif isinstance(line, Arrow):
            out.append(f"{line.source}{line.kind}{line.target}: {_clean(line.message)}")
        elif isinstance(line, Note):
            out.append(f"note over {', '.join(line.over)}: " + "\\n".join(_clean(text) for text in line.lines))
        else:
            out.append(f"{'activate' if line.active else 'deactivate'} {line.participant}")
            if not line.active and line.participant != ORDERS:
                out.append("")
    return "\n".join(out) + "\n"


# Mermaid ends a statement at ";" and takes "#" for the start of an entity code; "<" and ">" would
# be read as HTML. Each is written as its entity code.
_MERMAID_CODES = {"#": "#35;", ";": "#59;", "<": "#60;", ">": "#62;"}


def _mermaid(text: str) -> str:
    return "".join(_MERMAID_CODES.get(c, c) for c in _clean(text))


def to_mermaid(diagram: Diagram) -> str:
    """The same diagram as a Mermaid ``sequenceDiagram``."""
    title = "".join(c for c in _clean(diagram.title) if c not in "#;")  # a title takes no entity codes
    out = ["sequenceDiagram", f"    title {title}"]
    out += [f"    participant {name}" for name in diagram.participants]
    for line in diagram.lines:
        if isinstance(line, Section):
            out.append(f"    Note over {ORDERS},{PAYMENTS}: {_mermaid(line.title)}")
        elif isinstance(line, Arrow):
            out.append(f"    {line.source}{'-->>' if line.reply else '->>'}{line.target}: {_mermaid(line.message)}")
        elif isinstance(line, Note):
            out.append(f"    Note over {','.join(line.over)}: " + "<br/>".join(_mermaid(text) for text in line.lines))
        else:
            out.append(f"    {'activate' if line.active else 'deactivate'} {line.participant}")
    return "\n".join(out) + "\n"
