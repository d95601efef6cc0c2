"""Linux plumbing for netns nodes: a private bridge, one network namespace per node joined
by a veth, and per node a first process in persistent mount, UTS and PID namespaces, so each
node has its own hostname, its own processes, its own deploy root at the same path and its
own writable /opt, /var/lib, /var/log, /etc and /root. Every function is idempotent."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from lrelease.errors import SandboxError
from lrelease.sandbox.config import Node, SandboxConfig
from lrelease.sandbox.proc import owned_env, pid_alive, read_pid, run, running_pid, spawn, stop_pid, stop_pidfile, wait_for


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


# -- the node itself: mount, UTS and PID namespaces around a first process --------------
# Directories every node has a private, writable copy of (an overlay: the machine's content
# below, the node's own writes above), so an app can use the usual paths on each node.
PRIVATE_DIRS = ("/opt", "/var/lib", "/var/log", "/etc")
# Directories every node gets empty (a fresh tmpfs): root's home, so the controller's shell
# profile is not run on every SSH command and nodes do not share ~/.ansible.
FRESH_DIRS = ("/root",)
# What the node's own home (the SSH user's, root's) starts with: a minimal shell profile, as a
# fresh host has, so every SSH command pays a real host's shell start-up, not this machine's
# (whose ~/.bashrc may start pyenv and the like: ~0.1 s per command).
HOME = "/root"
HOME_FILES = {
    ".profile": ("# ~/.profile of a sandbox node (written by lrelease sandbox): a fresh host's minimal login profile.\n"
                 'if [ -n "$BASH_VERSION" ] && [ -f "$HOME/.bashrc" ]; then . "$HOME/.bashrc"; fi\n'),
    ".bashrc": ("# ~/.bashrc of a sandbox node (written by lrelease sandbox): empty on purpose, so a command over SSH\n"
                "# starts no more than a fresh host's shell does.\n"),
}
NS_KINDS = ("mnt", "uts", "pidns")  # the namespace files' suffixes


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


def ns_files(cfg: SandboxConfig, node: Node) -> tuple[Path, Path, Path]:
    """The node's mount, UTS and PID namespaces, kept by bind mounts in the ns directory."""
    return tuple(ns_dir(cfg) / f"{node.name}.{kind}" for kind in NS_KINDS)  # type: ignore[return-value]


def nsenter(cfg: SandboxConfig, node: Node) -> list[str]:
    """argv prefix that runs a command inside the node (network, mount, UTS and PID namespaces)."""
    mnt, uts, pid = ns_files(cfg, node)
    return ["nsenter", f"--net=/run/netns/{node.netns}", f"--mount={mnt}", f"--uts={uts}", f"--pid={pid}", "--"]


