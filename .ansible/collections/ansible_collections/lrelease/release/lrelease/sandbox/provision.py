"""The sandbox's "machine image": puts a baseline release of the demo app on a node the way a
real host would have it (releases/<build>, an atomic ``current`` symlink, a service script),
and runs commands inside a node."""

from __future__ import annotations

import os
import shutil
import signal
import tarfile
from pathlib import Path

from lrelease.sandbox import netns
from lrelease.sandbox.config import Node, SandboxConfig
from lrelease.sandbox.demoapp.build import SERVICE_SCRIPT, Artifact, Behaviour, build_artifact
from lrelease.sandbox.proc import owned_env, run


def artifact(cfg: SandboxConfig, build: str, behaviour: Behaviour = Behaviour(), *, pad_mb: int = 0) -> Artifact:
    """Build (or rebuild) a demo app artifact into the sandbox's artifact directory."""
    return build_artifact(build, cfg.artifacts_dir, behaviour, pad_mb=pad_mb)


# Real fleets are never at zero errors: the baseline build answers ~0.5% of requests with a
# 500, so the gate's statistics work against realistic noise.
BASELINE_BEHAVIOUR = Behaviour(error_rate=0.005)


def baseline_artifact(cfg: SandboxConfig) -> Artifact:
    return artifact(cfg, cfg.baseline_build, BASELINE_BEHAVIOUR)


def node_path(cfg: SandboxConfig, node: Node, rel: str) -> str:
    """A path under the deploy root as the node itself sees it."""
    base = cfg.deploy_root if cfg.mode == "netns" else str(cfg.node_root(node))
    return f"{base}/{rel}"


def node_run(cfg: SandboxConfig, node: Node, argv: list[str], *, check: bool = True, timeout: float = 30):
    prefix = netns.nsenter(cfg, node) if cfg.mode == "netns" else []
    return run([*prefix, *argv], check=check, timeout=timeout, env=owned_env(cfg.root))


def install_release(cfg: SandboxConfig, node: Node, art: Artifact) -> None:
    """Unpack ``art`` into releases/<build> and point ``current`` at it (controller-side, for provisioning)."""
    root = cfg.node_root(node)
    for sub in ("releases", "bin", "run", "log", "etc"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rel = root / "releases" / art.build
    if not rel.exists():
        tmp = rel.with_name(f".{art.build}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        with tarfile.open(art.path) as tar:
            tar.extractall(tmp, filter="data")
        tmp.rename(rel)
    shutil.copy2(SERVICE_SCRIPT, root / "bin" / f"{cfg.app}-service")
    os.chmod(root / "bin" / f"{cfg.app}-service", 0o755)
    env = root / "etc" / "service.env"
    if cfg.mode == "local":
        env.write_text(f"PORT={node.app_port}\nBIND=127.0.0.1\n")
    else:
        env.unlink(missing_ok=True)
    # Relative link target, switched atomically by rename: valid at the node's path and ours.
    link = root / "current"
    tmp_link = root / ".current.tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(f"releases/{art.build}")
    tmp_link.replace(link)


def current_build(cfg: SandboxConfig, node: Node) -> str | None:
    link = cfg.node_root(node) / "current"
    return Path(os.readlink(link)).name if link.is_symlink() else None


def service(cfg: SandboxConfig, node: Node, action: str, *, check: bool = True):
    return node_run(cfg, node, [node_path(cfg, node, f"bin/{cfg.app}-service"), action], check=check)


def app_pid(cfg: SandboxConfig, node: Node) -> int | None:
    """The demo app's live process on ``node``, as this machine numbers it (None: not running)."""
    return netns.node_pid(cfg, node, cfg.node_root(node) / "run" / "app.pid")


def kill_app(cfg: SandboxConfig, node: Node) -> bool:
    """SIGKILL the app, as a crash would (the pidfile stays, like after a real crash)."""
    pid = app_pid(cfg, node)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True
