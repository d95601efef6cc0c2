"""A non-editable install works outside the checkout: the wheel carries the collection (playbooks,
roles, plugins) in lrelease/_content, and the installed package finds it there (setup.py,
lrelease.ansible). Builds a wheel, installs it with its dependencies into a fresh venv (no system
site-packages) from the machine's configured index, and runs the CLI from an empty project.
Measured: about 50 s (wheel ~9 s, install ~30 s), most of it pip resolving the dependencies."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from tests.wheel import build_wheel

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "lrelease/_content/ansible_collections/lrelease/release"

CHECK = """
import os, subprocess, sys, tempfile
from pathlib import Path
from lrelease import runner
from lrelease.ansible_env import ansible_env
env = {**os.environ, **ansible_env(Path(tempfile.mkdtemp()) / "ansible.cfg")}
print("PLAYBOOKS", runner.PLAYBOOKS)
for pb in ("deploy.yml", "rollback.yml", "status.yml"):
    p = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                        str(runner.PLAYBOOKS / pb)], env=env, cwd=runner.REPO_ROOT, capture_output=True, text=True)
    print("SYNTAX", pb, p.returncode, p.stderr.strip()[-500:].replace(chr(10), " "))
"""


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict[str, float]]:
    tmp = tmp_path_factory.mktemp("install")
    times = {}
    start = time.monotonic()
    wheel = build_wheel(tmp)
    times["wheel"] = time.monotonic() - start
    venv = tmp / "venv"
    start = time.monotonic()
    made = _run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    pip = _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)])
    assert pip.returncode == 0, pip.stderr[-2000:]
    times["install"] = time.monotonic() - start
    return wheel, venv, times


def _project(tmp_path: Path) -> Path:
    """An empty directory with its own lrelease.yml, fleet file and one build."""
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "fleet.yml").write_text((ROOT / "inventories" / "fleet.example.yml").read_text())
    (tmp_path / "lrelease.yml").write_text((ROOT / "lrelease.example.yml").read_text())
    (tmp_path / "artifacts").mkdir()
    app = tmp_path / "app.sh"
    app.write_text("#!/bin/sh\n")
    tarball = tmp_path / "artifacts" / "demoapp-1.4.0.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(app, arcname="app.sh")
    app.unlink()
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    (tmp_path / "artifacts" / "demoapp-1.4.0.tar.gz.sha256").write_text(f"{digest}  demoapp-1.4.0.tar.gz\n")
    return tmp_path


def test_the_wheel_carries_the_playbooks_roles_and_plugins(installed):
    wheel, _, times = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("galaxy.yml", "meta/runtime.yml", "playbooks/deploy.yml", "playbooks/rollback.yml",
                 "playbooks/status.yml", "roles/lrelease_switch/tasks/main.yml",
                 "plugins/action/lrelease_gate.py", "plugins/modules/lrelease_release.py",
                 "plugins/inventory/lrelease_fleet.py", "plugins/lookup/lrelease_lock.py",
                 "plugins/callback/lrelease_record.py"):
        assert f"{COLLECTION}/{path}" in names, path
    print(f"wheel built in {times['wheel']:.1f} s, venv + install in {times['install']:.1f} s")


def test_the_installed_cli_plans_and_dry_runs_from_an_empty_project(installed, tmp_path):
    # Given the package installed (not editable) in a fresh venv, and an empty project directory
    _, venv, _ = installed
    project = _project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_CONFIG", "VIRTUAL_ENV")}
    lrelease = str(venv / "bin" / "lrelease")
    # When `lrelease plan` and `lrelease deploy --dry-run` run there
    plan = _run([lrelease, "plan", "--env", "production", "--build", "1.4.0"], cwd=project, env=env)
    dry = _run([lrelease, "deploy", "--env", "production", "--build", "1.4.0", "--dry-run"], cwd=project, env=env)
    # Then both succeed and show the plan
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "estimated time" in plan.stdout and "estimated time" in dry.stdout


def test_the_installed_package_runs_its_own_copy_of_the_playbooks(installed, tmp_path):
    # Given the installed package, run from outside the checkout
    _, venv, _ = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_CONFIG", "VIRTUAL_ENV")}
    # When it locates its playbooks and Ansible parses each with the wrapper's environment
    check = _run([str(venv / "bin" / "python"), "-c", CHECK], cwd=tmp_path, env=env)
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    # Then the playbooks are the installed copy (not the checkout's) and every one resolves its
    # roles, modules and action plugins
    playbooks = Path(lines[0].split(" ", 1)[1])
    assert playbooks.is_relative_to(venv) and (playbooks / "deploy.yml").is_file(), lines[0]
    assert [line.split(" ", 3)[:3] for line in lines[1:]] == [
        ["SYNTAX", pb, "0"] for pb in ("deploy.yml", "rollback.yml", "status.yml")], lines
