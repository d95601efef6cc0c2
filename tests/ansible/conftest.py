"""A sandbox fleet of its own for the playbook tests (4 nodes, 198.18.81.0/24), shared by the
package and reset before each test; plus helpers that run the playbooks exactly as AWX does
(plain ansible-playbook, extra vars from a file) and read the outcome off the nodes."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import slotted

import pytest
import requests

from lrelease.sandbox import provision, services
from lrelease.sandbox.demoapp.build import Artifact, Behaviour
from lrelease.sandbox.fleet import Sandbox

ROOT = Path(__file__).resolve().parents[2]
_DEFAULT_DIR, SETTINGS = slotted("/var/lib/lrelease-sandbox-helperb", 81, "lrhb", "lrbrb", 26080)
STATE_DIR = Path(os.environ.get("LRELEASE_ANSIBLE_SANDBOX_DIR", str(_DEFAULT_DIR)))
NODES = 4
SERVICE = "/srv/demoapp/bin/demoapp-service"


@dataclass(frozen=True)
class Run:
    rc: int
    out: str

    def custom_stats(self) -> dict:
        """The set_stats data (ANSIBLE_SHOW_CUSTOM_STATS), as AWX would hand it on."""
        for line in self.out.splitlines():
            if line.strip().startswith("RUN: {"):
                return json.loads(line.strip()[len("RUN: "):])
        return {}


class Fleet:
    """The sandbox as the tests see it."""

    def __init__(self, sandbox: Sandbox, tmp: Path) -> None:
        self.sandbox, self.tmp = sandbox, tmp
        self.cfg = sandbox.config
        self.names = [n.name for n in self.cfg.all_nodes()]

    # -- given ---------------------------------------------------------------------------
    def artifact(self, build: str, **behaviour) -> Artifact:
        return provision.artifact(self.cfg, build, Behaviour(**behaviour))

    def deploy_vars(self, art: Artifact, **extra) -> dict:
        return {
            "lrelease_build": art.build,
            "lrelease_artifact": str(art.path),
            "lrelease_artifact_sha256": art.sha256,
            "lrelease_waves": [1, 1, "100%"],
            "lrelease_service_command": SERVICE,
            "lrelease_lb_socket": str(services.haproxy_socket(self.cfg)),
            "lrelease_lb_backend": f"be_{self.cfg.app}",
            "lrelease_bake_seconds": 0,
            "lrelease_gate_timeout": 3,
            "lrelease_rollout_id": "test-rollout",
            "lrelease_actor": "pytest",
            "lrelease_gate_kind": "health",  # deploy.yml refuses a run that does not say which gate
            **extra,
        }

    # -- when ----------------------------------------------------------------------------
    def play(self, playbook: str, extravars: dict) -> Run:
        """ansible-playbook -i <inventory> playbooks/<playbook> -e @vars.json, from the repo root."""
        vars_file = self.tmp / f"vars-{playbook}-{len(list(self.tmp.iterdir()))}.json"
        # the policy step records this test's runs in its own state, not the checkout's
        vars_file.write_text(json.dumps({"lrelease_state_db": str(self.tmp / "state.db"), **extravars}))
        return self._run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(self.cfg.inventory_path),
                          f"playbooks/{playbook}", "-e", f"@{vars_file}"])

    def play_installed(self, fqcn: str, extravars: dict, cwd: Path, env: dict[str, str]) -> Run:
        """ansible-playbook -i <inventory> <fqcn> -e @vars.json from ``cwd`` with ``env`` (an
        installed collection: no checkout, no ansible.cfg)."""
        vars_file = cwd / f"vars-{len(list(cwd.iterdir()))}.json"
        vars_file.write_text(json.dumps({"lrelease_state_db": str(self.tmp / "state.db"), **extravars}))
        proc = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(self.cfg.inventory_path),
                               fqcn, "-e", f"@{vars_file}"], cwd=cwd, capture_output=True, text=True, timeout=300,
                              env={**env, "ANSIBLE_SHOW_CUSTOM_STATS": "1", "ANSIBLE_DEPRECATION_WARNINGS": "0"})
        return Run(proc.returncode, proc.stdout + proc.stderr)

    def adhoc(self, module: str, args: str, extravars: dict) -> Run:
        vars_file = self.tmp / "adhoc-vars.json"
        vars_file.write_text(json.dumps(extravars))
        return self._run([str(ROOT / ".venv" / "bin" / "ansible"), "-i", str(self.cfg.inventory_path), "all",
                          "-m", module, "-a", args, "-e", f"@{vars_file}"])

    def _run(self, argv: list[str]) -> Run:
        env = {**os.environ, "ANSIBLE_SHOW_CUSTOM_STATS": "1", "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_DEPRECATION_WARNINGS": "0"}
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        return Run(proc.returncode, proc.stdout + proc.stderr)

    # -- then ----------------------------------------------------------------------------
    def root(self, name: str) -> Path:
        return self.cfg.node_root(self.cfg.find_node(name))

    def current(self, name: str) -> str | None:
        return provision.current_build(self.cfg, self.cfg.find_node(name))

    def version(self, name: str) -> str:
        node = self.cfg.find_node(name)
        return requests.get(f"http://{node.address}:{node.app_port}/version", timeout=2).text.strip()

    def ledger(self, name: str) -> list[dict]:
        path = self.root(name) / ".lrelease" / "ledger.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def manifest(self, name: str, build: str) -> dict | None:
        path = self.root(name) / "releases" / build / ".lrelease-manifest.json"
        return json.loads(path.read_text()) if path.exists() else None

    def app_pid(self, name: str) -> int:
        return int((self.root(name) / "run" / "app.pid").read_text())

    def lb_states(self) -> dict[str, str]:
        """HAProxy's admin state per server: ready, drain or maint (runtime API)."""
        text = services.haproxy_command(self.cfg, f"show servers state be_{self.cfg.app}")
        header, states = None, {}
        for line in text.splitlines():
            if line.startswith("# "):
                header = line[2:].split()
            elif header and line.strip():
                row = dict(zip(header, line.split()))
                admin = int(row["srv_admin_state"])
                states[row["srv_name"]] = "maint" if admin & 0x27 else "drain" if admin & 0x18 else "ready"
        return states


@pytest.fixture(scope="package")
def ansible_sandbox():
    """This package's fleet: 4 netns nodes behind HAProxy, torn down at the end."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must run as root: the sandbox fleet needs network namespaces")
        pytest.skip("the sandbox fleet needs root (network namespaces); CI runs as root")
    sb = Sandbox(STATE_DIR)
    sb.up(nodes=NODES, **SETTINGS)
    try:
        yield sb
    finally:
        sb.down()


@pytest.fixture
def sandbox_fleet(ansible_sandbox, tmp_path):
    """The fleet on its baseline (every node on 1.0.0, nothing else on disk, faults cleared)."""
    ansible_sandbox.reset()
    cfg = ansible_sandbox.config
    for node in cfg.all_nodes():  # reset() leaves HAProxy alone
        services.haproxy_command(cfg, f"set server be_{cfg.app}/{node.name} state ready")
    return Fleet(ansible_sandbox, tmp_path)
