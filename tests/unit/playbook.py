"""What the unit tests that run a role through real ansible-playbook on localhost share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
ENV = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_NOCOLOR": "1"}
LOCAL_HOST = {"ansible_connection": "local", "ansible_host": "127.0.0.1", "ansible_python_interpreter": sys.executable}


def run_local(tmp_path: Path, playbook: str, extra_vars: dict, hosts: dict | None = None) -> subprocess.CompletedProcess:
    """``playbook`` (YAML text) run by real ansible-playbook from the checkout on local hosts (``hosts``:
    name -> host vars added to LOCAL_HOST; default one host, app1), ``extra_vars`` from a JSON file."""
    hosts = {"app1": {}} if hosts is None else hosts
    inventory, play, extra = (tmp_path / n for n in ("inventory.yml", "play.yml", "vars.json"))
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {n: {**LOCAL_HOST, **v} for n, v in hosts.items()}}}))
    play.write_text(playbook)
    extra.write_text(json.dumps(extra_vars))
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(play), "-e", f"@{extra}"]
    return subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
