"""MkDocs hook: the configuration page's table of settings, made when the site is built from the
docstrings in src/oms/config.py (oms.settings_table), so that each default and each description is
written once, beside its field. docs/configuration.md holds the marker the table replaces."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# This checkout's oms, not whichever one the environment has installed: the page describes the code beside it.
SRC = Path(__file__).resolve().parents[2] / "src"
sys.path.insert(0, str(SRC))

from oms.settings_table import markdown  # noqa: E402

MARKER = "<!-- settings-table -->"


def on_page_markdown(text: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in text:
        return text
    return text.replace(MARKER, markdown())
