"""A second, small sandbox of its own: up is idempotent and repairs, down leaves nothing
behind even after a crash, local mode works without namespaces."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.sandbox import netns, provision, sshd
from lrelease.sandbox.fleet import Sandbox
from lrelease.sandbox.config import SandboxConfig
from lrelease.sandbox.proc import owned_pids, pid_alive, read_pid
from tests.conftest import TEST_SANDBOX, slotted
from tests.sandbox.test_fleet import eventually, ssh

LIFE_DIR, LIFE = slotted("/var/lib/lrelease-sandbox-lifecycle", 79, "lrlife", "lrbrl", 24080)
APP_ROOT = Path(f"/srv/{LIFE['prefix']}-approot")  # a directory of this machine, one per test slot


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
    """Every process the sandbox runs, as this machine numbers them (nodes number their own)."""
    cfg = sb.config
    pids = [netns.node_pid(cfg, n, sshd.sshd_pidfile(cfg, n)) for n in cfg.all_nodes()]
    pids += [provision.app_pid(cfg, n) for n in cfg.all_nodes()]
    pids += [read_pid(netns.init_pidfile(cfg, n)) for n in cfg.all_nodes()]
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
    os.kill(netns.node_pid(cfg, node2, sshd.sshd_pidfile(cfg, node2)), signal.SIGKILL)
    os.kill(provision.app_pid(cfg, node2), signal.SIGKILL)
    # and whose node1 lost its first process (the kernel ends every process of the node with it)
    node1 = cfg.find_node("node1")
    os.kill(read_pid(netns.init_pidfile(cfg, node1)), signal.SIGKILL)
    assert eventually(lambda: provision.app_pid(cfg, node1) is None)
    # When up runs again, asking for 3 nodes
    life.up(nodes=3, **LIFE)
    # Then node1 and node2 are reachable and serving again, and node3 exists
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


def test_app_root_adds_a_private_directory_and_down_leaves_nothing(life):
    # Given a directory of this machine holding a file, and a saved 2-node sandbox
    APP_ROOT.mkdir(exist_ok=True)
    (APP_ROOT / "from-host").write_text("machine\n")
    try:
        SandboxConfig(nodes=2, state_dir=str(LIFE_DIR), **LIFE).save()
        # When the sandbox comes up with it as an app root
        result = CliRunner().invoke(cli, ["sandbox", "up", "--app-root", str(APP_ROOT), "--load-rate", "0",
                                          "--state-dir", str(LIFE_DIR)])
        assert result.exit_code == 0, result.output
        cfg = life.config
        assert cfg.app_roots == (str(APP_ROOT),)
        # Then node1 reads the machine's file there and writes one of its own beside it
        out = ssh(life, "node1", f"cat {APP_ROOT}/from-host && echo node1 > {APP_ROOT}/new && cat {APP_ROOT}/new")
        assert (out.returncode, out.stdout.split()) == (0, ["machine", "node1"]), out.stderr
        # And neither node2 nor the machine sees node1's file
        assert ssh(life, "node2", f"cat {APP_ROOT}/from-host && test ! -e {APP_ROOT}/new").returncode == 0
        assert sorted(p.name for p in APP_ROOT.iterdir()) == ["from-host"]
        pids = [p for p in _pids(life) if p]  # no load generator: --load-rate 0
        assert len(pids) == 3 * cfg.nodes + 2
        # When down runs
        life.down()
        # Then no namespace, link, mount, file or process is left, and the machine's directory is as it was
        assert leftovers(LIFE_DIR) == []
        assert [p for p in pids if pid_alive(p)] == []
        assert sorted(p.name for p in APP_ROOT.iterdir()) == ["from-host"]
    finally:
        shutil.rmtree(APP_ROOT, ignore_errors=True)


@pytest.mark.parametrize("app_root, expected", [
    ("srv/shop", "an absolute directory such as /srv/shop, got 'srv/shop'"),
    ("/proc/shop", "a directory outside /proc, /sys, /dev, /run, got /proc/shop"),
    ("/srv/demoapp/x", "a directory outside the deploy root /srv/demoapp"),
])
def test_a_bad_app_root_is_refused_in_one_line_and_changes_nothing(tmp_path, app_root, expected):
    # When up is given an app root that cannot be private to a node
    state = tmp_path / "sandbox"
    result = CliRunner().invoke(cli, ["sandbox", "up", "--app-root", app_root, "--state-dir", str(state)])
    # Then it exits 2 with one line naming the option and what was expected, and made nothing
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "app_roots (--app-root)" in lines[0] and expected in lines[0], lines
    assert not state.exists()
