"""A :class:`Diagram` drawn as SVG: the same lines the two text notations write, laid out as
sequencediagram.org draws them (participants in columns, lifelines, arrows row by row, notes,
activation bars), for the dashboard's order page and ``GET /orders/{id}/diagram?format=svg``.

Every text from the order (SKUs, reasons, ids) is escaped: the SVG holds no markup but its own.
Each arrow is a ``<g class="arrow">`` whose ``data-source``, ``data-kind`` and ``data-target`` name
it as the notation does, so a test (or a person with the browser's inspector) can read it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from oms.orders.diagram.notation import ORDERS, PAYMENTS, Activation, Arrow, Diagram, Note, Section, _clean

COLUMN = 250
"""Pixels between two lifelines."""
MARGIN = 40
HEAD = 36
"""A participant's box."""
TOP = 70
"""Where the first row starts: below the title and the participants' boxes."""
LINE = 16
"""A line of text."""
FONT = 'font-family="sans-serif" font-size="12"'
"""Presentation attributes, not a style attribute: a page whose Content-Security-Policy allows no
inline style still draws the SVG with them."""


def _text(value: str) -> str:
    return escape(_clean(value))


@dataclass
class _Canvas:
    columns: dict[str, float]
    y: float = TOP
    shapes: list[str] = field(default_factory=list)
    bars: list[str] = field(default_factory=list)
    open_bars: dict[str, list[float]] = field(default_factory=dict)

    def arrow(self, arrow: Arrow) -> None:
        x1, x2 = self.columns[arrow.source], self.columns[arrow.target]
        dash = ' stroke-dasharray="6 4"' if arrow.reply else ""
        kind = quoteattr(arrow.kind)
        attributes = f'class="arrow" data-source={quoteattr(arrow.source)} data-kind={kind} '
        attributes += f"data-target={quoteattr(arrow.target)}"
        if x1 == x2:  # OrderService's own work: out to the right and back
            y = self.y + LINE
            path = f"M{x1 + 5} {y} H{x1 + 45} V{y + 18} H{x1 + 7}"
            self.shapes.append(
                f'<g {attributes}><path d={quoteattr(path)} fill="none" stroke="#333"{dash} '
                f'marker-end="url(#head)"/><text x="{x1 + 50}" y="{y + 13}">{_text(arrow.message)}</text></g>'
            )
            self.y += LINE + 30
            return
        y = self.y + LINE + 6
        middle = (x1 + x2) / 2
        end = x2 - 6 if x2 > x1 else x2 + 6
        self.shapes.append(
            f'<g {attributes}><line x1="{x1}" y1="{y}" x2="{end}" y2="{y}" stroke="#333"{dash} '
            f'marker-end="url(#head)"/><text x="{middle}" y="{y - 5}" text-anchor="middle">'
            f"{_text(arrow.message)}</text></g>"
        )
        self.y += LINE + 18

    def note(self, over: tuple[str, ...], lines: tuple[str, ...], css: str, fill: str) -> None:
        xs = [self.columns[name] for name in over]
        # Wide enough for its longest line (about 6.6 px a character at 12 px), centred over its participants.
        half = max((max(xs) - min(xs)) / 2 + COLUMN * 0.45, max(len(text) for text in lines) * 3.3 + 10)
        # Tenths of a pixel: a width of 429.20000000000005 says nothing more, and is longer.
        centre = (min(xs) + max(xs)) / 2
        left, width = round(centre - half, 1), round(2 * half, 1)
        height = LINE * len(lines) + 10
        y = self.y + 6
        texts = "".join(
            f'<text x="{round(centre, 1)}" y="{y + 16 + LINE * i}" text-anchor="middle">{_text(line)}</text>'
            for i, line in enumerate(lines)
        )
        self.shapes.append(
            f'<g class="{css}"><rect x="{left}" y="{y}" width="{width}" height="{height}" rx="3" '
            f'fill="{fill}" stroke="#999"/>{texts}</g>'
        )
        self.y += height + 12

    def activation(self, line: Activation) -> None:
        if line.active:
            self.open_bars.setdefault(line.participant, []).append(self.y)
            return
        started = self.open_bars.get(line.participant)
        if started:
            self._bar(line.participant, started.pop(), self.y)

    def _bar(self, participant: str, start: float, end: float) -> None:
        x = self.columns[participant]
        self.bars.append(
            f'<rect class="activation" x="{x - 5}" y="{start}" width="10" height="{max(end - start, 4)}" '
            'fill="#eef" stroke="#557"/>'
        )

    def close_bars(self) -> None:
        for participant, starts in self.open_bars.items():
            for start in starts:
                self._bar(participant, start, self.y)


def to_svg(diagram: Diagram) -> str:
    """The diagram as a standalone SVG document (UTF-8 text)."""
    columns = {name: MARGIN + COLUMN / 2 + i * COLUMN for i, name in enumerate(diagram.participants)}
    canvas = _Canvas(columns)
    for line in diagram.lines:
        if isinstance(line, Section):
            canvas.y += 8
            canvas.note((ORDERS, PAYMENTS), (line.title,), "section", "#e8f0fe")
        elif isinstance(line, Arrow):
            canvas.arrow(line)
        elif isinstance(line, Note):
            canvas.note(line.over, line.lines, "note", "#fff8c4")
        else:
            canvas.activation(line)
    canvas.close_bars()
    width = MARGIN * 2 + COLUMN * len(diagram.participants)
    height = canvas.y + HEAD + 20
    heads = []
    for name, x in columns.items():
        label = _text(name)
        for y in (TOP - HEAD - 4, canvas.y + 8):
            heads.append(
                f'<g class="participant"><rect x="{x - 80}" y="{y}" width="160" height="{HEAD - 8}" rx="4" '
                f'fill="#f4f4f4" stroke="#333"/><text x="{x}" y="{y + 19}" text-anchor="middle" '
                f'font-weight="bold">{label}</text></g>'
            )
        heads.append(
            f'<line class="lifeline" x1="{x}" y1="{TOP - 12}" x2="{x}" y2="{canvas.y + 8}" stroke="#bbb" '
            'stroke-dasharray="4 4"/>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT} role="img" aria-label={quoteattr(_clean(diagram.title))}>'
        '<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" fill="#333"/></marker></defs>'
        f"<title>{_text(diagram.title)}</title>"
        + "".join(heads)
        + "".join(canvas.bars)
        + "".join(canvas.shapes)
        + "</svg>\n"
    )
