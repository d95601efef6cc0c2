"""The sandbox as a whole: ``up`` (idempotent, repairs leftovers), ``down`` (leaves nothing
behind), ``status``, ``reset`` (back to the baseline build, faults cleared) and fault hooks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import requests
import yaml

from lrelease.errors import ConfigError, SandboxError
from lrelease.sandbox import netns, provision, services, sshd
from lrelease.sandbox.demoapp import gate as demo_gate
from lrelease.sandbox.config import (
    SANDBOX_GATES,
    Node,
    SandboxConfig,
    state_dir_from_env,
    veth_name,
)
from lrelease.sandbox.proc import owned_pids, stop_pid

REQUIRED_TOOLS = ("ip", "nsenter", "unshare", "mount", "/usr/sbin/sshd", "ssh", "ssh-keygen", "haproxy", "prometheus")
FAULTS = {
    # kind: (undo kind, description)
    "link-down": ("link-up", "the node's network link is down"),
    "sshd-stop": ("sshd-start", "the node's sshd is stopped and its open SSH sessions ended"),
    "disk-full": ("disk-free", "the node's deploy root is full"),
    "app-kill": ("app-start", "the app was killed (SIGKILL)"),
}
UNDO = {undo: kind for kind, (undo, _) in FAULTS.items()}
FILLER = ".sandbox-disk-filler"


@dataclass(frozen=True)
class NodeStatus:
    name: str
    address: str
    port: int
    present: bool
    link_up: bool
    ssh: bool
    version: str | None
    healthy: bool
    prometheus: str
    faults: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxStatus:
    mode: str
    state_dir: str
    subnet: str
    deploy_root: str
    haproxy: bool
    prometheus: bool
    load: bool
    lb_url: str
    prometheus_url: str
    inventory: str
    nodes: tuple[NodeStatus, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return asdict(self)


class Sandbox:
    """Operations on one sandbox, identified by its state directory."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir or state_dir_from_env())

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def config(self) -> SandboxConfig:
        cfg = SandboxConfig.load(self.state_dir)
        if cfg is None:
            raise SandboxError(f"no sandbox at {self.state_dir}; start one with `lrelease sandbox up`")
        return cfg

    def up(self, *, nodes: int | None = None, load_rate: float = 0.0, load_duration: float = 3600.0,
           **settings) -> SandboxConfig:
        """Bring the fleet up, or repair it; running nodes, keys and releases are kept.
        Settings not given (None) keep their saved value, else their default."""
        old = SandboxConfig.load(self.state_dir)
        merged = {k: v for k, v in asdict(old).items() if k != "state_dir"} if old else {}
        merged.update({k: v for k, v in settings.items() if v is not None})
        if nodes is not None:
            merged["nodes"] = nodes
        cfg = SandboxConfig(state_dir=str(self.state_dir), **merged)
        mode = cfg.mode
        if mode == "netns":
            _require_root_and_tools()
        if old is None or replace(old, nodes=cfg.nodes) != cfg:
            # a crashed run's leftovers, or a different network or layout: start clean
            self._teardown(old or cfg)
        elif old is not None and old.nodes > cfg.nodes:
            for i in range(cfg.nodes + 1, old.nodes + 1):
                self._remove_node(old, old.node(i))
        cfg.save()
        if mode == "netns":
            self._up_netns(cfg)
        else:  # local mode: a node is just a directory; its app listens on its own loopback port
            for node in cfg.all_nodes():
                cfg.node_root(node).mkdir(parents=True, exist_ok=True)
        base = provision.baseline_artifact(cfg)
        for node in cfg.all_nodes():
            if provision.current_build(cfg, node) is None:
                provision.install_release(cfg, node, base)
            provision.service(cfg, node, "start")
        self._write_inventory(cfg)
        if mode == "netns" or shutil.which("haproxy"):
            services.start_haproxy(cfg)
        if mode == "netns" or shutil.which("prometheus"):  # local mode runs without them if absent
            services.start_prometheus(cfg)
            services.wait_for_targets(cfg)
        if load_rate > 0 and not services.load_running(cfg):
            services.start_load(cfg, rate=load_rate, duration=load_duration)
        return cfg

    def _up_netns(self, cfg: SandboxConfig) -> None:
        netns.ensure_ns_dir(cfg)
        netns.ensure_bridge(cfg)
        sshd.ensure_client(cfg)
        for node in cfg.all_nodes():
            netns.ensure_node_namespaces(cfg, node)
            sshd.ensure_host_key(cfg, node)
        sshd.write_known_hosts(cfg)
        for node in cfg.all_nodes():
            sshd.start_sshd(cfg, node)

    def down(self) -> None:
        """Stop everything and remove every namespace, link, mount, process and file we made,
        including leftovers of a crashed run."""
        cfg = SandboxConfig.load(self.state_dir)
        if cfg is None:
            # No settings: we cannot know its names, and must not guess (the defaults are the
            # demo fleet's). Clean only what is provably this directory's.
            for pid in owned_pids(self.state_dir):
                stop_pid(pid, timeout=2)
            netns.unmount_under(self.state_dir)
            shutil.rmtree(self.state_dir, ignore_errors=True)
            return
        self._teardown(cfg)

    def _teardown(self, cfg: SandboxConfig) -> None:
        services.stop_load(cfg)
        services.stop_haproxy(cfg)
        services.stop_prometheus(cfg)
        for pid in owned_pids(self.state_dir):  # whatever lost its pidfile in a crash
            stop_pid(pid, timeout=2)
        if cfg.mode == "local":
            for node in cfg.all_nodes():
                if (cfg.node_root(node) / "bin" / f"{cfg.app}-service").exists():
                    provision.service(cfg, node, "stop", check=False)
        else:
            _require_root_and_tools()
            names = {n.name for n in cfg.all_nodes()}
            names |= {ns.removeprefix(f"{cfg.prefix}-") for ns in netns.netns_list() if ns.startswith(f"{cfg.prefix}-node")}
            if (self.state_dir / "nodes").is_dir():
                names |= {p.name for p in (self.state_dir / "nodes").iterdir()}
            for name in sorted(n for n in names if n.removeprefix("node").isdigit()):
                index = int(name.removeprefix("node"))
                self._remove_node(cfg, Node(name, index, "", f"{cfg.prefix}-{name}", veth_name(cfg.bridge, index), 0))
            netns.release_ns_dir(cfg)
            netns.delete_bridge(cfg)
            netns.remove_mountpoint_if_unused(Path(cfg.deploy_root))
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def _remove_node(self, cfg: SandboxConfig, node: Node) -> None:
        if cfg.mode == "netns" and node.netns in netns.netns_list():
            for pid in netns.netns_pids(node.netns):  # sshd, the app, any session
                stop_pid(pid, timeout=2)
        netns.delete_node_namespaces(cfg, node.name, node.netns, node.veth)
        shutil.rmtree(cfg.node_dir(node), ignore_errors=True)

    # -- inventory ---------------------------------------------------------------------
    def _write_inventory(self, cfg: SandboxConfig) -> None:
        """An Ansible inventory (group ``sandbox``) and a fleet file (environment ``production``,
        node1 tagged canary) describing the nodes the way a real fleet would be described."""
        common: dict[str, object] = {"ansible_python_interpreter": "/usr/bin/python3"}
        if cfg.mode == "netns":
            common |= {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(sshd.client_key(cfg)),
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={sshd.known_hosts(cfg)} "
                                           "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
            }
        else:
            common["ansible_connection"] = "local"
        node_vars = {
            n.name: {"lrelease_app_port": n.app_port, "lrelease_deploy_root": provision.node_path(cfg, n, "").rstrip("/")}
            for n in cfg.all_nodes()
        }
        hosts = {n.name: {"ansible_host": n.address, **node_vars[n.name]} for n in cfg.all_nodes()}
        inv = {"all": {"vars": common, "children": {"sandbox": {"hosts": hosts}}}}
        cfg.inventory_path.write_text("# Written by `lrelease sandbox up`.\n" + yaml.safe_dump(inv, sort_keys=False))
        fleet = {
            "defaults": {"vars": common},
            "nodes": {
                n.name: {"environment": "production", "address": n.address,
                         **({"tags": ["canary"]} if n.index == 1 else {}), "vars": node_vars[n.name]}
                for n in cfg.all_nodes()
            },
        }
        cfg.fleet_path.write_text("# Written by `lrelease sandbox up`.\n" + yaml.safe_dump(fleet, sort_keys=False))
        if cfg.mode == "netns":  # local-mode nodes differ in deploy root, which lrelease.yml fixes per environment
            cfg.project_path.write_text("# Written by `lrelease sandbox up`: a project config for this fleet.\n"
                                        + yaml.safe_dump(project_config(cfg, gate_provider=cfg.gate), sort_keys=False))

    # -- status ------------------------------------------------------------------------
    def status(self) -> SandboxStatus:
        cfg = self.config
        targets = services.prometheus_targets(cfg)
        faults = self._faults(cfg)
        present_ns = set(netns.netns_list()) if cfg.mode == "netns" else set()
        rows = []
        for node in cfg.all_nodes():
            present = node.netns in present_ns if cfg.mode == "netns" else cfg.node_root(node).is_dir()
            safe = present and (cfg.mode == "local" or netns.routes_via_bridge(cfg, node.address))
            version, healthy = _probe_app(node) if safe else (None, False)
            rows.append(NodeStatus(
                name=node.name, address=node.address, port=node.app_port, present=present,
                link_up=netns.link_up(node) if cfg.mode == "netns" else present,
                ssh=safe and cfg.mode == "netns" and sshd.port_open(node.address, 22),
                version=version, healthy=healthy, prometheus=targets.get(node.name, "unknown"),
                faults=tuple(faults.get(node.name, ())),
            ))
        return SandboxStatus(
            mode=cfg.mode, state_dir=str(cfg.root), subnet=cfg.subnet, deploy_root=cfg.deploy_root,
            haproxy=sshd.port_open("127.0.0.1", cfg.haproxy_port),
            prometheus=bool(targets), load=services.load_running(cfg),
            lb_url=f"http://127.0.0.1:{cfg.haproxy_port}", prometheus_url=services.prometheus_url(cfg),
            inventory=str(cfg.inventory_path), nodes=tuple(rows),
        )

    # -- faults ------------------------------------------------------------------------
    def _faults(self, cfg: SandboxConfig) -> dict[str, list[str]]:
        path = cfg.root / "faults.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _save_faults(self, cfg: SandboxConfig, faults: dict[str, list[str]]) -> None:
        (cfg.root / "faults.json").write_text(json.dumps({k: v for k, v in faults.items() if v}, indent=2))

    def fault(self, node_name: str, kind: str) -> str:
        """Inject (``link-down``, ``sshd-stop``, ``disk-full``, ``app-kill``) or undo
        (``link-up``, ``sshd-start``, ``disk-free``, ``app-start``, ``clear``) a fault."""
        cfg = self.config
        node = cfg.find_node(node_name)
        if kind == "clear":
            for active in list(self._faults(cfg).get(node.name, [])):
                self.fault(node.name, FAULTS[active][0])
            return f"{node.name}: all faults cleared"
        if kind not in FAULTS and kind not in UNDO:
            raise ConfigError("sandbox fault", "kind", f"one of {', '.join([*FAULTS, *UNDO, 'clear'])}, got {kind!r}")
        if cfg.mode == "local" and kind in ("link-down", "link-up", "sshd-stop", "sshd-start", "disk-full"):
            raise SandboxError(f"fault {kind} needs the netns sandbox (root): local-mode nodes have "
                               "no network, sshd or disk of their own")
        _APPLY[kind](cfg, node)
        faults = self._faults(cfg)
        active = set(faults.get(node.name, []))
        active = active | {kind} if kind in FAULTS else active - {UNDO[kind]}
        faults[node.name] = sorted(active)
        self._save_faults(cfg, faults)
        return f"{node.name}: {FAULTS[kind][1] if kind in FAULTS else 'undone: ' + FAULTS[UNDO[kind]][1]}"

    def reset(self, node_names: list[str] | None = None) -> None:
        """Back to a clean baseline between tests: faults cleared, only the baseline release,
        app running, sshd up, every node ready in HAProxy. Much cheaper than rebuilding the fleet."""
        cfg = self.config
        base = provision.baseline_artifact(cfg)
        for node in cfg.all_nodes():
            if node_names and node.name not in node_names:
                continue
            self.fault(node.name, "clear")
            if cfg.mode == "netns":
                netns.set_link(node, True)
                sshd.start_sshd(cfg, node)
            provision.service(cfg, node, "stop", check=False)
            root = cfg.node_root(node)
            for child in root.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            provision.install_release(cfg, node, base)
            provision.service(cfg, node, "start")
            if services.haproxy_socket(cfg).exists():  # a test may have left it drained (a first install does)
                services.haproxy_command(cfg, f"set server be_{cfg.app}/{node.name} state ready")
        services.wait_until_serving(cfg)


