"""The sandbox fleet, exercised for real: SSH with host-key checking, Ansible, HAProxy,
Prometheus under load, and every fault hook applied and undone."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import requests
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.sandbox import netns, services, sshd
from lrelease.sandbox.proc import read_pid
from tests.conftest import LOAD_RATE, ROOT, TEST_NODES, TEST_SANDBOX, TEST_STATE_DIR


def ssh(sb, node_name: str, command: str, **kw) -> subprocess.CompletedProcess[str]:
    node = sb.config.find_node(node_name)
    return subprocess.run([*sshd.ssh_argv(sb.config, node), command], capture_output=True, text=True, timeout=30, **kw)


def eventually(predicate, timeout: float = 15.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def prom_query(sb, query: str) -> dict[str, float]:
    resp = requests.get(f"{services.prometheus_url(sb.config)}/api/v1/query", params={"query": query}, timeout=5)
    resp.raise_for_status()
    return {r["metric"].get("node", ""): float(r["value"][1]) for r in resp.json()["data"]["result"]}


def test_every_node_over_ssh_sees_its_own_hostname_and_deploy_root(fleet):
    # Given a marker written into each node's own deploy root from the controller
    sandbox = fleet
    cfg = sandbox.config
    for node in cfg.all_nodes():
        (cfg.node_root(node) / "whoami").write_text(node.name + "\n")
    try:
        for node in cfg.all_nodes():
            # When we ssh in by name, with host-key checking on
            out = ssh(sandbox, node.name, f"hostname; cat {cfg.deploy_root}/whoami; readlink {cfg.deploy_root}/current")
            # Then the node answers with its own hostname, its own deploy root, at the shared path
            assert out.returncode == 0, out.stderr
            assert out.stdout.split() == [node.name, node.name, f"releases/{cfg.baseline_build}"]
    finally:
        for node in cfg.all_nodes():
            (cfg.node_root(node) / "whoami").unlink()


def test_host_key_checking_is_on(sandbox, tmp_path):
    # Given a known_hosts file where node1's entry carries node2's key
    cfg = sandbox.config
    n1, n2 = cfg.find_node("node1"), cfg.find_node("node2")
    key2 = (cfg.node_dir(n2) / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{n1.address} {' '.join(key2)}\n")
    # When we connect to node1 with it
    out = subprocess.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={wrong}",
                          "-o", "StrictHostKeyChecking=yes", "-i", str(sshd.client_key(cfg)), f"root@{n1.address}", "true"],
                         capture_output=True, text=True, timeout=30)
    # Then ssh refuses: the node has a host key of its own and we check it
    assert out.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in out.stderr


def test_ansible_reaches_every_node_through_the_generated_inventory(sandbox):
    # When real Ansible runs an ad-hoc command on the sandbox inventory
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    out = subprocess.run([str(ROOT / ".venv/bin/ansible"), "sandbox", "-i", str(sandbox.config.inventory_path),
                          "-m", "ansible.builtin.command", "-a", "hostname", "-o"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    # Then every node answers, each with its own hostname
    assert out.returncode == 0, out.stdout + out.stderr
    answered = {line.split(" | ")[0]: line.split()[-1] for line in out.stdout.splitlines() if " | CHANGED" in line}
    assert answered == {f"node{i}": f"node{i}" for i in range(1, TEST_NODES + 1)}


def test_prometheus_scrapes_every_node_and_counters_rise_under_load(sandbox):
    # Given the background load the session fixture started
    assert services.load_running(sandbox.config)
    # Then Prometheus has every node's target up
    targets = eventually(lambda: services.prometheus_targets(sandbox.config))
    assert targets == {f"node{i}": "up" for i in range(1, TEST_NODES + 1)}
    # And each node's request counter rises between two looks
    query = 'sum by (node) (demoapp_http_requests_total{path="/"})'
    first = eventually(lambda: (r := prom_query(sandbox, query)) and len(r) == TEST_NODES and r)
    second = eventually(lambda: (r := prom_query(sandbox, query)) and all(r.get(k, 0) > v for k, v in first.items()) and r,
                        timeout=20)
    assert second, f"counters did not rise: {first}"
    assert all(second[k] > first[k] for k in first)


def test_haproxy_balances_over_every_node_and_exposes_its_runtime_api(sandbox):
    cfg = sandbox.config
    # When we send a few requests through the load balancer
    seen, codes = set(), []
    for _ in range(8 * TEST_NODES):
        resp = requests.get(f"http://127.0.0.1:{cfg.haproxy_port}/", timeout=5)
        codes.append(resp.status_code)
        if resp.status_code == 200:
            seen.add(resp.text.split()[-1])
    # Then they reached the app (the baseline build answers ~0.5% with a deliberate 500)
    assert set(codes) <= {200, 500} and codes.count(200) >= len(codes) - 3, codes
    # And every node served some of them
    assert seen == {f"node{i}" for i in range(1, TEST_NODES + 1)}
    # And the runtime API lists every server, usable for drains
    state = services.haproxy_command(cfg, "show servers state")
    assert all(f" node{i} " in state for i in range(1, TEST_NODES + 1))


def test_status_cli_lists_nodes_with_address_reachability_version_and_target(fleet):
    # When the status command runs in-process with --json
    result = CliRunner().invoke(cli, ["sandbox", "status", "--json", "--state-dir", str(TEST_STATE_DIR)])
    # Then it lists every node as reachable, on the baseline, with its Prometheus target up
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == "lrelease.sandbox.status/v1"
    assert [n["name"] for n in data["nodes"]] == [f"node{i}" for i in range(1, TEST_NODES + 1)]
    for n in data["nodes"]:
        assert n["address"].startswith(TEST_SANDBOX["subnet"].rsplit(".", 1)[0] + ".")
        assert (n["ssh"], n["link_up"], n["version"], n["healthy"], n["prometheus"]) == (True, True, "1.0.0", True, "up")
    assert data["haproxy"] and data["prometheus"] and data["load"]


def test_up_again_is_a_no_op_for_running_nodes(sandbox):
    # Given the pids of every node's sshd and app
    cfg = sandbox.config
    before = {n.name: (read_pid(sshd.sshd_pidfile(cfg, n)), read_pid(cfg.node_root(n) / "run" / "app.pid"))
              for n in cfg.all_nodes()}
    # When up runs again with the same settings
    sandbox.up(nodes=TEST_NODES, load_rate=LOAD_RATE, **{k: getattr(cfg, k) for k in ("subnet", "prefix", "bridge", "haproxy_port", "prometheus_port")})
    # Then nothing was restarted
    after = {n.name: (read_pid(sshd.sshd_pidfile(cfg, n)), read_pid(cfg.node_root(n) / "run" / "app.pid"))
             for n in cfg.all_nodes()}
    assert after == before


# -- fault hooks: each takes effect, and is undone ----------------------------------------
def test_fault_link_down_and_up(fleet):
    node = fleet.config.find_node("node3")
    fleet.fault("node3", "link-down")
    assert not sshd.port_open(node.address, 22, timeout=1)
    assert ssh(fleet, "node3", "true", ).returncode == 255
    assert fleet.status().nodes[2].link_up is False
    # (the failed connection above left the bridge a failed neighbour entry for node3)
    fleet.fault("node3", "link-up")
    # Then the node is in reach as soon as the fault is undone, not "no route to host" for a while
    assert sshd.port_open(node.address, 22, timeout=1)
    assert ssh(fleet, "node3", "hostname").stdout.strip() == "node3"


def test_fault_sshd_stop_and_start(fleet):
    node = fleet.config.find_node("node2")
    fleet.fault("node2", "sshd-stop")
    out = ssh(fleet, "node2", "true")
    assert out.returncode == 255 and "refused" in out.stderr
    # the node itself is still up and serving
    assert requests.get(f"http://{node.address}:{node.app_port}/health", timeout=2).status_code == 200
    assert fleet.status().nodes[1].faults == ("sshd-stop",)
    fleet.fault("node2", "sshd-start")
    assert ssh(fleet, "node2", "hostname").stdout.strip() == "node2"


def test_fault_deploy_root_full_and_freed(fleet):
    root = fleet.config.deploy_root
    fleet.fault("node4", "disk-full")
    out = ssh(fleet, "node4", f"head -c 1048576 /dev/zero > {root}/probe")
    assert out.returncode != 0 and "No space left on device" in out.stderr
    # only node4 is full: node5's deploy root is a filesystem of its own
    assert ssh(fleet, "node5", f"head -c 1048576 /dev/zero > {root}/probe && rm {root}/probe").returncode == 0
    fleet.fault("node4", "disk-free")
    assert ssh(fleet, "node4", f"head -c 1048576 /dev/zero > {root}/probe && rm {root}/probe").returncode == 0


def test_fault_app_kill_and_start(fleet):
    node = fleet.config.find_node("node1")
    url = f"http://{node.address}:{node.app_port}/health"
    fleet.fault("node1", "app-kill")
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)
    # Prometheus sees the target go down
    assert eventually(lambda: services.prometheus_targets(fleet.config).get("node1") == "down")
    fleet.fault("node1", "app-start")
    assert requests.get(url, timeout=2).status_code == 200
    assert eventually(lambda: services.prometheus_targets(fleet.config).get("node1") == "up")


def test_reset_clears_faults_and_returns_to_the_baseline(fleet):
    cfg = fleet.config
    node = cfg.find_node("node6")
    # Given node6 with a stray release, a full disk and no app
    (cfg.node_root(node) / "releases" / "9.9.9").mkdir()
    fleet.fault("node6", "disk-full")
    fleet.fault("node6", "app-kill")
    # When reset
    fleet.reset(["node6"])
    # Then it is back on the baseline only, serving, with no fault left
    assert sorted(p.name for p in (cfg.node_root(node) / "releases").iterdir()) == [cfg.baseline_build]
    assert requests.get(f"http://{node.address}:{node.app_port}/version", timeout=2).text.strip() == cfg.baseline_build
    assert fleet.status().nodes[5].faults == ()
    assert netns.link_up(node)
