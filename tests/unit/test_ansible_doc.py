"""ansible-doc works for every plugin and every role of the collection lrelease.release, read
through the checkout's ansible.cfg (collections_path points at the checkout): exit 0, a
non-empty description, and every role's argument spec renders (no crash on a list item that
YAML reads as a mapping)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "lrelease" / "ansible"
ANSIBLE_DOC = Path(sys.executable).with_name("ansible-doc")
NS = "lrelease.release"


def _names(kind: str) -> list[str]:
    return sorted(p.stem for p in (PLUGINS / kind).glob("*.py") if p.stem != "__init__")


ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())
# ansible-doc -t <type> and the plugins of that type; an action plugin is documented by the module
# file of the same name (as ansible.builtin.debug is), so every action must have one.
DOCUMENTED = {"module": _names("modules"), "inventory": _names("inventory"), "lookup": _names("lookup"),
              "callback": _names("callback")}


def ansible_doc(kind: str, names: list[str], tmp_path: Path) -> dict:
    """ansible-doc's text page (what a user reads) and its JSON (what the assertions read)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / ".ansible-tmp")}
    fqcns = [f"{NS}.{n}" for n in names]
    out = {}
    for mode in ([], ["--json"]):
        proc = subprocess.run([str(ANSIBLE_DOC), "-t", kind, *mode, *fqcns],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr, proc.stderr
        out[bool(mode)] = proc.stdout
    for fqcn in fqcns:
        assert fqcn in out[False], f"no text page for {fqcn}"
    return json.loads(out[True])


def test_every_action_plugin_has_a_module_doc_of_the_same_name():
    # Given the action plugins  Then each one has its documentation in modules/
    assert set(_names("action")) <= set(DOCUMENTED["module"])


@pytest.mark.parametrize("kind", sorted(DOCUMENTED))
def test_ansible_doc_documents_every_plugin(kind, tmp_path):
    # Given every plugin of this type in the collection
    names = DOCUMENTED[kind]
    assert names
    # When ansible-doc reads them by their fully qualified names
    docs = ansible_doc(kind, names, tmp_path)
    # Then each has a description, its options (a callback has none: enabling it is all) and examples
    assert sorted(docs) == sorted(f"{NS}.{n}" for n in names)
    for fqcn, entry in docs.items():
        doc = entry["doc"]
        assert doc["short_description"] and doc["description"], fqcn
        assert doc.get("options") or kind == "callback", fqcn
        assert entry.get("examples"), fqcn
        if kind == "module":
            assert entry.get("return"), fqcn


def test_ansible_doc_renders_every_role_entry_point(tmp_path):
    # Given every role  When ansible-doc -t role reads them
    docs = ansible_doc("role", ROLES, tmp_path)
    # Then each role's main entry point has a description and typed options
    assert sorted(docs) == sorted(f"{NS}.{r}" for r in ROLES)
    for fqcn, entry in docs.items():
        main = entry["entry_points"]["main"]
        assert main["short_description"], fqcn
        for name, option in main.get("options", {}).items():
            assert option.get("type") and option.get("description"), f"{fqcn}: {name}"
