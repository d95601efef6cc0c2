"""What a sandbox is made of: its settings, its nodes and where it keeps its state."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from lrelease.errors import ConfigError

DEFAULT_STATE_DIR = Path("/var/lib/lrelease-sandbox")
# RFC 2544 benchmarking range: never routed on the internet, so the fleet exists only
# inside this machine. Configurable for machines where it is taken.
DEFAULT_SUBNET = "198.18.77.0/24"
MAX_NODES = 64
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")


def veth_name(bridge: str, index: int) -> str:
    """Host side of a node's veth pair; unique per sandbox because bridges are."""
    return f"{bridge}-{index}"


def state_dir_from_env() -> Path:
    """$LRELEASE_SANDBOX_DIR, else /var/lib/lrelease-sandbox for root, else a per-user directory."""
    if "LRELEASE_SANDBOX_DIR" in os.environ:
        return Path(os.environ["LRELEASE_SANDBOX_DIR"])
    if os.geteuid() == 0:
        return DEFAULT_STATE_DIR
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "lrelease-sandbox"


@dataclass(frozen=True)
class Node:
    """One sandbox node, as Ansible and the user see it."""

    name: str
    index: int
    address: str
    netns: str
    veth: str
    app_port: int


SANDBOX_GATES = ("none", "scrape", "prometheus")


@dataclass(frozen=True)
class SandboxConfig:
    """Settings of one sandbox; saved as ``sandbox.json`` in its state directory on ``up``."""

    nodes: int = 4
    subnet: str = DEFAULT_SUBNET
    state_dir: str = str(DEFAULT_STATE_DIR)
    prefix: str = "lrelease"
    bridge: str = "lrbr0"
    app: str = "demoapp"
    deploy_root: str = "/srv/demoapp"
    app_port: int = 8080
    baseline_build: str = "1.0.0"
    disk_mb: int = 256
    haproxy_port: int = 18080
    prometheus_port: int = 19090
    mode: str = "netns"  # "netns" (root) or "local" (no root: directories + loopback ports)
    gate: str = "none"  # the gate of the lrelease.yml it writes: none (/health), scrape or prometheus
    app_roots: tuple[str, ...] = ()  # private on every node, besides /opt, /var/lib, /var/log, /etc, /root

    def __post_init__(self) -> None:
        where = "sandbox settings"
        if not 1 <= self.nodes <= MAX_NODES:
            raise ConfigError(where, "nodes", f"an integer from 1 to {MAX_NODES}, got {self.nodes}")
        try:
            net = ipaddress.IPv4Network(self.subnet)
        except ValueError:
            raise ConfigError(where, "subnet", f"an IPv4 network such as {DEFAULT_SUBNET}, got {self.subnet!r}") from None
        if net.prefixlen > 25 or net.is_loopback or net.is_multicast:
            raise ConfigError(where, "subnet", f"a private network of at least /25 (not loopback), got {self.subnet}")
        if self.mode not in ("netns", "local"):
            raise ConfigError(where, "mode", f"'netns' or 'local', got {self.mode!r}")
        if self.gate not in SANDBOX_GATES:
            raise ConfigError(where, "gate", f"one of {', '.join(SANDBOX_GATES)}, got {self.gate!r}")
        for key in ("prefix", "bridge", "app"):
            if not _NAME_RE.match(getattr(self, key)):
                raise ConfigError(where, key, "lower-case letters, digits and '-', at most 16 characters")
        if len(self.bridge) > 10:
            raise ConfigError(where, "bridge", "at most 10 characters (veth names derive from it)")
        if not self.deploy_root.startswith("/") or self.deploy_root.rstrip("/") in ("", "/srv", "/usr", "/etc", "/var"):
            raise ConfigError(where, "deploy_root", f"an absolute path of its own such as /srv/{self.app}")
        if self.disk_mb < 32:
            raise ConfigError(where, "disk_mb", "at least 32 (MiB)")
        object.__setattr__(self, "app_roots", tuple(_app_root(p, self) for p in self.app_roots))

    # -- derived -----------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.state_dir)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> str:
        return str(self.network.network_address + 1)

    def node(self, index: int) -> Node:
        name = f"node{index}"
        if self.mode == "local":
            return Node(name, index, "127.0.0.1", "", "", self.app_port + 100 + index)
        return Node(
            name=name,
            index=index,
            address=str(self.network.network_address + 10 + index),
            netns=f"{self.prefix}-{name}",
            veth=veth_name(self.bridge, index),
            app_port=self.app_port,
        )

    def all_nodes(self) -> list[Node]:
        return [self.node(i) for i in range(1, self.nodes + 1)]

    def find_node(self, name: str) -> Node:
        for node in self.all_nodes():
            if node.name == name:
                return node
        names = ", ".join(n.name for n in self.all_nodes())
        raise ConfigError("sandbox", "node", f"one of {names}, got {name!r}")

    # -- paths -------------------------------------------------------------------------
    def node_dir(self, node: Node) -> Path:
        return self.root / "nodes" / node.name

    def node_root(self, node: Node) -> Path:
        """The node's deploy root as seen from the controller (bind-mounted at deploy_root on the node)."""
        return self.node_dir(node) / "root"

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def inventory_path(self) -> Path:
        return self.root / "inventory.yml"

    @property
    def fleet_path(self) -> Path:
        return self.root / "fleet.yml"

    @property
    def project_path(self) -> Path:
        """A ready ``lrelease.yml`` for this fleet."""
        return self.root / "lrelease.yml"

    # -- persistence -------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / "sandbox.json"

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, state_dir: Path) -> SandboxConfig | None:
        path = state_dir / "sandbox.json"
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}  # written by another version
            known["state_dir"] = str(state_dir)
            return cls(**known)
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(path), "(file)", f"a sandbox state file written by lrelease ({exc})") from None


_NOT_PRIVATE = ("/proc", "/sys", "/dev", "/run")


def _app_root(path: object, cfg: SandboxConfig) -> str:
    """An extra directory private to each node: absolute, not the node's plumbing, not the
    deploy root (a filesystem of its own already) nor the sandbox's state."""
    key = "app_roots (--app-root)"
    if not isinstance(path, str) or not path.startswith("/") or os.path.normpath(path) != path.rstrip("/") or path == "/":
        raise ConfigError("sandbox settings", key, f"an absolute directory such as /srv/shop, got {path!r}")
    path = path.rstrip("/")

    def within(parent: str) -> bool:
        return path == parent or path.startswith(parent.rstrip("/") + "/")

    if any(within(p) for p in _NOT_PRIVATE):
        raise ConfigError("sandbox settings", key, f"a directory outside {', '.join(_NOT_PRIVATE)}, got {path}")
    if cfg.mode == "local":
        raise ConfigError("sandbox settings", key, "none in local mode (its nodes are directories of this machine)")
    if any(c in path for c in ",:") or any(c.isspace() for c in path):
        raise ConfigError("sandbox settings", key, f"a path without ',', ':' or spaces, got {path!r}")
    if within(cfg.deploy_root) or within(cfg.state_dir):
        raise ConfigError("sandbox settings", key,
                          f"a directory outside the deploy root {cfg.deploy_root} and the state dir {cfg.state_dir}, got {path}")
    return path
