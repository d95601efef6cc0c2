"""Linux plumbing for netns nodes: a private bridge, one network namespace per node joined
by a veth, and persistent mount + UTS namespaces so each node has its own hostname and its
own deploy root at the same path. Every function is idempotent."""

from __future__ import annotations

import os
from pathlib import Path

from lrelease.sandbox.config import Node, SandboxConfig
from lrelease.sandbox.proc import run


def link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", name]
    return run(argv, check=False).returncode == 0


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def ensure_bridge(cfg: SandboxConfig) -> None:
    if not link_exists(cfg.bridge):
        run(["ip", "link", "add", cfg.bridge, "type", "bridge"])
    addr = f"{cfg.gateway}/{cfg.network.prefixlen}"
    if addr not in run(["ip", "-o", "addr", "show", "dev", cfg.bridge]).stdout:
        run(["ip", "addr", "add", addr, "dev", cfg.bridge])
    run(["ip", "link", "set", cfg.bridge, "up"])


def delete_bridge(cfg: SandboxConfig) -> None:
    if link_exists(cfg.bridge):
        run(["ip", "link", "del", cfg.bridge])


def routes_via_bridge(cfg: SandboxConfig, address: str) -> bool:
    """True only if traffic to ``address`` would stay on the sandbox bridge (never leave the machine)."""
    out = run(["ip", "route", "get", address], check=False).stdout
    return f" dev {cfg.bridge} " in f" {out} "


# -- persistent mount and UTS namespaces --------------------------------------------------
def ns_dir(cfg: SandboxConfig) -> Path:
    return cfg.root / "ns"


def _is_mountpoint(path: Path) -> bool:
    return any(point == str(path) for point, _ in _mounts(Path("/proc/self/mountinfo").read_text()))


def ensure_ns_dir(cfg: SandboxConfig) -> None:
    """Namespace files must live on a private mount, or unshare cannot bind them."""
    d = ns_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    if not _is_mountpoint(d):
        run(["mount", "--bind", str(d), str(d)])
    run(["mount", "--make-private", str(d)])


def ns_files(cfg: SandboxConfig, node: Node) -> tuple[Path, Path]:
    return ns_dir(cfg) / f"{node.name}.mnt", ns_dir(cfg) / f"{node.name}.uts"


def nsenter(cfg: SandboxConfig, node: Node) -> list[str]:
    """argv prefix that runs a command inside the node (network, mount and UTS namespaces)."""
    mnt, uts = ns_files(cfg, node)
    return ["nsenter", f"--net=/run/netns/{node.netns}", f"--mount={mnt}", f"--uts={uts}", "--"]


def ensure_node_namespaces(cfg: SandboxConfig, node: Node) -> None:
    # network namespace, veth pair and address
    if node.netns not in netns_list():
        run(["ip", "netns", "add", node.netns])
    if not link_exists(node.veth):
        run(["ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns])
    run(["ip", "link", "set", node.veth, "master", cfg.bridge, "up"])
    addr = f"{node.address}/{cfg.network.prefixlen}"
    if addr not in run(["ip", "-n", node.netns, "-o", "addr", "show", "dev", "eth0"]).stdout:
        run(["ip", "-n", node.netns, "addr", "add", addr, "dev", "eth0"])
    run(["ip", "-n", node.netns, "link", "set", "lo", "up"])
    run(["ip", "-n", node.netns, "link", "set", "eth0", "up"])

    # the node's disk: a small fixed-size filesystem, so "deploy root full" is real
    root = cfg.node_root(node)
    root.mkdir(parents=True, exist_ok=True)
    if not _is_mountpoint(root):
        run(["mount", "-t", "tmpfs", "-o", f"size={cfg.disk_mb}m,mode=0755", f"lrelease-{node.name}", str(root)])

    # mount + UTS namespaces, kept alive by bind-mounted namespace files
    mnt, uts = ns_files(cfg, node)
    if not (_is_mountpoint(mnt) and _is_mountpoint(uts)):
        for f in (mnt, uts):
            if _is_mountpoint(f):
                run(["umount", str(f)])
            f.touch()
        Path(cfg.deploy_root).mkdir(parents=True, exist_ok=True)
        run(["unshare", f"--mount={mnt}", f"--uts={uts}", "--propagation", "private",
             "sh", "-c", f"hostname {node.name} && mount --bind {root} {cfg.deploy_root}"])


def delete_node_namespaces(cfg: SandboxConfig, node_name: str, netns: str, veth: str) -> None:
    """Remove everything ensure_node_namespaces made, tolerating any part already gone."""
    d = ns_dir(cfg)
    for f in (d / f"{node_name}.mnt", d / f"{node_name}.uts"):
        if f.exists():
            if _is_mountpoint(f):
                run(["umount", "-l", str(f)], check=False)
            f.unlink(missing_ok=True)
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False)
    if netns in netns_list():
        run(["ip", "netns", "del", netns], check=False)
    root = cfg.root / "nodes" / node_name / "root"
    if root.exists() and _is_mountpoint(root):
        run(["umount", "-l", str(root)], check=False)


def release_ns_dir(cfg: SandboxConfig) -> None:
    d = ns_dir(cfg)
    if d.exists() and _is_mountpoint(d):
        run(["umount", "-l", str(d)], check=False)


def netns_pids(netns: str) -> list[int]:
    out = run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]


def set_link(node: Node, up: bool) -> None:
    run(["ip", "link", "set", node.veth, "up" if up else "down"])


def link_up(node: Node) -> bool:
    out = run(["ip", "-o", "link", "show", node.veth], check=False).stdout
    return ",UP" in out or "<UP" in out


def _mounts(mountinfo: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) pairs of a /proc/<pid>/mountinfo text."""
    pairs = []
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        pairs.append((head.split()[4], tail.split()[0] if tail else ""))
    return pairs


def remove_mountpoint_if_unused(path: Path) -> None:
    """Remove the deploy-root mount point, unless another sandbox may still bind something
    there: a live process with it mounted, or any persistent mount namespace (nsfs file)."""
    if not path.is_dir() or any(path.iterdir()):
        return
    if any(fstype == "nsfs" for _, fstype in _mounts(Path("/proc/self/mountinfo").read_text())):
        return
    for mountinfo in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            if any(point == str(path) for point, _ in _mounts(mountinfo.read_text())):
                return
        except OSError:
            continue
    path.rmdir()


def unmount_under(path: Path) -> None:
    """Lazily unmount every mount at or below ``path``, deepest first."""
    prefix = str(path).rstrip("/")
    points = [p for p, _ in _mounts(Path("/proc/self/mountinfo").read_text())
              if p == prefix or p.startswith(prefix + "/")]
    for point in sorted(points, key=len, reverse=True):
        run(["umount", "-l", point], check=False)
