"""The package's wheel, built as a user would (``pip wheel . --no-deps``), for the tests that
install it outside the checkout (tests/unit/test_install.py, tests/rollout/test_pip_installed.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What a fresh clone has that the wheel is built from (no venv, no build output, no tests).
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", ".lrelease", ".pytest_cache", ".hypothesis",
    "__pycache__", "tests", "molecule", "bench")


def build_wheel(tmp: Path) -> Path:
    """Build the wheel into ``tmp/wheels`` and return its path. Built from a copy of the sources:
    an in-tree build would leave build/ (a second copy of the roles and playbooks) in the
    checkout, for ansible-lint and `ansible-galaxy collection build`."""
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_NOT_SOURCES)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp / "wheels")],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return next((tmp / "wheels").glob("lrelease-*.whl"))
