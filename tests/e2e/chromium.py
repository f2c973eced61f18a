"""Debian's Chromium, driven by Playwright (whose own browser download cannot work here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
EXPECT_TIMEOUT = 20_000
"""Milliseconds an ``expect`` waits for its condition (Playwright's default: 5,000): a deadline, which a
page meets at once when it can; the suite's workers share two cores, and a page may wait on a
process that is starting."""
expect.set_options(timeout=EXPECT_TIMEOUT)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Chromium, running until the block ends; the test fails (never skips) without it."""
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: scripts/test installs it (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
