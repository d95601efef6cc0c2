"""ansible-lint with the production profile (.ansible-lint) finds nothing in the collection's
playbooks, roles and molecule scenarios; and the same configuration does catch a finding."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_LINT = Path(sys.executable).with_name("ansible-lint")


def lint(project: Path, tmp_path: Path, *paths: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "NO_COLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / ".ansible-tmp"), "ANSIBLE_HOME": str(tmp_path / ".ansible")}
    return subprocess.run([str(ANSIBLE_LINT), "--offline", "--nocolor", "-c", str(ROOT / ".ansible-lint"),
                           "--project-dir", str(project), *paths],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)


def test_the_collection_is_clean_under_the_production_profile(tmp_path):
    # When ansible-lint (profile production) checks the playbooks, roles and molecule scenarios
    proc = lint(ROOT, tmp_path, "playbooks", "roles", "molecule")
    # Then it reports no violation and passes the production profile
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed:" in proc.stderr and "production" in proc.stderr, proc.stderr


def test_the_lint_gate_catches_a_short_module_name(tmp_path):
    # Given a copy of the checkout's layout with a role task that calls a module by its short name
    project = tmp_path / "project"
    shutil.copytree(ROOT / "roles" / "lrelease_cleanup", project / "roles" / "lrelease_cleanup")
    shutil.copy(ROOT / ".ansible-lint", project / ".ansible-lint")
    prune = project / "roles" / "lrelease_cleanup" / "tasks" / "prune.yml"
    prune.write_text(prune.read_text() + "\n- name: Say hello\n  debug:\n    msg: hello\n")
    # When the same configuration lints it
    proc = lint(project, tmp_path, "roles")
    # Then the finding is reported and the run fails
    assert proc.returncode != 0
    assert "fqcn[action-core]" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
