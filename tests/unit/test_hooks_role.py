"""The role lrelease_hooks as a playbook user (or an AWX job template) drives it: extra vars
written in YAML, read by Ansible's YAML 1.1 loader, where a bare ``on:`` key is the boolean true.
The hook key is ``run_on``; a hook that still says ``on`` is refused before any hook runs."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import yaml

from tests.unit.playbook import ANSIBLE_PLAYBOOK, ENV, ROOT

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: The hooks of after_gate
      ansible.builtin.include_role:
        name: lrelease_hooks
      vars:
        lrelease_hooks_point: after_gate
"""


def run_hooks(tmp_path: Path, vars_yaml: str) -> subprocess.CompletedProcess:
    """ansible-playbook on two local hosts, the extra vars from a YAML file (as AWX passes them)."""
    (tmp_path / "deploy").mkdir(exist_ok=True)
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"app1": host, "app2": host}}}))
    (tmp_path / "hooks.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.yml").write_text(f"lrelease_deploy_root: {tmp_path / 'deploy'}\n" + vars_yaml)
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "hooks.yml"),
            "-e", f"@{tmp_path / 'vars.yml'}"]
    return subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)


def test_a_hook_with_the_old_key_on_is_refused_and_no_hook_runs(tmp_path):
    # Given extra vars in YAML whose hook says `on: controller` (YAML 1.1 reads the key as true), after a
    # first hook that would run on every host
    vars_yaml = (f"lrelease_hooks:\n  after_gate:\n    - shell: echo first >> {tmp_path}/ran\n"
                 f"    - shell: echo $LRELEASE_HOST >> {tmp_path}/ran\n      on: controller\n")
    # When the role runs the point's hooks
    run = run_hooks(tmp_path, vars_yaml)
    # Then every host fails, saying the key was renamed, and no hook ran at all
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert [h for h in ("app1", "app2") if f"fatal: [{h}]: FAILED!" in out] == ["app1", "app2"], out
    assert "lrelease_hooks.after_gate: the hook key `on` was renamed to run_on (host or controller)" in out, out
    assert not (tmp_path / "ran").exists()


def test_a_hook_with_run_on_controller_runs_once_on_the_controller(tmp_path):
    # Given the same hook with the key run_on
    vars_yaml = (f"lrelease_hooks:\n  after_gate:\n"
                 f"    - shell: echo $LRELEASE_HOST >> {tmp_path}/ran\n      run_on: controller\n")
    # When the role runs it for two hosts
    run = run_hooks(tmp_path, vars_yaml)
    # Then it ran once, for the first host, and nothing failed
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "ran").read_text().split() == ["app1"]


def test_deploy_yml_refuses_the_old_key_on_before_any_host_changes(tmp_path):
    # Given deploy.yml's documented extra vars in YAML (as an AWX job template passes them), with a
    # hook that says `on: controller`, and one local host
    artifact = tmp_path / "app-1.0.0.tar.gz"
    artifact.write_bytes(b"not staged: refused before")
    (tmp_path / "deploy").mkdir()
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "lrelease_deploy_root": str(tmp_path / "deploy"), "lrelease_app_port": 18099}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"app1": host}}}))
    (tmp_path / "vars.yml").write_text(
        f"lrelease_build: 1.0.0\nlrelease_artifact: {artifact}\n"
        f"lrelease_artifact_sha256: {hashlib.sha256(artifact.read_bytes()).hexdigest()}\n"
        "lrelease_service_command: /bin/true\nlrelease_gate_kind: health\n"
        f"lrelease_hooks:\n  after_gate:\n    - shell: touch {tmp_path}/ran\n      on: controller\n")
    # When deploy.yml runs
    run = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), "playbooks/deploy.yml",
                          "-e", f"@{tmp_path / 'vars.yml'}"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=300)
    # Then it stops at its hooks check, saying the key was renamed, before anything was staged
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "TASK [Check the hooks]" in out and "(`on` was renamed to run_on)" in out, out
    assert list((tmp_path / "deploy").iterdir()) == [] and not (tmp_path / "ran").exists()
