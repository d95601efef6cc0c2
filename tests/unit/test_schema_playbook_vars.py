"""The playbooks' extra vars, all in one table (docs/design.md, "Playbook variables"), checked both
ways against what the playbooks and roles read and the roles' meta/argument_specs.yml: nothing
can be added without its row, and no row outlives its variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
_NAME = re.compile(r"(?<!['\"\w.])lrelease_[a-z0-9_]+\b")  # not after a dot: lrelease.release.lrelease_x is a plugin's name
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_RAW_JINJA_KEYS = {"when", "that", "changed_when", "failed_when", "until", "loop"}
_PLACEHOLDER = re.compile(r"<[a-z]+>")
_PLUGIN_READ = re.compile(r"task_vars(?:\.get\(|\[)\s*[\"'](lrelease_[a-z0-9_]+)")


def documented(text: str | None = None) -> tuple[set[str], list[re.Pattern]]:
    """The names in the first column of the table: exact ones, and patterns (``<role>``, ``<step>``)."""
    text = DESIGN.read_text() if text is None else text
    section = text.split("## Playbook variables", 1)[1].split("\n## ", 1)[0]
    names, patterns = set(), []
    for row in re.findall(r"^\| (.+?) \|", section, re.M):
        for name in re.findall(r"`(lrelease_[a-z0-9_<>]+)`", row):
            if _PLACEHOLDER.search(name):
                patterns.append(re.compile(_PLACEHOLDER.sub("[a-z]+", name) + r"\Z"))
            else:
                names.add(name)
    return names, patterns


def _strings(node, key: str = ""):
    """(key, string) for every string of a YAML document, with the key it sits under."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, str(k))
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, key)
    elif isinstance(node, str):
        yield key, node


def _read_in(node) -> set[str]:
    """Variables a playbook or task file reads: lrelease_* names in its Jinja (not in quotes,
    which are lookup/module names)."""
    out: set[str] = set()
    for key, text in _strings(node):
        for expr in [text] if key in _RAW_JINJA_KEYS else _JINJA.findall(text):
            out |= set(_NAME.findall(expr))
    return out


def _defined_in(node) -> set[str]:
    """Variables a playbook or task file sets itself: set_fact, register, vars, loop_var. Not
    set_stats: its data is no variable of the run but artifacts handed to the next job (an AWX
    workflow's), which takes them as extra vars: a row of their own when a playbook reads them."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("ansible.builtin.set_fact", "set_fact", "vars") and isinstance(value, dict):
                # the policy step's facts stand in for extra vars the wrapper gives: still the caller's
                out |= {k for k in value if not _caller_may_give(node, k)}
            elif key in ("register", "loop_var") and isinstance(value, str):
                out.add(value)
            out |= _defined_in(value)
    elif isinstance(node, list):
        for item in node:
            out |= _defined_in(item)
    return out


def _caller_may_give(task: dict, name: str) -> bool:
    """The policy step's facts (lrelease_lock, lrelease_rollout_id) stand in for extra vars a
    wrapper gives: they are set by the task named `lrelease policy facts` only."""
    return str(task.get("name", "")) == "lrelease policy facts"


def _yaml_files() -> list[Path]:
    return [*sorted(ROOT.glob("playbooks/*.yml")), *sorted(ROOT.glob("playbooks/tasks/*.yml")),
            *sorted(ROOT.glob("roles/*/tasks/*.yml")),
            *sorted(ROOT.glob("roles/*/defaults/main.yml")), *sorted(ROOT.glob("roles/*/vars/main.yml"))]


def specs() -> dict[str, dict]:
    """Every role's argument spec options (main entry point): name -> spec."""
    out = {}
    for path in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        entry = yaml.safe_load(path.read_text())["argument_specs"]["main"]
        out.update(entry.get("options") or {})
    return out


def role_defaults() -> dict[str, object]:
    out = {}
    for path in sorted(ROOT.glob("roles/*/defaults/main.yml")):
        out.update(yaml.safe_load(path.read_text()) or {})
    return out


