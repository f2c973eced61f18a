"""scripts/install, which ./scripts/up and ./scripts/test run first: a line for each package as pip
finds it (no long silence), pip's whole log kept, and pip's own words on the screen when it fails.
Run for real on a small project of one dependency, into a virtual environment of its own."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def install(venv: Path, spec: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMS_VENV": str(venv)}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "install"), str(spec)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_install_shows_each_package_and_keeps_pips_log(tmp_path: Path) -> None:
    project = tmp_path / "tiny"
    (project / "tiny").mkdir(parents=True)
    (project / "tiny" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text('[project]\nname = "tiny"\nversion = "0.1"\ndependencies = ["orjson"]\n')
    done = install(tmp_path / "venv", project)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"== creating the virtual environment {tmp_path / 'venv'}"
    assert re.search(r"^\s+1  orjson$", done.stdout, re.MULTILINE), done.stdout
    assert re.match(r"^== installed in \d+ s$", lines[-1])
    assert "Successfully installed" in (tmp_path / "venv" / "install.log").read_text()
    check = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-c", "import tiny, orjson"], timeout=60)
    assert check.returncode == 0


def test_a_failed_install_exits_non_zero_with_pips_error(tmp_path: Path) -> None:
    done = install(tmp_path / "venv", tmp_path / "no-such-project")
    assert done.returncode != 0
    assert "pip failed" in done.stderr and "ERROR:" in done.stderr
    assert "== installed" not in done.stdout
