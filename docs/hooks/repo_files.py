"""MkDocs hook: BENCHMARKS.md, which benchmarks/run.py writes at the repository's root, becomes a page
of the site (benchmark-figures.md), and the pages' links to ``../BENCHMARKS.md`` (which work on
GitHub) lead to it, so the site carries the figures without a second copy of them."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
PAGES = {"BENCHMARKS.md": "benchmark-figures.md"}


def on_files(files: Files, config: Any) -> Files:
    for name, page in PAGES.items():
        files.append(File.generated(config, page, abs_src_path=str(ROOT / name)))
    return files


def on_page_markdown(text: str, page: Any, config: Any, files: Any) -> str:
    here = posixpath.dirname(page.file.src_uri)
    for name, target in PAGES.items():
        outside = posixpath.relpath(name, posixpath.join("docs", here) or ".")
        text = text.replace(f"]({outside}", f"]({posixpath.relpath(target, here or '.')}")
    return text
