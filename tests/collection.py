"""Build the checkout as the collection lrelease.release and install it into a fresh collections
path, with an environment and a working directory that know nothing of the checkout (no
ANSIBLE_* variables, no ansible.cfg, an empty HOME)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NS = "lrelease.release"


@dataclass(frozen=True)
class Installed:
    tarball: Path
    root: Path  # <collections>/ansible_collections/lrelease/release
    work: Path  # an empty directory outside the checkout
    env: dict[str, str]


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc


def build_and_install(base: Path) -> Installed:
    home, work, dist, collections = (base / n for n in ("home", "work", "dist", "collections"))
    for d in (home, work, dist, collections):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(HOME=str(home), ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(base / ".ansible-tmp"), PATH=f"{BIN}:{env.get('PATH', '')}")
    run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(dist), str(ROOT)], work, env)
    tarballs = list(dist.glob("lrelease-release-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    run([str(BIN / "ansible-galaxy"), "collection", "install", "-p", str(collections), str(tarballs[0])], work, env)
    return Installed(tarballs[0], collections / "ansible_collections" / "lrelease" / "release", work, env)
