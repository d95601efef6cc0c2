"""The action lrelease.release.lrelease_settings, as deploy.yml uses it, run by real ansible-playbook
on two local hosts: several roles' argument specs, then their rules, checked in one task per host,
every problem in one line; the rules are not read while a spec fails."""

from __future__ import annotations

from pathlib import Path

from tests.unit.playbook import run_local

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: The switch role's defaults
      ansible.builtin.import_role: {name: lrelease.release.lrelease_switch, tasks_from: noop.yml, rolespec_validate: false}
    - name: The cleanup role's defaults
      ansible.builtin.import_role: {name: lrelease.release.lrelease_cleanup, tasks_from: noop.yml, rolespec_validate: false}
    - name: Check the roles' settings
      lrelease.release.lrelease_settings:
        roles: [lrelease.release.lrelease_switch, lrelease_cleanup]
        rules: [__lrelease_switch_problems, __lrelease_cleanup_problems]
    - name: After the check
      ansible.builtin.debug:
        msg: the check passed
"""
GOOD = {"lrelease_build": "1.0.0", "lrelease_deploy_root": "/srv/app", "lrelease_service_command": "/bin/true",
        "lrelease_app_port": 8080}


def run_check(tmp_path: Path, extra: dict, hostvars: dict | None = None) -> str:
    proc = run_local(tmp_path, PLAYBOOK, extra, {name: (hostvars or {}).get(name, {}) for name in ("app1", "app2")})
    return proc.stdout + proc.stderr


def test_good_settings_pass_on_every_host(tmp_path):
    # When both roles' settings are right  Then every host goes on past the check
    out = run_check(tmp_path, GOOD)
    assert out.count('"msg": "the check passed"') == 2, out
    assert "FAILED" not in out


def test_wrong_types_in_two_roles_fail_in_one_line_and_the_rules_are_not_read(tmp_path):
    # Given a port that is not a number (switch) and a keep count that is not one (cleanup), and a
    # relative deploy root that a rule would refuse
    out = run_check(tmp_path, {**GOOD, "lrelease_app_port": "eighty", "lrelease_keep_releases": "many",
                               "lrelease_deploy_root": "srv/app"})
    # Then each host fails with both roles' spec errors, each naming its role and its variable
    assert "fatal: [app1]: FAILED!" in out and "fatal: [app2]: FAILED!" in out, out
    assert ("role lrelease_switch: argument 'lrelease_switch_app_port' is of type str and we were unable "
            "to convert to int") in out
    assert "role lrelease_cleanup: argument 'lrelease_cleanup_keep' is of type str" in out
    # and the rules (which assume the types) were not read: no message about the deploy root
    assert "is required: an absolute path" not in out
    assert "the check passed" not in out


def test_rules_of_two_roles_are_reported_together_on_the_host_that_breaks_them(tmp_path):
    # Given a host whose deploy root (inventory) is relative, the other's right
    out = run_check(tmp_path, {k: v for k, v in GOOD.items() if k != "lrelease_deploy_root"},
                    {"app1": {"lrelease_deploy_root": "/srv/app"}, "app2": {"lrelease_deploy_root": "srv/app"}})
    # Then app2 fails with the switch role's rule and the cleanup role's, in one line; app1 passes
    fatal = [line for line in out.splitlines() if line.startswith("fatal:")]
    assert len(fatal) == 1 and fatal[0].startswith("fatal: [app2]: FAILED!"), out
    assert "lrelease_switch_deploy_root (host variable lrelease_deploy_root) is required" in fatal[0]
    assert "lrelease_cleanup_keep (lrelease_keep_releases) must be at least 1" in fatal[0]
    assert 'root=\\"srv/app\\"' in fatal[0]
    assert out.count('"msg": "the check passed"') == 1, out
