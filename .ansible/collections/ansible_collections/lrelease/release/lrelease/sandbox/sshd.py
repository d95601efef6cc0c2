"""Each node's own sshd, host key and the controller's key + known_hosts (host-key checking stays on)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from lrelease.sandbox import netns
from lrelease.sandbox.config import Node, SandboxConfig
from lrelease.sandbox.proc import owned_env, run, stop_pid, wait_for

TEMPLATES = Environment(loader=PackageLoader("lrelease.sandbox", "templates"), undefined=StrictUndefined,
                        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def client_key(cfg: SandboxConfig) -> Path:
    return cfg.ssh_dir / "id_ed25519"


def known_hosts(cfg: SandboxConfig) -> Path:
    return cfg.ssh_dir / "known_hosts"


def ssh_config(cfg: SandboxConfig) -> Path:
    return cfg.ssh_dir / "config"


def sshd_pidfile(cfg: SandboxConfig, node: Node) -> Path:
    return cfg.node_dir(node) / "sshd.pid"


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def ensure_client(cfg: SandboxConfig) -> None:
    """Controller key pair, authorized_keys shared by the nodes, and an ssh_config for humans."""
    # StrictModes refuses keys under group/world-writable directories.
    for d in (cfg.root, cfg.ssh_dir):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
    _keygen(client_key(cfg), "lrelease-sandbox-controller")
    pub = client_key(cfg).with_suffix(".pub").read_text()
    (cfg.ssh_dir / "authorized_keys").write_text(pub)
    os.chmod(cfg.ssh_dir / "authorized_keys", 0o600)
    hosts = "".join(f"Host {n.name}\n    HostName {n.address}\n" for n in cfg.all_nodes())
    ssh_config(cfg).write_text(
        f"# ssh -F {ssh_config(cfg)} node1\n{hosts}"
        f"Host *\n    User root\n    IdentityFile {client_key(cfg)}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts(cfg)}\n    StrictHostKeyChecking yes\n"
        f"    ConnectTimeout 5\n"
    )


def ensure_host_key(cfg: SandboxConfig, node: Node) -> Path:
    key = cfg.node_dir(node) / "ssh_host_ed25519_key"
    cfg.node_dir(node).mkdir(parents=True, exist_ok=True)
    _keygen(key, f"root@{node.name}")
    return key


def write_known_hosts(cfg: SandboxConfig) -> None:
    """One line per node, by address and by name, from the node's own host key."""
    lines = []
    for node in cfg.all_nodes():
        kind, blob = (cfg.node_dir(node) / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        lines.append(f"{node.address},{node.name} {kind} {blob}\n")
    known_hosts(cfg).write_text("".join(lines))
    os.chmod(known_hosts(cfg), 0o600)


def start_sshd(cfg: SandboxConfig, node: Node) -> None:
    if netns.node_pid(cfg, node, sshd_pidfile(cfg, node)):
        return
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    conf = cfg.node_dir(node) / "sshd_config"
    conf.write_text(TEMPLATES.get_template("sshd_config.j2").render(
        node=node, host_key=ensure_host_key(cfg, node), pidfile=sshd_pidfile(cfg, node),
        authorized_keys=cfg.ssh_dir / "authorized_keys",
    ))
    run([*netns.nsenter(cfg, node), "/usr/sbin/sshd", "-f", str(conf), "-E", str(cfg.node_dir(node) / "sshd.log")],
        env=owned_env(cfg.root))
    wait_for(lambda: port_open(node.address, 22), timeout=10, what=f"sshd on {node.name}")


def stop_sshd(cfg: SandboxConfig, node: Node) -> bool:
    """Stop the node's sshd and end the sessions it serves: a client's open connection (Ansible's
    ControlPersist keeps one for 60 s) would otherwise go on running commands on a node whose
    sshd is said to be down, and the fault would change nothing. True if sshd was running."""
    pid = netns.node_pid(cfg, node, sshd_pidfile(cfg, node))  # written inside the node: its own numbering
    if pid is not None:
        stop_pid(pid)
    sshd_pidfile(cfg, node).unlink(missing_ok=True)
    for other in _sshd_processes(node):
        stop_pid(other)
    return pid is not None


def _sshd_processes(node: Node) -> list[int]:
    """sshd processes (per-connection and privilege-separated children) in the node's own network
    namespace; none when that is our own namespace (the machine's own sshd never matches)."""
    try:
        st = os.stat(f"/run/netns/{node.netns}")
        ns = (st.st_dev, st.st_ino)
    except FileNotFoundError:
        return []
    if netns.ns_id("/proc/self/ns/net") == ns:
        return []
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip().startswith("sshd") and netns.ns_id(comm.parent / "ns" / "net") == ns:
                pids.append(int(comm.parent.name))
        except (OSError, ValueError):
            continue
    return pids


def port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def ssh_argv(cfg: SandboxConfig, node: Node) -> list[str]:
    """``ssh`` to a node with host-key checking on (what tests and humans use)."""
    return ["ssh", "-F", str(ssh_config(cfg)), "-o", "BatchMode=yes", node.name]