def sandbox_gate(cfg: SandboxConfig, provider: str = "scrape") -> dict:
    """The APM gate for the sandbox's traffic (tens of requests/s per node, 0.5% errors): a look
    every 20 s up to 80 s; an error rate up to one percentage point above the reference is
    tolerated (ruling out "twice 0.5%" would take minutes of this traffic, "+1 point" takes
    seconds). Everything else the judge's defaults, the dispersion estimated too."""
    if provider not in SANDBOX_GATES or provider == "none":
        raise ConfigError("lrelease sandbox", "gate", f"scrape or prometheus, got {provider!r}")
    # The demo app's own metric names (the providers' defaults are conventional ones).
    source: dict = {"kind": "scrape", **demo_gate.SCRAPE}
    if provider == "prometheus":
        source = {"kind": "prometheus", **demo_gate.prometheus(services.prometheus_url(cfg))}
    return {"provider": source, "bake_seconds": 20, "interval_seconds": 20, "max_bake_seconds": 80,
            "min_requests": 200, "policy": "halt", "errors": {"floor": 0.01}}


def project_config(cfg: SandboxConfig, *, gate_provider: str | None = None, **production) -> dict:
    """An ``lrelease.yml`` for the sandbox: production = every node, canary first, HAProxy drain;
    with ``gate_provider`` (scrape or prometheus) the APM gate judges each wave, else /health.
    ``production`` overrides keys of the environment (``gate`` too)."""
    env = {
        "waves": [1, 1, "50%", "100%"],
        "bake_seconds": 5,
        "gate_timeout_seconds": 20,
        "deploy_root": cfg.deploy_root,
        "service": {"command": f"{cfg.deploy_root}/bin/{cfg.app}-service"},
        "keep_releases": 5,
        "lb": {"haproxy_socket": str(services.haproxy_socket(cfg)), "backend": f"be_{cfg.app}"},
    }
    if gate_provider not in (None, "none"):
        env["gate"] = sandbox_gate(cfg, gate_provider)
    env.update(production)
    return {
        "version": 1, "app": cfg.app, "fleet": str(cfg.fleet_path), "state_dir": str(cfg.root / "project"),
        "artifacts": {"source": "dir", "path": str(cfg.artifacts_dir)},
        "environments": {"production": env},
    }


