"""SIGTERM (cron's and systemd's stop signal, and the first Ctrl-C) mid-roll-out, on the sandbox
through the CLI: the roll-out stops at a safe point (the wave in flight finishes, no new host
starts, nothing is left drained), ends `interrupted` with exit 130, and `resume` finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from lrelease.ansible.action.lrelease_haproxy import _module as haproxy_module
from lrelease.sandbox import services
from tests.rollout.conftest import Project

BASE, NEW = "1.0.0", "1.5.0"


class Progress:
    """Follows a running CLI's stderr progress lines (one per event without a terminal)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(line.startswith(text) for line in self.lines), timeout)

    def waves(self) -> list[list[str]]:
        """Hosts of each wave the roll-out started ("wave N: a, b")."""
        return [line.split(": ", 1)[1].split(", ") for line in self.lines if line.startswith("wave ")]


def lb_states(project: Project) -> dict[str, str]:
    """Each node's admin state in the sandbox's HAProxy (ready, drain or maint), read through the
    runtime API with the lrelease_haproxy module's own reader."""
    read = haproxy_module().read_state
    sock = str(services.haproxy_socket(project.cfg))
    return {n: read(sock, f"be_{project.cfg.app}", n, 5)["state"] for n in project.nodes}


def test_sigterm_stops_after_the_wave_in_flight_and_resume_finishes(project: Project):
    # Given a 6-node roll-out in waves [1, 1, 50%, 100%] with a few seconds of bake per wave,
    # every node on the baseline and in service
    # (10 s: the signal follows the "node1: switched" line, which a loaded machine's event stream
    # can deliver seconds late; with 4 s the canary's wave once ended before the signal and the
    # second wave had started. The verdict does not depend on the bake.)
    project = Project(project.sandbox, project.path.parent, bake_seconds=10, gate_timeout_seconds=10)
    assert len(project.nodes) == 6
    project.build(NEW)
    assert lb_states(project) == {n: "ready" for n in project.nodes}
    env = {**os.environ, "LRELEASE_CONFIG": str(project.path), "LRELEASE_ACTOR": "sigterm-test"}
    lrelease = str(Path(sys.executable).parent / "lrelease")
    proc = subprocess.Popen([lrelease, "deploy", "--env", "production", "--build", NEW, "--yes"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    progress = Progress(proc.stderr)
    try:
        # When SIGTERM arrives once the canary (node1) has switched and is baking
        assert progress.wait_for("node1: switched", timeout=240), progress.lines
        started_before_signal = progress.waves()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # Then the roll-out ends interrupted, exit 130, having said it stops after the hosts in flight
    assert proc.returncode == 130, (proc.returncode, progress.lines)
    assert any(line.startswith("SIGTERM: stopping after the hosts in flight") for line in progress.lines), progress.lines
    assert any(line.startswith(f"deploy {NEW} on production: interrupted") for line in progress.lines), progress.lines
    # And no new wave started after the signal: only the canary's wave ran, and it finished
    assert started_before_signal == [["node1"]]
    assert progress.waves() == [["node1"]], progress.lines
    assert any(line.startswith("node1: gate passed") for line in progress.lines), progress.lines
    # And history records it interrupted with exit 130: the canary done, the others only staged
    hist = project.json("history", "--env", "production")["rollouts"][0]
    assert (hist["action"], hist["build"], hist["status"], hist["exit_code"]) == ("deploy", NEW, "interrupted", 130)
    assert hist["hosts"] == {"node1": "gate_passed", **{n: "staged" for n in project.nodes[1:]}}
    # And every host is on a complete build, its `current` the build it serves: the canary on the
    # new one, every other host untouched on the baseline (no ledger line of this roll-out)
    on_disk = {n: project.current(n) for n in project.nodes}
    assert on_disk == {"node1": NEW, **{n: BASE for n in project.nodes[1:]}}
    assert {n: project.serving(n) for n in project.nodes} == on_disk
    for n in project.nodes:
        root = project.cfg.node_root(project.cfg.find_node(n))
        assert not (root / ".lrelease" / "pending").exists(), n
        assert not list((root / "releases").glob(".*.partial")), n
        mine = [e for e in project.ledger(n) if e.get("rollout_id") == hist["id"]]
        assert [(e["event"], e["to"]) for e in mine] == ([("switch", NEW)] if n == "node1" else []), (n, mine)
    assert (project.cfg.node_root(project.cfg.find_node("node1")) / "releases" / NEW / ".lrelease-manifest.json").exists()
    # And no host is left drained in HAProxy
    assert lb_states(project) == {n: "ready" for n in project.nodes}

    # When it is resumed
    resumed = project.json("resume", "--env", "production", "--yes")
    # Then it finishes: every host serves the new build, each switched to it exactly once
    assert resumed["exit_code"] == 0, resumed
    assert resumed["status"] == "succeeded"
    assert sorted(resumed["switched"]) == project.nodes[1:]
    assert {n: project.serving(n) for n in project.nodes} == {n: NEW for n in project.nodes}
    for n in project.nodes:
        switches = [e for e in project.ledger(n) if e["event"] == "switch" and e["to"] == NEW]
        assert len(switches) == 1, (n, switches)
    assert lb_states(project) == {n: "ready" for n in project.nodes}
    assert project.json("status", "--env", "production")["interrupted"] == []
