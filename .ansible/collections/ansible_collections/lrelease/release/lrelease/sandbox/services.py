"""Controller-side services of the sandbox: HAProxy in front of the nodes (with its runtime
API socket), Prometheus scraping every node at 1 s, and the bounded load generator."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import requests
import yaml

from lrelease.sandbox.config import SandboxConfig
from lrelease.sandbox.proc import owned_env, run, running_pid, spawn, stop_pidfile, wait_for
from lrelease.sandbox.sshd import TEMPLATES, port_open


# -- HAProxy -------------------------------------------------------------------------------
def haproxy_dir(cfg: SandboxConfig) -> Path:
    return cfg.root / "haproxy"


def haproxy_socket(cfg: SandboxConfig) -> Path:
    return haproxy_dir(cfg) / "admin.sock"


def start_haproxy(cfg: SandboxConfig) -> None:
    d = haproxy_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    pidfile, conf = d / "haproxy.pid", d / "haproxy.cfg"
    text = TEMPLATES.get_template("haproxy.cfg.j2").render(
        pidfile=pidfile, socket=haproxy_socket(cfg), app=cfg.app, port=cfg.haproxy_port, nodes=cfg.all_nodes())
    if running_pid(pidfile) and conf.exists() and conf.read_text() == text:
        return
    stop_pidfile(pidfile)
    conf.write_text(text)
    run(["haproxy", "-c", "-q", "-f", str(conf)])
    run(["haproxy", "-D", "-f", str(conf), "-p", str(pidfile)], env=owned_env(cfg.root))
    wait_for(lambda: port_open("127.0.0.1", cfg.haproxy_port), timeout=10, what="HAProxy")


def stop_haproxy(cfg: SandboxConfig) -> None:
    stop_pidfile(haproxy_dir(cfg) / "haproxy.pid")


def haproxy_command(cfg: SandboxConfig, command: str) -> str:
    """One command on the HAProxy runtime API (e.g. ``show servers state``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(haproxy_socket(cfg)))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


# -- Prometheus ----------------------------------------------------------------------------
def prometheus_dir(cfg: SandboxConfig) -> Path:
    return cfg.root / "prometheus"


def prometheus_url(cfg: SandboxConfig) -> str:
    return f"http://127.0.0.1:{cfg.prometheus_port}"


def prometheus_config(cfg: SandboxConfig) -> dict:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": cfg.app,
            "static_configs": [
                {"targets": [f"{n.address}:{n.app_port}"], "labels": {"node": n.name}} for n in cfg.all_nodes()
            ],
        }],
    }


def start_prometheus(cfg: SandboxConfig) -> None:
    d = prometheus_dir(cfg)
    (d / "data").mkdir(parents=True, exist_ok=True)
    conf, pidfile = d / "prometheus.yml", d / "prometheus.pid"
    text = yaml.safe_dump(prometheus_config(cfg), sort_keys=False)
    if running_pid(pidfile) and conf.exists() and conf.read_text() == text:
        return
    stop_pidfile(pidfile)
    conf.write_text(text)
    spawn(["prometheus", f"--config.file={conf}", f"--storage.tsdb.path={d / 'data'}",
           f"--web.listen-address=127.0.0.1:{cfg.prometheus_port}", "--storage.tsdb.retention.time=1d",
           "--web.enable-lifecycle", "--log.level=warn"],
          pidfile=pidfile, log=d / "prometheus.log", env=owned_env(cfg.root))
    wait_for(lambda: _ready(cfg), timeout=30, what=f"Prometheus on 127.0.0.1:{cfg.prometheus_port}")


def _ready(cfg: SandboxConfig) -> bool:
    try:
        return requests.get(f"{prometheus_url(cfg)}/-/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def stop_prometheus(cfg: SandboxConfig) -> None:
    stop_pidfile(prometheus_dir(cfg) / "prometheus.pid")


def prometheus_targets(cfg: SandboxConfig) -> dict[str, str]:
    """node name -> Prometheus target health ("up", "down", "unknown"); empty if Prometheus is down."""
    try:
        resp = requests.get(f"{prometheus_url(cfg)}/api/v1/targets", params={"state": "active"}, timeout=2)
        resp.raise_for_status()
        targets = resp.json()["data"]["activeTargets"]
    except (requests.RequestException, ValueError, KeyError):
        return {}
    return {t["labels"].get("node", t["scrapeUrl"]): t["health"] for t in targets}


def wait_for_targets(cfg: SandboxConfig, timeout: float = 20) -> None:
    """Prometheus discovers targets a moment after start; ``up`` returns once every node is scraped."""
    names = {n.name for n in cfg.all_nodes()}
    wait_for(lambda: names <= {k for k, v in prometheus_targets(cfg).items() if v != "unknown"},
             timeout=timeout, what="Prometheus to scrape every node")


def haproxy_up(cfg: SandboxConfig) -> set[str]:
    """Servers HAProxy currently sends traffic to (operational state running)."""
    try:
        text = haproxy_command(cfg, "show servers state")
    except OSError:
        return set()
    header: list[str] = []
    up = set()
    for line in text.splitlines():
        if line.startswith("# "):
            header = line[2:].split()
        elif header and line.strip() and not line.startswith("#"):
            row = dict(zip(header, line.split(), strict=False))
            if row.get("srv_op_state") == "2":
                up.add(row.get("srv_name", ""))
    return up


def wait_until_serving(cfg: SandboxConfig, timeout: float = 30) -> None:
    """Every node up in HAProxy and in Prometheus (both need a few checks after a restart)."""
    names = {n.name for n in cfg.all_nodes()}
    if haproxy_socket(cfg).exists():
        wait_for(lambda: names <= haproxy_up(cfg), timeout=timeout, what="HAProxy to see every node up")
    if running_pid(prometheus_dir(cfg) / "prometheus.pid"):
        wait_for(lambda: names <= {k for k, v in prometheus_targets(cfg).items() if v == "up"},
                 timeout=timeout, what="Prometheus to see every node up")


# -- load generator ------------------------------------------------------------------------
def loadgen_pidfile(cfg: SandboxConfig) -> Path:
    return cfg.root / "loadgen.pid"


def start_load(cfg: SandboxConfig, *, rate: float, duration: float, via_lb: bool = False) -> int:
    """Steady background traffic to every node (or through HAProxy), bounded in rate and time."""
    stop_load(cfg)
    if via_lb:
        targets = [f"http://127.0.0.1:{cfg.haproxy_port}"]
    else:
        targets = [f"http://{n.address}:{n.app_port}" for n in cfg.all_nodes()]
    argv = [sys.executable, "-m", "lrelease.sandbox.loadgen", "--rate", str(rate), "--duration", str(duration),
            "--max-requests", str(int(rate * duration) + 1), "--allow-net", cfg.subnet]
    for t in targets:
        argv += ["--target", t]
    return spawn(argv, pidfile=loadgen_pidfile(cfg), log=cfg.root / "loadgen.log", env=owned_env(cfg.root))


def stop_load(cfg: SandboxConfig) -> bool:
    return stop_pidfile(loadgen_pidfile(cfg))


def load_running(cfg: SandboxConfig) -> bool:
    return running_pid(loadgen_pidfile(cfg)) is not None
