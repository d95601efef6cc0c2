"""The repository builds as the collection lrelease.release and works once installed elsewhere:
`ansible-galaxy collection build` here, `ansible-galaxy collection install` into an empty
collections path, then ansible-doc and ansible-playbook --syntax-check by fully qualified names
from a directory outside the checkout with no ANSIBLE_CONFIG (no ansible.cfg anywhere)."""

from __future__ import annotations

import subprocess
import tarfile

import pytest

from tests.collection import BIN, NS, build_and_install, run


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    return build_and_install(tmp_path_factory.mktemp("collection"))


def test_the_tarball_carries_the_content_and_none_of_the_checkout_tooling(installed):
    # Given the built tarball  Then it has the roles, playbooks, plugins, runtime and changelog
    with tarfile.open(installed.tarball) as tar:
        names = set(tar.getnames())
    for must in ("MANIFEST.json", "meta/runtime.yml", "changelogs/changelog.yaml",
                 "playbooks/deploy.yml", "playbooks/rollback.yml", "playbooks/status.yml",
                 "roles/lrelease_switch/meta/argument_specs.yml",
                 "plugins/modules", "plugins/action", "plugins/inventory", "plugins/lookup", "plugins/callback"):
        assert must in names, must
    # and none of the tests, benchmarks, venv or the checkout's self-link
    for never in ("tests", "bench", ".venv", "collections", "molecule", "lrelease.egg-info", ".hypothesis",
                  ".pytest_cache", ".lrelease"):
        assert not any(n == never or n.startswith(never + "/") for n in names), never


def test_installed_plugins_resolve_to_files(installed):
    # Given the installed collection  Then every plugin directory holds the plugin files
    root = installed.root
    for kind, name in (("modules", "lrelease_release.py"), ("modules", "lrelease_gate.py"),
                       ("action", "lrelease_gate.py"), ("inventory", "lrelease_fleet.py"),
                       ("lookup", "lrelease_lock.py"), ("callback", "lrelease_record.py")):
        assert (root / "plugins" / kind / name).is_file(), f"{kind}/{name}"


def test_ansible_doc_finds_the_installed_module_by_fqcn(installed):
    # When ansible-doc is asked for the module by FQCN, outside the checkout, without ansible.cfg
    proc = run([str(BIN / "ansible-doc"), f"{NS}.lrelease_release"], installed.work, installed.env)
    # Then it shows the module's page
    assert f"{NS}.lrelease_release" in proc.stdout and "OPTIONS" in proc.stdout


def test_ansible_doc_finds_the_installed_callback_by_fqcn(installed):
    # When ansible-doc is asked for the callback that records unreachable hosts, outside the checkout
    proc = run([str(BIN / "ansible-doc"), "-t", "callback", f"{NS}.lrelease_record"], installed.work, installed.env)
    # Then it shows its page, which says how to enable it in one's own ansible.cfg
    page = " ".join(proc.stdout.split())  # (the page wraps at the terminal's width)
    assert f"{NS}.lrelease_record" in page and f"callbacks_enabled = {NS}.lrelease_record" in page


@pytest.mark.parametrize("playbook", ["deploy", "rollback", "status"])
def test_installed_playbooks_parse_by_fqcn_outside_the_checkout(installed, playbook):
    # When ansible-playbook --syntax-check runs the playbook by its FQCN from an empty directory
    proc = run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", f"{NS}.{playbook}"],
               installed.work, installed.env)
    # Then the installed copy is the one read, and every module, action and role it names resolves
    assert f"playbook: {installed.root}/playbooks/{playbook}.yml" in proc.stdout
    assert "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr, proc.stderr


def test_the_installed_settings_check_finds_the_roles_argument_specs(installed):
    # Given a playbook outside the checkout that checks the installed switch role's settings the way
    # deploy.yml does (the action reads the role's meta/argument_specs.yml from the installed copy)
    (installed.work / "check.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - {{name: Defaults, ansible.builtin.import_role: {{name: {NS}.lrelease_switch, tasks_from: noop.yml,"
        " rolespec_validate: false}}\n"
        f"    - {{name: Check, {NS}.lrelease_settings: {{roles: [{NS}.lrelease_switch],"
        " rules: [__lrelease_switch_problems]}}\n")
    args = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "check.yml", "-e",
            '{"lrelease_build": "1.0.0", "lrelease_deploy_root": "/srv/app", "lrelease_service_command": "/bin/true"}']
    # When the port is right  Then the check passes
    run([*args, "-e", "lrelease_app_port=8080"], installed.work, installed.env)
    # When it is not a number  Then the installed role's spec refuses it, naming the variable
    proc = subprocess.run([*args, "-e", "lrelease_app_port=eighty"], cwd=installed.work, env=installed.env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0
    assert "role lrelease_switch: argument 'lrelease_switch_app_port' is of type str" in proc.stdout, proc.stdout
