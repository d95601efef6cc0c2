"""The molecule scenarios (molecule/deploy, molecule/rollback) run for real, as `molecule test`,
on the session's sandbox fleet: LRELEASE_SANDBOX_DIR tells create.yml to reuse it and destroy.yml
to only reset the nodes it touched (the first three of six), never to tear it down."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import requests

from lrelease.sandbox import provision
from lrelease.sandbox.fleet import Sandbox

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
TOUCHED = ["node1", "node2", "node3"]  # lrelease_hosts: sandbox[0:2] (molecule/shared/vars.yml)
BASE = "1.0.0"
TIMEOUT = 300  # seconds per molecule command; a scenario takes about a minute here


@dataclass(frozen=True)
class Run:
    rc: int
    out: str


def molecule(sandbox: Sandbox, tmp: Path, *args: str) -> Run:
    """`molecule ARGS` from the repository root against SANDBOX, with an ephemeral dir of its own
    (a hand-run molecule keeps its state elsewhere) and the venv's ansible on PATH."""
    env = {
        **os.environ,
        "LRELEASE_SANDBOX_DIR": str(sandbox.state_dir),
        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp / "molecule"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "NO_COLOR": "1",
        "ANSIBLE_NOCOLOR": "1",
    }
    proc = subprocess.run([str(BIN / "molecule"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    return Run(proc.returncode, re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr))


def served(sandbox: Sandbox, name: str) -> str:
    node = sandbox.config.find_node(name)
    return requests.get(f"http://{node.address}:{node.app_port}/version", timeout=2).text.strip()


def app_pids(sandbox: Sandbox) -> dict[str, int]:
    cfg = sandbox.config
    return {n.name: int((cfg.node_root(n) / "run" / "app.pid").read_text()) for n in cfg.all_nodes()}


def changed_hosts(run: Run, task: str) -> list[str]:
    """Hosts reported `changed` by TASK over the whole run (every play that ran it)."""
    blocks = [b for b in run.out.split("TASK [")[1:] if b.startswith(f"{task}]")]
    return sorted({host for b in blocks for host in re.findall(r"^\W*changed: \[([^\]]+)\]", b, re.MULTILINE)})


def assert_every_step_passed(run: Run, scenario: str) -> None:
    assert run.rc == 0, run.out[-6000:]
    for step in ("create", "prepare", "converge", "idempotence", "verify", "destroy"):
        # "deploy ➜ verify: Executed: Successful" (">" instead of "➜" without a terminal)
        assert re.search(rf"^{scenario} \S+ {step}: Executed: Successful$", run.out, re.MULTILINE), run.out[-6000:]


def assert_reset_not_torn_down(sandbox: Sandbox, pids_before: dict[str, int], build: str) -> None:
    """The fleet is still up; the touched nodes are back on the baseline alone; the others were
    never restarted; the scenario's artifact is gone."""
    status = sandbox.status()
    assert len(status.nodes) == len(pids_before) and all(n.ssh and n.healthy for n in status.nodes)
    cfg = sandbox.config
    for name in TOUCHED:
        root = cfg.node_root(cfg.find_node(name))
        assert served(sandbox, name) == BASE
        assert sorted(p.name for p in (root / "releases").iterdir()) == [BASE]
        assert not (root / ".lrelease" / "ledger.jsonl").exists()
    others = {name: pid for name, pid in app_pids(sandbox).items() if name not in TOUCHED}
    assert others == {name: pid for name, pid in pids_before.items() if name not in TOUCHED}
    assert all(provision.current_build(cfg, cfg.find_node(name)) == BASE for name in others)
    assert not list(cfg.artifacts_dir.glob(f"demoapp-{build}.*"))


def test_the_deploy_scenario_passes_and_leaves_the_reused_fleet_up(fleet, tmp_path):
    # Given the session's fleet on the baseline
    pids = app_pids(fleet)
    # When `molecule test -s deploy` runs on it
    run = molecule(fleet, tmp_path, "test", "-s", "deploy")
    # Then every step passed: a second converge changed nothing, verify found the new build served
    assert_every_step_passed(run, "deploy")
    # And the converge switched exactly the scenario's nodes
    assert changed_hosts(run, "lrelease.release.lrelease_switch : switched") == TOUCHED
    # And destroy only reset the touched nodes: the fleet is up and the others never restarted
    assert_reset_not_torn_down(fleet, pids, "1.1.0-molecule")


def test_the_rollback_scenario_passes_and_leaves_the_reused_fleet_up(fleet, tmp_path):
    # Given the session's fleet on the baseline
    pids = app_pids(fleet)
    # When `molecule test -s rollback` runs on it (prepare deploys 1.2.0-molecule, converge rolls back)
    run = molecule(fleet, tmp_path, "test", "-s", "rollback")
    # Then every step passed: a second rollback changed nothing, verify found the baseline served
    assert_every_step_passed(run, "rollback")
    # And prepare switched exactly the scenario's nodes, converge rolled exactly those back
    assert changed_hosts(run, "lrelease.release.lrelease_switch : switched") == TOUCHED
    assert changed_hosts(run, "lrelease.release.lrelease_rollback : rolled back") == TOUCHED
    # And destroy only reset the touched nodes
    assert_reset_not_torn_down(fleet, pids, "1.2.0-molecule")


def test_the_deploy_verifier_fails_on_a_fleet_without_the_build(fleet, tmp_path):
    # Given the fleet on the baseline, the deploy scenario's build never deployed
    # When the deploy scenario's verifier runs alone
    run = molecule(fleet, tmp_path, "verify", "-s", "deploy")
    # Then it fails, naming what each host serves instead
    assert run.rc != 0
    for name in TOUCHED:
        assert f"{name} serves {BASE}, expected 1.1.0-molecule" in run.out, run.out[-4000:]
