"""The switch role's "the app listens" step (the lrelease_gate action, kind port) run by real
ansible-playbook on a local host: checked from the controller, or on the host itself
(lrelease_switch_port_host), and in both cases the same task settles the switch (removes
.lrelease/pending on the host) once the port answers, and only then."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.unit.playbook import run_local

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: The switch role's verify step
      ansible.builtin.include_role:
        name: lrelease_switch
        tasks_from: verify
"""


def port_check(tmp_path: Path, port: int, extra_vars: dict) -> subprocess.CompletedProcess:
    return run_local(tmp_path, PLAYBOOK, {
        "lrelease_build": "1.1.0", "lrelease_app_port": port, "lrelease_deploy_root": str(tmp_path / "deploy"),
        "lrelease_service_command": "/bin/true", "lrelease_switch_port_timeout": 1, **extra_vars})


@pytest.mark.parametrize("where", [{}, {"lrelease_switch_port_host": "127.0.0.1"}], ids=["controller", "on the host"])
def test_the_port_check_settles_the_switch_only_once_the_app_listens(tmp_path, where):
    # Given a switch not settled yet, and a port where nothing listens
    pending = tmp_path / "deploy" / ".lrelease" / "pending"
    pending.parent.mkdir(parents=True)
    pending.write_text("1.1.0\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        silent = probe.getsockname()[1]
    # When the step runs
    run = port_check(tmp_path, silent, where)
    # Then the host fails, saying where the check was made, and the marker stays
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert ("port check failed on the host" in out) == bool(where), out
    assert pending.exists()
    # When the app listens
    with socket.socket() as app:
        app.bind(("127.0.0.1", 0))
        app.listen()
        run = port_check(tmp_path, app.getsockname()[1], where)
    # Then the step passes and removed the marker on the host
    assert run.returncode == 0, run.stdout + run.stderr
    assert not pending.exists()
