"""The wrapper runs Ansible with the user's configuration (their ansible.cfg found the way Ansible
finds it), its own needs merged on top as environment variables (lrelease.ansible_env)."""

from __future__ import annotations

import sys
from pathlib import Path

from lrelease import runner
from lrelease.ansible import COLLECTIONS_DIR
from lrelease.ansible_env import ansible_env, user_config

REPO_CFG = Path(runner.REPO_ROOT) / "ansible.cfg"


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "my_collections").mkdir(parents=True)
    (project / "ansible.cfg").write_text(
        "[defaults]\nforks = 7\ncollections_path = my_collections\n"
        "[ssh_connection]\npipelining = False\n")
    return project


def _run(tmp_path: Path) -> tuple[runner.RunResult, str]:
    playbook = tmp_path / "p.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.debug: {msg: 'forks={{ ansible_forks }} "
                        "colls={{ lookup(\"ansible.builtin.config\", \"COLLECTIONS_PATHS\") | join(\",\") }} "
                        "pipelining={{ lookup(\"ansible.builtin.config\", \"ANSIBLE_PIPELINING\") }} "
                        "cfg={{ ansible_config_file }}'}\n")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    output: list[str] = []
    result = runner.run_playbook(playbook, inventory, {}, on_output=output.append)
    return result, "\n".join(output)


def test_a_projects_own_ansible_cfg_is_honoured_and_the_wrappers_needs_still_set(tmp_path, monkeypatch):
    # Given a project directory whose ansible.cfg sets forks, a collections path and no pipelining
    project = _project(tmp_path)
    monkeypatch.chdir(project)
    monkeypatch.delenv("ANSIBLE_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # When the wrapper runs a playbook from there
    result, text = _run(tmp_path)
    # Then Ansible read the project's config (its forks, its pipelining choice) ...
    assert result.ok, (result, text)
    assert f"cfg={project / 'ansible.cfg'}" in text, text
    assert "forks=7" in text and "pipelining=False" in text, text
    # ... and the collections path has ours first, then the project's own
    colls = text.split("colls=")[1].split()[0].split(",")
    assert colls[0] == str(COLLECTIONS_DIR), colls
    assert str(project / "my_collections") in colls, colls


def test_without_a_user_config_the_checkouts_ansible_cfg_is_not_used(tmp_path, monkeypatch):
    # Given a directory with no ansible.cfg, no ~/.ansible.cfg and no ANSIBLE_CONFIG
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    monkeypatch.delenv("ANSIBLE_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_config({}, empty, tmp_path / "home") in (None, Path("/etc/ansible/ansible.cfg"))
    # When the wrapper runs a playbook
    result, text = _run(tmp_path)
    # Then the checkout's ansible.cfg (ansible-playbook's working directory) is not the config,
    # and the wrapper's preferences (forks 24, pipelining) apply
    assert result.ok, (result, text)
    assert f"cfg={REPO_CFG}" not in text, text
    assert "forks=24" in text and "pipelining=True" in text, text


def test_the_users_environment_wins_over_preferences_and_is_appended_to_path_lists(tmp_path):
    # Given a user environment with its own forks and roles path, and a config named by ANSIBLE_CONFIG
    project = _project(tmp_path)
    environ = {"ANSIBLE_FORKS": "3", "ANSIBLE_ROLES_PATH": "/opt/roles",
               "ANSIBLE_CONFIG": str(project / "ansible.cfg")}
    # When the wrapper computes its environment
    env = ansible_env(tmp_path / "blank.cfg", environ, cwd=tmp_path, home=tmp_path)
    # Then the config is the user's, their forks is not overridden, their roles come after ours,
    # and the fleet inventory plugin is enabled before the user's (Ansible's default) list
    assert env["ANSIBLE_CONFIG"] == str(project / "ansible.cfg")
    assert "ANSIBLE_FORKS" not in env and "ANSIBLE_PIPELINING" not in env
    assert env["ANSIBLE_ROLES_PATH"].endswith(":/opt/roles")
    assert env["ANSIBLE_INVENTORY_ENABLED"].startswith("lrelease.release.lrelease_fleet, lrelease_fleet, ")
    assert env["ANSIBLE_FORCE_COLOR"] == "0"
