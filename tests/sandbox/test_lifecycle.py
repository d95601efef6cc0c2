"""A second, small sandbox of its own: up is idempotent and repairs, down leaves nothing
behind even after a crash, local mode works without namespaces."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.sandbox import netns, sshd
from lrelease.sandbox.fleet import Sandbox
from lrelease.sandbox.config import SandboxConfig
from lrelease.sandbox.proc import owned_pids, pid_alive, read_pid
from tests.conftest import TEST_SANDBOX, slotted

LIFE_DIR, LIFE = slotted("/var/lib/lrelease-sandbox-lifecycle", 79, "lrlife", "lrbrl", 24080)


def leftovers(state_dir: Path) -> list[str]:
    """Everything a sandbox could leave behind, as readable strings."""
    found = [f"netns {n}" for n in netns.netns_list() if n.startswith(LIFE["prefix"] + "-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines() if LIFE["bridge"] in line]
    found += [f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if str(state_dir) in line.split()[4]]
    found += [f"dir {state_dir}"] if state_dir.exists() else []
    return found


@pytest.fixture
def life():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    sb = Sandbox(LIFE_DIR)
    yield sb
    sb.down()


def _pids(sb: Sandbox) -> list[int]:
    cfg = sb.config
    pids = [read_pid(sshd.sshd_pidfile(cfg, n)) for n in cfg.all_nodes()]
    pids += [read_pid(cfg.node_root(n) / "run" / "app.pid") for n in cfg.all_nodes()]
    pids += [read_pid(LIFE_DIR / name / f"{name}.pid") for name in ("haproxy", "prometheus")]
    pids += [read_pid(LIFE_DIR / "loadgen.pid")]
    return pids


def test_down_finds_processes_whose_pidfiles_were_lost(life):
    # Given a 2-node sandbox under load whose pidfiles are all gone (a crashed controller)
    life.up(nodes=2, load_rate=5, **LIFE)
    pids = _pids(life)
    assert all(pids) and leftovers(LIFE_DIR)
    for pidfile in LIFE_DIR.rglob("*.pid"):
        pidfile.unlink()
    # When down runs
    result = CliRunner().invoke(cli, ["sandbox", "down", "--state-dir", str(LIFE_DIR)])
    # Then no namespace, link, mount, file or process is left
    assert result.exit_code == 0, result.output
    assert leftovers(LIFE_DIR) == []
    assert [p for p in pids if pid_alive(p)] == [], "processes survived down"


def test_down_cleans_up_after_up_was_killed_half_way(life):
    # Given `sandbox up` SIGKILLed while it was building a 3-node fleet
    cmd = [str(Path(sys.executable).parent / "lrelease"), "sandbox", "up", "--nodes", "3", "--load-rate", "0",
           "--state-dir", str(LIFE_DIR)]
    # (the CLI keeps saved settings it is not given: save ours, as an earlier `up` would have)
    SandboxConfig(nodes=1, state_dir=str(LIFE_DIR), **LIFE).save()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not list(LIFE_DIR.glob("nodes/node2/sshd.pid")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert leftovers(LIFE_DIR), "the half-built fleet should have left something to clean"
    # When down runs
    life.down()
    # Then nothing is left
    assert leftovers(LIFE_DIR) == []
    assert owned_pids(LIFE_DIR) == []


def test_up_repairs_a_half_dead_fleet_and_resizes(life):
    # Given a 2-node sandbox whose node2 lost its sshd (SIGKILL) and its app
    life.up(nodes=2, **LIFE)
    cfg = life.config
    node2 = cfg.find_node("node2")
    os.kill(read_pid(sshd.sshd_pidfile(cfg, node2)), signal.SIGKILL)
    os.kill(read_pid(cfg.node_root(node2) / "run" / "app.pid"), signal.SIGKILL)
    # When up runs again, asking for 3 nodes
    life.up(nodes=3, **LIFE)
    # Then node2 is reachable and serving again, and node3 exists
    st = life.status()
    assert [(n.name, n.ssh, n.version) for n in st.nodes] == [(f"node{i}", True, "1.0.0") for i in (1, 2, 3)]
    # And shrinking back to 2 removes node3's namespace
    life.up(nodes=2, **LIFE)
    assert f"{LIFE['prefix']}-node3" not in netns.netns_list()
    assert len(life.status().nodes) == 2


def test_local_mode_runs_without_namespaces(tmp_path):
    # Given a local-mode sandbox (what a laptop without root gets)
    sb = Sandbox(tmp_path / "local")
    try:
        sb.up(nodes=2, mode="local", app_port=21000, haproxy_port=21880, prometheus_port=21890)
        st = sb.status()
        # Then each node is a directory with its app on its own loopback port
        assert st.mode == "local"
        assert [(n.address, n.port, n.version, n.healthy) for n in st.nodes] == [
            ("127.0.0.1", 21101, "1.0.0", True), ("127.0.0.1", 21102, "1.0.0", True)]
        assert "ansible_connection: local" in sb.config.inventory_path.read_text()
        assert requests.get("http://127.0.0.1:21880/health", timeout=2).status_code == 200
        # And faults that need a real node are refused with one clear line
        result = CliRunner().invoke(cli, ["sandbox", "fault", "node1", "link-down", "--state-dir", str(tmp_path / "local")])
        assert result.exit_code == 2 and "needs the netns sandbox" in result.output
        app_pid = read_pid(sb.config.node_root(sb.config.find_node("node1")) / "run" / "app.pid")
    finally:
        sb.down()
    assert not pid_alive(app_pid)
    assert not (tmp_path / "local").exists()


def test_down_of_an_unknown_state_dir_leaves_other_sandboxes_alone(sandbox, tmp_path):
    # Given the session's fleet up, and a state dir that holds no sandbox (a typo)
    before = sorted(n for n in netns.netns_list() if n.startswith(TEST_SANDBOX["prefix"] + "-"))
    assert before
    # When down runs on it
    result = CliRunner().invoke(cli, ["sandbox", "down", "--state-dir", str(tmp_path / "typo")])
    # Then nothing of the running fleet was touched
    assert result.exit_code == 0
    assert sorted(n for n in netns.netns_list() if n.startswith(TEST_SANDBOX["prefix"] + "-")) == before
    assert sandbox.status().nodes[0].ssh