def read_by_the_playbooks() -> set[str]:
    """What the playbooks and roles read that nobody in them sets: the variables a caller gives
    (a role's defaults, its vars/main.yml and what its tasks set are its own)."""
    read, defined = set(), set(role_defaults())
    for path in _yaml_files():
        doc = yaml.safe_load(path.read_text())
        read |= _read_in(doc)
        defined |= _defined_in(doc)
    for path in ROOT.glob("roles/*/vars/main.yml"):
        defined |= set(yaml.safe_load(path.read_text()) or {})
    for path in ROOT.glob("lrelease/ansible/**/*.py"):  # our plugins may read a variable themselves
        read |= set(_PLUGIN_READ.findall(path.read_text()))
    return read - defined


def covered(name: str, names: set[str], patterns: list[re.Pattern]) -> bool:
    return name in names or any(p.match(name) for p in patterns)


def test_the_table_parser_reads_names_and_patterns():
    text = ("## Playbook variables\n\n| variable | meaning |\n|---|---|\n| `lrelease_a`, `lrelease_b` | x `lrelease_c` |\n"
            "| `lrelease_<role>_before_<step>_tasks` | hooks |\n\n## Next\n| `lrelease_d` | no |\n")
    names, patterns = documented(text)
    assert names == {"lrelease_a", "lrelease_b"}
    assert covered("lrelease_switch_before_drain_tasks", names, patterns) and not covered("lrelease_d", names, patterns)


def test_the_scanner_tells_reads_from_settings_and_names():
    doc = [{"name": "t", "lrelease_gate": {"kind": "{{ lrelease_gate_kind }}"}, "when": "lrelease_x | bool",
            "vars": {"lrelease_y": "{{ lookup('lrelease_lock', db=lrelease_z) }}",
                     "lrelease_w": "{{ lookup('lrelease.release.lrelease_sha256', lrelease_v) }}"}, "register": "lrelease_r"}]
    assert _read_in(doc) == {"lrelease_gate_kind", "lrelease_x", "lrelease_z", "lrelease_v"}
    assert _defined_in(doc) == {"lrelease_y", "lrelease_w", "lrelease_r"}


def test_every_variable_the_playbooks_read_has_its_row():
    names, patterns = documented()
    missing = sorted(n for n in read_by_the_playbooks() if not covered(n, names, patterns))
    assert missing == [], f"docs/design.md 'Playbook variables' lacks: {', '.join(missing)}"


def test_every_role_option_is_documented_or_fed_by_a_documented_variable():
    # A role option is either a row of its own, or defaults to a documented variable
    # (lrelease_switch_build: "{{ lrelease_build }}")
    names, patterns = documented()
    defaults = role_defaults()
    missing = []
    for option in sorted(specs()):
        feeds = set(_NAME.findall(str(defaults.get(option, ""))))
        if not covered(option, names, patterns) and not feeds & names:
            missing.append(option)
    assert missing == [], f"docs/design.md 'Playbook variables' lacks: {', '.join(missing)}"


def test_every_row_is_a_variable_the_playbooks_or_roles_take():
    names, _ = documented()
    taken = read_by_the_playbooks() | set(specs())
    stale = sorted(names - taken)
    assert stale == [], f"docs/design.md documents variables nothing reads: {', '.join(stale)}"


@pytest.mark.parametrize("name", ["lrelease_gate_kind", "lrelease_gate_apm"])
def test_the_gate_variables_are_documented(name):
    names, _ = documented()
    assert name in names and name in read_by_the_playbooks()


@pytest.mark.parametrize("gate, kind, has_apm", [
    (None, "health", False),
    ({"provider": "scrape", "bake_seconds": 20}, "apm", True),
    ({"provider": "http", "bake_seconds": 20}, "health", False),
], ids=["no gate section", "an APM provider", "the http provider"])
def test_the_wrapper_always_says_which_gate(tmp_path, gate, kind, has_apm):
    from lrelease.config import load_config

    # Given an environment with (or without) a gate: section
    env = {"deploy_root": "/srv/demoapp", "service": {"systemd": "demoapp"}}
    if gate is not None:
        env["gate"] = gate
    path = tmp_path / "lrelease.yml"
    path.write_text(yaml.safe_dump({"version": 1, "app": "demoapp", "environments": {"production": env}}))
    # When its extra vars are made
    got = load_config(path).environment("production").playbook_vars()
    # Then the gate kind is always there, and the APM settings exactly when the kind is apm
    assert got["lrelease_gate_kind"] == kind
    assert ("lrelease_gate_apm" in got) == has_apm
