"""``oms logs [SERVICE] [--follow]``: what the services ``oms up`` started write to their log files
(``DATA_DIR/SERVICE.log``), so the terminal ``oms up`` runs in keeps its summary and its notices."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.text import Text

NAMES = ("order", "inventory", "payment")
POLL = 0.25
"""Seconds between two looks at the files with ``--follow``."""


def last_lines(path: Path, count: int) -> list[str]:
    """The file's last ``count`` lines (read from its end: a log may be large)."""
    with path.open("rb") as file:
        file.seek(0, 2)
        end = position = file.tell()
        chunk = b""
        while position > 0 and chunk.count(b"\n") <= count:
            position = max(0, position - 65536)
            file.seek(position)
            chunk = file.read(end - position)
    lines = chunk.decode(errors="replace").splitlines()
    return lines[-count:] if count else []


def logs(console: Console, data_dir: Path, service: str | None, *, lines: int, follow: bool) -> int:
    names = [service] if service else list(NAMES)
    paths = {name: data_dir / f"{name}.log" for name in names}
    present = {name: path for name, path in paths.items() if path.exists()}
    if not present:
        console.print(f"[yellow]no log in {data_dir.resolve()}[/yellow] ({', '.join(p.name for p in paths.values())}): "
                      "oms up writes them there once it has started the services")  # fmt: skip
        return 1
    prefix = len(present) > 1
    for name, path in present.items():
        for line in last_lines(path, lines):
            _out(console, name if prefix else None, line)
    if not follow:
        return 0
    files: dict[str, TextIO] = {}
    try:
        for name, path in present.items():
            files[name] = path.open(errors="replace")
            files[name].seek(0, 2)
        while True:
            for name, file in files.items():
                for line in file.readlines():
                    _out(console, name if prefix else None, line.rstrip("\n"))
            time.sleep(POLL)
    except KeyboardInterrupt:
        return 0
    finally:
        for file in files.values():
            file.close()


def _out(console: Console, name: str | None, line: str) -> None:
    text = Text.assemble((f"{name:<9}| ", "dim"), line) if name else Text(line)
    console.print(text, highlight=False, soft_wrap=True)
