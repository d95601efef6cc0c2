"""The health check in the playbooks: the rollback role's verify step (the lrelease_gate action
plugin, kind http) run by real ansible-playbook against an app on loopback, with the check given
as the documented extra vars; and the APM gate's health step getting the same check."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.unit.loopback import serve
from tests.unit.playbook import run_local

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: The rollback role's verify step
      ansible.builtin.include_role:
        name: lrelease_rollback
        tasks_from: verify
"""


def verify(tmp_path: Path, port: int, extra_vars: dict) -> subprocess.CompletedProcess:
    (tmp_path / "deploy").mkdir(exist_ok=True)
    return run_local(tmp_path, PLAYBOOK, {
        "lrelease_app_port": port, "lrelease_deploy_root": str(tmp_path / "deploy"),
        "lrelease_rollback_health_timeout": 1, **extra_vars})


def test_the_verify_step_applies_the_body_rules_of_the_extra_vars(tmp_path):
    # Given an app whose /healthz answers 200 with {"checks": {"db": "down"}}
    with serve(lambda request: (200, {"checks": {"db": "down"}})) as stub:
        port = int(stub.url.rsplit(":", 1)[1])
        # When the verify step runs with body_json {field: checks.db, values: [up]} (AWX-style extra vars)
        run = verify(tmp_path, port, {"lrelease_health_path": "/healthz",
                                      "lrelease_health_body_json": {"field": "checks.db", "values": ["up"]}})
        # Then the host fails, saying what came and what was wanted, after probing /healthz
        out = run.stdout + run.stderr
        assert run.returncode != 0, out
        assert 'HTTP 200 but checks.db is \\"down\\", expected \\"up\\"' in out, out
        assert stub.requests and {r.path for r in stub.requests} == {"/healthz"}


def test_the_verify_step_passes_an_answer_that_meets_the_body_rules(tmp_path):
    # Given an app whose /health answers 200 with {"status": "pass", "version": "1.0.0"}
    with serve(lambda request: (200, {"status": "pass", "version": "1.0.0"})) as stub:
        port = int(stub.url.rsplit(":", 1)[1])
        # When the verify step runs with rules that answer meets (values through Ansible's templating)
        run = verify(tmp_path, port, {"lrelease_health_expect_status": [200], "lrelease_health_body_contains": "pass",
                                      "lrelease_health_body_json": {"field": "version", "values": ["1.0.0", "1.1.0"]}})
    # Then the host passes
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_verify_step_passes_any_2xx_by_default(tmp_path):
    # Given an app whose /health answers 204 with no body
    with serve(lambda request: (204, "")) as stub:
        port = int(stub.url.rsplit(":", 1)[1])
        # When the verify step runs with no health-check extra vars, and again with only 200 allowed
        default = verify(tmp_path, port, {})
        only_200 = verify(tmp_path, port, {"lrelease_health_expect_status": [200]})
    # Then the 204 passes by default and fails when the codes are listed without it
    assert default.returncode == 0, default.stdout + default.stderr
    assert only_200.returncode != 0 and "HTTP 204, expected 200" in only_200.stdout + only_200.stderr



def test_the_verify_step_settles_the_rollback_only_once_the_app_is_healthy(tmp_path):
    # Given a host whose rollback is not settled yet (.lrelease/pending names the build it went back to)
    pending = tmp_path / "deploy" / ".lrelease" / "pending"
    pending.parent.mkdir(parents=True)
    pending.write_text("1.0.0\n")
    with serve(lambda request: (503, "starting")) as stub:
        port = int(stub.url.rsplit(":", 1)[1])
        # When the verify step finds the app unhealthy
        sick = verify(tmp_path, port, {})
        # Then the host fails and the marker stays (a later run restarts it)
        assert sick.returncode != 0 and pending.exists(), sick.stdout + sick.stderr
    with serve(lambda request: (200, "ok")) as stub:
        port = int(stub.url.rsplit(":", 1)[1])
        # When it finds the app healthy
        well = verify(tmp_path, port, {})
    # Then the same step removed the marker on the host: the rollback is settled
    assert well.returncode == 0, well.stdout + well.stderr
    assert not pending.exists()


def test_the_apm_gates_health_step_gets_the_same_check():
    # Given the gate task's arguments as deploy.yml passes them with a body rule
    from lrelease.ansible.action.lrelease_gate import _apm_params

    args = {"apm": {"provider": "prometheus", "provider_settings": {"url": "http://127.0.0.1:9"}, "judge": {}},
            "switched_at": 1.0, "health_path": "/healthz", "expect_status": [], "body_contains": "",
            "body_json": {"field": "ok", "values": [True]}}
    task_vars = {"inventory_hostname": "a", "ansible_play_hosts_all": ["a", "b"], "ansible_play_batch": ["a"],
                 "hostvars": {"a": {"ansible_host": "10.0.0.1", "lrelease_app_port": 9310}, "b": {}}}
    # When the action plugin builds the apm decider's parameters
    params = _apm_params(args, task_vars)
    # Then the health step gets the environment's check ([] is any 2xx) and path
    assert params["health_check"] == {"expect_status": "2xx", "body_json": {"field": "ok", "values": [True]},
                                      "body_contains": ""}
    assert params["health_path"] == "/healthz" and params["canary"]["url"] == "http://10.0.0.1:9310"
