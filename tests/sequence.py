"""Reading sequence diagrams in the tests: the specification (the project's copy,
docs/spec/order-saga.txt) and what ``GET /orders/{id}/diagram`` draws, in the specification's
notation or as Mermaid.

How a drawn arrow is compared with the specification's: by its source, its kind (``->`` a call,
``-->`` a reply), its target, and the words of its message before the first `` · `` (what the
diagram adds, such as a duration or a reason, comes after them). Sections are read as the
specification separates its flows, at each ``note over OrderService, PaymentService: TITLE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

SPEC = Path(__file__).resolve().parents[1] / "docs" / "spec" / "order-saga.txt"
PARTICIPANTS = ["Client", "OrderService", "InventoryService", "PaymentService"]
SEPARATOR = " · "
FLOWS = ("Successful Order Flow", "Failure Handling with Compensating Transactions", "Circuit Breaker Scenario")
"""The specification's three sections, in its order."""

_ARROW = re.compile(r"^(\w+)(-->|->)(\w+):\s*(.*)$")
_MERMAID_ARROW = re.compile(r"^(\w+)(-->>|->>)(\w+):\s*(.*)$")
_SECTION = re.compile(r"^note over OrderService, ?PaymentService:\s*(.*)$", re.IGNORECASE)
_ENTITY = re.compile(r"#(\d+);")
_SVG = "{http://www.w3.org/2000/svg}"


@dataclass(frozen=True)
class Arrow:
    source: str
    kind: str
    target: str
    message: str

    @property
    def words(self) -> str:
        return self.message.split(SEPARATOR, 1)[0]

    @property
    def compared(self) -> tuple[str, str, str, str]:
        return self.source, self.kind, self.target, self.words


@dataclass
class Section:
    title: str
    arrows: list[Arrow] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """Every line of the section after its heading (arrows, notes, activations)."""

    @property
    def compared(self) -> list[tuple[str, str, str, str]]:
        return [arrow.compared for arrow in self.arrows]


@dataclass
class Parsed:
    title: str | None
    participants: list[str]
    sections: list[Section]


def parse(text: str) -> Parsed:
    """A diagram in the specification's notation."""
    title, participants, sections = None, [], []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("title "):
            title = line[len("title ") :]
        elif line.startswith("participant "):
            participants.append(line[len("participant ") :])
        elif found := _SECTION.match(line):
            sections.append(Section(found.group(1)))
        else:
            assert sections, f"a line before the first section: {line!r}"
            sections[-1].lines.append(line)
            if found := _ARROW.match(line):
                sections[-1].arrows.append(Arrow(*found.groups()))
    return Parsed(title, participants, sections)


def parse_mermaid(text: str) -> Parsed:
    """A Mermaid sequenceDiagram, read into the same shape (``->>`` is ``->``, ``-->>`` is ``-->``,
    entity codes decoded)."""
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram", lines[:1]
    title, participants, sections = None, [], []
    for raw in lines[1:]:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("title "):
            title = line[len("title ") :]
        elif line.startswith("participant "):
            participants.append(line[len("participant ") :])
        elif line.startswith("Note over OrderService,PaymentService: "):
            sections.append(Section(_decode(line.split(": ", 1)[1])))
        else:
            assert sections, f"a line before the first section: {line!r}"
            assert ";" not in _ENTITY.sub("", line), f"a bare ; ends a Mermaid statement: {line!r}"
            sections[-1].lines.append(line)
            if found := _MERMAID_ARROW.match(line):
                source, kind, target, message = found.groups()
                sections[-1].arrows.append(Arrow(source, kind[:-1], target, _decode(message)))
            else:
                assert re.match(r"^(activate|deactivate) \w+$|^Note over [\w,]+: ", line), line
    return Parsed(title, participants, sections)


def parse_svg(text: str) -> Parsed:
    """An SVG drawing (``?format=svg``), read into the same shape: each ``<g class="section">`` starts a
    section, and each ``<g class="arrow">`` is an arrow named by its data-source, data-kind and
    data-target, its message the group's text."""
    root = ElementTree.fromstring(text)
    assert root.tag == f"{_SVG}svg", root.tag
    title = root.findtext(f"{_SVG}title")
    participants: list[str] = []
    sections: list[Section] = []
    for group in root.iter(f"{_SVG}g"):
        css = group.get("class")
        words = "".join(group.itertext())
        if css == "participant" and words not in participants:
            participants.append(words)
        elif css == "section":
            sections.append(Section(words))
        elif css == "arrow":
            assert sections, f"an arrow before the first section: {words!r}"
            arrow = Arrow(
                str(group.get("data-source")), str(group.get("data-kind")), str(group.get("data-target")), words
            )
            sections[-1].arrows.append(arrow)
    return Parsed(title, participants, sections)


def _decode(text: str) -> str:
    return _ENTITY.sub(lambda m: chr(int(m.group(1))), text)


def spec() -> dict[str, Section]:
    """The specification's sections, by title."""
    parsed = parse(SPEC.read_text())
    assert parsed.participants == PARTICIPANTS
    sections = {section.title: section for section in parsed.sections}
    assert tuple(sections) == FLOWS
    return sections


def balanced(section: Section) -> bool:
    """Every activate is closed by a deactivate of the same participant, in the section."""
    active: list[str] = []
    for line in section.lines:
        word, _, name = line.partition(" ")
        if word == "activate":
            active.append(name)
        elif word == "deactivate":
            if name not in active:
                return False
            active.remove(name)
    return not active