def _probe_app(node: Node) -> tuple[str | None, bool]:
    base = f"http://{node.address}:{node.app_port}"
    try:
        version = requests.get(f"{base}/version", timeout=1).text.strip()
        healthy = requests.get(f"{base}/health", timeout=1).status_code == 200
        return version, healthy
    except requests.RequestException:
        return None, False


def _require_root_and_tools() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the netns sandbox needs root (network namespaces, sshd); "
                           "without root use `lrelease sandbox up --local`")
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise SandboxError(f"missing tools: {', '.join(missing)} (run `make bootstrap` as root to install them)")


def _fill_disk(cfg: SandboxConfig, node: Node) -> None:
    root = cfg.node_root(node)
    st = os.statvfs(root)
    free = st.f_bavail * st.f_frsize
    fd = os.open(root / FILLER, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if free > 0:
            os.posix_fallocate(fd, 0, free + os.fstat(fd).st_size)
    except OSError:
        pass  # filled up to the last block: exactly what we want
    finally:
        os.close(fd)


def _start_app(cfg: SandboxConfig, node: Node) -> None:
    provision.service(cfg, node, "start")


def _link_up(cfg: SandboxConfig, node: Node, timeout: float = 10.0) -> None:
    """The node's link back up, and back in reach before returning: the bridge still holds the
    node's address as unreachable (a failed neighbour entry) and would answer the next connection
    with "no route to host", so that entry is flushed and the node waited for (bounded): a TCP
    connection to its sshd port that is accepted or refused (sshd may be stopped too) says so."""
    netns.set_link(node, True)
    netns.run(["ip", "neigh", "flush", "to", node.address, "dev", cfg.bridge], check=False)
    deadline = time.monotonic() + timeout
    while not _in_reach(node.address) and time.monotonic() < deadline:
        time.sleep(0.2)


def _in_reach(address: str) -> bool:
    try:
        socket.create_connection((address, 22), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return True


_APPLY = {
    "link-down": lambda cfg, node: netns.set_link(node, False),
    "link-up": _link_up,
    "sshd-stop": lambda cfg, node: sshd.stop_sshd(cfg, node),
    "sshd-start": lambda cfg, node: sshd.start_sshd(cfg, node),
    "disk-full": _fill_disk,
    "disk-free": lambda cfg, node: (cfg.node_root(node) / FILLER).unlink(missing_ok=True),
    "app-kill": lambda cfg, node: provision.kill_app(cfg, node),
    "app-start": _start_app,
}