def private_dirs(cfg: SandboxConfig) -> list[str]:
    """The node's private directories (defaults and ``app_roots``), none inside another."""
    wanted = sorted({*PRIVATE_DIRS, *FRESH_DIRS, *cfg.app_roots}, key=len)
    kept: list[str] = []
    for path in wanted:
        if not any(path == k or path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


def init_pidfile(cfg: SandboxConfig, node: Node) -> Path:
    return cfg.node_dir(node) / "init.pid"


def node_spec(cfg: SandboxConfig, node: Node) -> dict:
    """What the node's first process sets up (see ``nodeinit``); makes the directories it needs."""
    overlays, fresh = [], []
    for path in private_dirs(cfg):
        if path in FRESH_DIRS:
            fresh.append(path)
            continue
        Path(path).mkdir(parents=True, exist_ok=True)  # an --app-root new to this machine: the lower layer
        store = cfg.node_dir(node) / "private" / path.strip("/").replace("/", "%")
        (store / "upper").mkdir(parents=True, exist_ok=True)
        (store / "work").mkdir(parents=True, exist_ok=True)
        overlays.append({"path": path, "upper": str(store / "upper"), "work": str(store / "work")})
    state = str(cfg.root)
    return {"hostname": node.name, "state_dir": state, "overlays": overlays, "fresh": fresh,
            "home": HOME, "home_files": HOME_FILES,
            "rebind_state": any(state == p or state.startswith(p + "/") for p in private_dirs(cfg)),
            "deploy_root": cfg.deploy_root, "node_root": str(cfg.node_root(node))}


def node_running(cfg: SandboxConfig, node: Node) -> bool:
    return running_pid(init_pidfile(cfg, node)) is not None and all(_is_mountpoint(f) for f in ns_files(cfg, node))


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

    if not node_running(cfg, node):
        _stop_node(cfg, node)  # a crashed node, or one made by an older version: its processes go too
        _start_node(cfg, node)


def _start_node(cfg: SandboxConfig, node: Node) -> None:
    """The node's first process, in fresh mount, UTS and PID namespaces (kept by bind mounts)
    joined to the node's network; it lives as long as the node, and every process started
    in the node afterwards is its descendant or orphan."""
    mnt, uts, pid = ns_files(cfg, node)
    for f in (mnt, uts, pid):
        f.touch()
    log = cfg.node_dir(node) / "init.log"
    log.unlink(missing_ok=True)
    spawn(["nsenter", f"--net=/run/netns/{node.netns}", "--",
           "unshare", f"--mount={mnt}", f"--uts={uts}", f"--pid={pid}", "--fork", "--kill-child", "--mount-proc",
           "--propagation", "private", sys.executable, "-m", "lrelease.sandbox.nodeinit", json.dumps(node_spec(cfg, node))],
          pidfile=init_pidfile(cfg, node), log=log, env=owned_env(cfg.root))

    def started() -> bool:
        if running_pid(init_pidfile(cfg, node)) is None:
            lines = log.read_text().strip().splitlines() if log.exists() else []
            raise SandboxError(f"{node.name} did not start: {lines[-1] if lines else 'no output'}")
        return log.exists() and "ready" in log.read_text().split()

    wait_for(started, timeout=15, what=f"{node.name} to start")


def _stop_node(cfg: SandboxConfig, node: Node) -> None:
    """End every process of the node (its first process takes its PID namespace down with it),
    then drop the namespace files."""
    stop_pidfile(init_pidfile(cfg, node), timeout=2)
    if node.netns in netns_list():
        for pid in netns_pids(node.netns):
            stop_pid(pid, timeout=2)
    _release_ns_files(cfg, node.name)


def _release_ns_files(cfg: SandboxConfig, node_name: str) -> None:
    for kind in NS_KINDS:
        f = ns_dir(cfg) / f"{node_name}.{kind}"
        if f.exists():
            if _is_mountpoint(f):
                run(["umount", "-l", str(f)], check=False)
            f.unlink(missing_ok=True)


def node_pid(cfg: SandboxConfig, node: Node, pidfile: Path) -> int | None:
    """The live process named by a pidfile written inside the node, as this machine numbers it
    (the node counts in its own PID namespace); None if there is none."""
    pid = read_pid(pidfile)
    if pid is None or cfg.mode == "local":
        return pid if pid is not None and pid_alive(pid) else None
    try:
        want = ns_id(ns_files(cfg, node)[2])
    except OSError:
        return None
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            line = next((ln for ln in status.read_text().splitlines() if ln.startswith("NSpid:")), "")
            ids = line.split()[1:]
            if len(ids) > 1 and int(ids[-1]) == pid and ns_id(status.parent / "ns" / "pid") == want:
                host = int(status.parent.name)
                return host if pid_alive(host) else None
        except (OSError, ValueError):
            continue
    return None


def ns_id(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def delete_node_namespaces(cfg: SandboxConfig, node_name: str, netns: str, veth: str) -> None:
    """Remove everything ensure_node_namespaces made, tolerating any part already gone."""
    stop_pidfile(cfg.root / "nodes" / node_name / "init.pid", timeout=2)
    _release_ns_files(cfg, node_name)
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
