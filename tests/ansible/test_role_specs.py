"""The roles' contracts, checked without hosts: every public setting is a commented default with
the role's prefix, and meta/argument_specs.yml lists exactly the same keys with a type and a
description (what prometheus-community's CI checks), every step has its hook points, and the
task names the wrapper follows exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = {
    "lrelease_stage": ("fetch", "unpack"),
    "lrelease_switch": ("drain", "switch", "restart", "verify", "enable"),
    "lrelease_rollback": ("drain", "switch", "restart", "verify", "enable"),
    "lrelease_cleanup": ("prune",),
    "lrelease_hooks": (),  # runs lrelease.yml's hooks at the other roles' points; no steps of its own
}
STABLE_TASKS = {"lrelease_stage": ["staged"], "lrelease_switch": ["switched", "reverted"],
                "lrelease_rollback": ["rolled back"]}


def load(path: Path):
    return yaml.safe_load(path.read_text())


def task_names(role: str) -> list[str]:
    """The names of the role's tasks, those inside blocks (and their rescue and always) too."""
    def names_in(tasks):
        for task in tasks or []:
            yield task.get("name")
            for key in ("block", "rescue", "always"):
                yield from names_in(task.get(key))
    return [name for path in (ROOT / "roles" / role / "tasks").glob("*.yml") for name in names_in(load(path))]


@pytest.mark.parametrize("role", sorted(ROLES))
def test_defaults_and_argument_specs_list_the_same_prefixed_keys(role):
    defaults = load(ROOT / "roles" / role / "defaults" / "main.yml")
    specs = load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]
    options = specs["main"]["options"]
    assert set(defaults) == set(options), set(defaults) ^ set(options)
    assert all(key.startswith(role + "_") for key in defaults)
    for key, spec in options.items():
        assert spec.get("type") and spec.get("description"), key
    for entry in specs.values():  # tasks_from entry points validate the same options
        assert entry["options"] == options


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_default_is_commented(role):
    lines = (ROOT / "roles" / role / "defaults" / "main.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            block = lines[max(0, i - 12):i]
            assert any(ln.startswith("#") for ln in block), f"{line.split(':')[0]} has no comment above it"


def _task_files_from(tasks: Path, name: str, seen: set[str]) -> str:
    """The text of tasks/<name> and of every task file it imports or includes (by a plain name)."""
    if name in seen or not (tasks / name).is_file():
        return ""
    seen.add(name)
    text = (tasks / name).read_text()
    named = re.findall(r"(?:import|include)_tasks: ([\w.-]+\.yml)\s*$", text, re.M)
    return text + "".join(_task_files_from(tasks, n, seen) for n in named)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_step_has_before_and_after_hooks(role):
    defaults = load(ROOT / "roles" / role / "defaults" / "main.yml")
    main = _task_files_from(ROOT / "roles" / role / "tasks", "main.yml", set())
    for step in ROLES[role]:
        for when in ("before", "after"):
            key = f"{role}_{when}_{step}_tasks"
            assert defaults.get(key) == "", key
            assert f"{{{{ {key} or 'noop.yml' }}}}" in main, f"{key} is not imported by tasks/main.yml"


@pytest.mark.parametrize("role", sorted(STABLE_TASKS))
def test_task_names_the_wrapper_follows_exist(role):
    assert set(STABLE_TASKS[role]) <= set(task_names(role))


def test_modules_are_called_by_fully_qualified_names():
    # Given the collection's own modules and roles, by fully qualified name (lrelease.release.*)
    ours = {f"lrelease.release.{m}" for m in ("lrelease_release", "lrelease_haproxy", "lrelease_gate", "lrelease_policy",
                                              "lrelease_settings")}
    roles = {f"lrelease.release.{r}" for r in ROLES}
    keywords = {"name", "when", "register", "vars", "loop", "loop_control", "delegate_to", "run_once", "block",
                "rescue", "always", "tags", "changed_when", "failed_when", "until", "retries", "delay", "delegate_facts",
                "check_mode", "become", "no_log", "notify", "environment", "ignore_errors", "any_errors_fatal"}

    def walk(tasks, where):
        for task in tasks or []:
            for key in ("block", "rescue", "always"):
                walk(task.get(key), where)
            actions = [k for k in task if k not in keywords]
            for action in actions:
                assert action.startswith("ansible.builtin.") or action in ours, f"{where}: {action}"
                if action.endswith(("import_role", "include_role")):
                    assert task[action]["name"] in roles, f"{where}: role {task[action]['name']}"

    files = list((ROOT / "roles").glob("*/tasks/*.yml"))
    for path in files:
        walk(load(path), path)
    for path in (ROOT / "playbooks").glob("*.yml"):
        for play in load(path):
            walk(play.get("tasks"), path)


def test_plugin_documentation_is_valid_yaml():
    for path in (ROOT / "lrelease" / "ansible").glob("*/*.py"):
        text = path.read_text()
        for block in ("DOCUMENTATION", "RETURN", "EXAMPLES"):
            match = re.search(block + r' = r"""(.*?)"""', text, re.S)
            if match:
                assert isinstance(yaml.safe_load(match.group(1)), (dict, list)), f"{path.name} {block}"


def test_plugin_paths_point_at_the_shipped_plugins_and_roles():
    from lrelease.ansible import plugin_paths

    paths = {key: Path(value.split(":")[0]) for key, value in plugin_paths().items()}
    assert (paths["ANSIBLE_COLLECTIONS_PATH"] / "ansible_collections/lrelease/release/galaxy.yml").is_file()
    assert (paths["ANSIBLE_ACTION_PLUGINS"] / "lrelease_gate.py").is_file()
    assert (paths["ANSIBLE_LIBRARY"] / "lrelease_haproxy.py").is_file()
    assert (paths["ANSIBLE_LIBRARY"] / "lrelease_release.py").is_file()
    assert paths["ANSIBLE_INVENTORY_PLUGINS"].is_dir()
    assert sorted(p.name for p in paths["ANSIBLE_ROLES_PATH"].iterdir()) == sorted(ROLES)
