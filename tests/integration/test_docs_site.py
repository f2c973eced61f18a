"""The docs site builds with ``mkdocs build --strict``: a link to a page or an anchor that is not there,
or a page left out of the nav, fails the suite, and the configuration page carries every setting."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from oms.settings_table import rows

ROOT = Path(__file__).resolve().parents[2]


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site), "-f", "mkdocs.yml"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_site_builds_strictly_with_every_setting_on_its_configuration_page(tmp_path: Path) -> None:
    built = build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    page = (tmp_path / "site" / "configuration" / "index.html").read_text()
    assert [row.variable for row in rows() if row.variable not in page] == []
    assert "settings-table" not in page  # the marker was replaced by the table
    assert (tmp_path / "site" / "benchmark-figures" / "index.html").exists()


@pytest.mark.parametrize(
    "link", ["no-such-page.md", "api.md#no-such-anchor", "#no-such-heading"], ids=["page", "anchor", "own-anchor"]
)
def test_a_broken_link_fails_the_build(tmp_path: Path, link: str) -> None:
    # A copy of the site's sources with one link that leads nowhere: the build must stop, and say which.
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy)
    shutil.copy(ROOT / "BENCHMARKS.md", copy)
    (copy / "src").symlink_to(ROOT / "src")
    with (copy / "docs" / "tracing.md").open("a") as page:
        page.write(f"\n[gone]({link})\n")
    built = build(copy, tmp_path / "site")
    assert built.returncode != 0
    assert f"WARNING -  Doc file 'tracing.md' contains a link '{link}'" in built.stderr
