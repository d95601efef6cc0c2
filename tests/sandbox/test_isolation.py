"""Each node is a machine of its own, so a stranger's app can live on the sandbox: its own
processes (a PID namespace) and its own writable application directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lrelease.sandbox.config import SandboxConfig
from lrelease.sandbox.netns import HOME, HOME_FILES, private_dirs
from tests.sandbox.test_fleet import eventually, ssh

SLEEPER = "sleep 4242"
COUNT = "pgrep -fc 'slee[p] 4242'"  # the bracket keeps the shell running pgrep from matching itself


def _start_sleeper(sb, node_name: str) -> None:
    out = ssh(sb, node_name, f"setsid nohup {SLEEPER} </dev/null >/dev/null 2>&1 & echo started")
    assert out.returncode == 0 and out.stdout.strip() == "started", out.stderr


def _sleepers(sb, node_name: str) -> int:
    out = ssh(sb, node_name, COUNT)
    assert out.returncode in (0, 1), out.stderr  # pgrep exits 1 when it counts 0
    return int(out.stdout.strip())


def test_a_process_on_node1_is_invisible_to_node2_and_pkill_there_spares_node2(fleet):
    # Given the same long-running command started on node1 and on node2
    try:
        _start_sleeper(fleet, "node1")
        _start_sleeper(fleet, "node2")
        # When each node counts it
        # Then each sees its own process only
        assert (_sleepers(fleet, "node1"), _sleepers(fleet, "node2")) == (1, 1)
        # When node1 pkills it
        assert ssh(fleet, "node1", "pkill -f 'slee[p] 4242'").returncode == 0
        # Then node1's is gone and node2's still runs
        assert eventually(lambda: _sleepers(fleet, "node1") == 0)
        assert _sleepers(fleet, "node2") == 1
    finally:
        for name in ("node1", "node2"):
            ssh(fleet, name, "pkill -f 'slee[p] 4242'")


def test_a_node_sees_only_its_own_processes(fleet):
    # Given the controller's HAProxy and Prometheus running on this machine
    mine = {p.name for p in Path("/proc").glob("[0-9]*")}
    assert str(os.getpid()) in mine
    # When node3 lists the commands of every process in its /proc
    out = ssh(fleet, "node3", "cat /proc/[0-9]*/comm 2>/dev/null; true")  # (cat itself may be gone by then)
    assert out.returncode == 0, out.stderr
    comms = set(out.stdout.split())
    # Then it sees its own sshd and app, and none of the controller's processes
    assert {"sshd", "python3"} <= comms, comms
    assert not comms & {"haproxy", "prometheus", "pytest"}, comms
    # And its process count is a node's, not the machine's
    assert len(out.stdout.split()) < 30 < len(mine)


@pytest.mark.parametrize("path", ["/opt/x", "/var/lib/x", "/var/log/x", "/etc/shop/x", "/root/x"])
def test_a_file_written_on_node1_is_absent_on_node2_and_on_the_controller(fleet, path):
    # Given nothing at the path on the controller
    assert not Path(path).exists(), f"{path} exists on this machine: remove it first"
    made_dir = not Path(path).parent.exists()
    try:
        # When node1 writes the file
        out = ssh(fleet, "node1", f"mkdir -p {Path(path).parent} && echo node1 > {path} && cat {path}")
        assert out.returncode == 0 and out.stdout.strip() == "node1", out.stderr
        # Then node2 does not have it, nor does the controller
        assert ssh(fleet, "node2", f"test -e {path}").returncode == 1
        assert not Path(path).exists()
    finally:
        ssh(fleet, "node1", f"rm -f {path}")
        Path(path).unlink(missing_ok=True)  # only there if the node wrote through to the machine
        if made_dir and Path(path).parent.is_dir() and not any(Path(path).parent.iterdir()):
            Path(path).parent.rmdir()


def test_private_directories_still_show_the_machines_own_content(fleet):
    # When node1 reads system files below its private directories
    out = ssh(fleet, "node1", "test -s /etc/passwd && test -d /var/lib/dpkg && /usr/bin/python3 -c 'print(1)'")
    # Then they are there: the machine's content is the layer below the node's own writes
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_app_roots_add_to_the_private_directories_and_nested_ones_are_covered_by_their_parent():
    # Given app roots beside, inside and above the default private directories
    cfg = SandboxConfig(app_roots=("/srv/shop", "/opt/shop", "/var", "/root/.cache"))
    # Then each path is private once, under its outermost private directory
    assert sorted(private_dirs(cfg)) == ["/etc", "/opt", "/root", "/srv/shop", "/var"]
    # And the defaults are there without any app root
    assert sorted(private_dirs(SandboxConfig())) == ["/etc", "/opt", "/root", "/var/lib", "/var/log"]


def test_each_node_has_a_home_of_its_own_with_a_minimal_profile_not_the_machines(fleet):
    # Given a probe in this machine's root home (where its own shell profile lives)
    probe = Path(HOME) / f".lrelease-home-probe-{os.getpid()}"
    probe.write_text("the machine's home\n")
    try:
        # When a command over SSH on node1 and on node2 looks at its home
        seen = {}
        for name in ("node1", "node2"):
            out = ssh(fleet, name, f'echo "$HOME"; stat -c %d "$HOME"; test -e ~/{probe.name} && echo probe; '
                                   "cat ~/.bashrc ~/.profile")
            assert out.returncode == 0, out.stderr
            seen[name] = out.stdout.splitlines()
        # Then each is root's usual home, but its own: none sees the machine's probe, and the two
        # nodes' homes are different filesystems, neither of them the machine's
        for name, (home, dev, *rest) in seen.items():
            assert home == HOME, (name, home)
            assert "probe" not in rest, f"{name} sees this machine's home"
            assert int(dev) != os.stat(HOME).st_dev, name
            # And its shell profile is the sandbox's minimal one, not the machine's
            assert "\n".join(rest) == (HOME_FILES[".bashrc"] + HOME_FILES[".profile"]).rstrip("\n"), (name, rest)
        assert seen["node1"][1] != seen["node2"][1]
    finally:
        probe.unlink(missing_ok=True)


def test_a_command_over_ssh_runs_the_nodes_own_bashrc_only(fleet):
    # Given a marker line added to node3's ~/.bashrc (bash started by sshd for a command reads
    # ~/.bashrc: that is how the machine's profile, pyenv and all, ran on every SSH command when
    # nodes shared the machine's home)
    machine_bashrc = (Path(HOME) / ".bashrc").read_bytes() if (Path(HOME) / ".bashrc").exists() else None
    assert ssh(fleet, "node3", "cp ~/.bashrc ~/.bashrc.keep && echo 'echo marker-ran' >> ~/.bashrc").returncode == 0
    try:
        # When a command runs over SSH on node3 and on node4
        on3, on4 = ssh(fleet, "node3", "echo command-ran"), ssh(fleet, "node4", "echo command-ran")
        # Then node3's command ran its own ~/.bashrc first, node4's did not see it, and the
        # machine's own ~/.bashrc was neither read for it nor changed
        assert on3.returncode == 0 and on3.stdout.split() == ["marker-ran", "command-ran"], (on3.stdout, on3.stderr)
        assert on4.returncode == 0 and on4.stdout.split() == ["command-ran"], (on4.stdout, on4.stderr)
        assert ((Path(HOME) / ".bashrc").read_bytes() if (Path(HOME) / ".bashrc").exists() else None) == machine_bashrc
    finally:
        ssh(fleet, "node3", "mv ~/.bashrc.keep ~/.bashrc")
    # And with its minimal profile back, node3's SSH command prints its own output only
    assert ssh(fleet, "node3", "echo command-ran").stdout.split() == ["command-ran"]
