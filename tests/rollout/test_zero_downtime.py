"""Zero downtime, measured through the sandbox's HAProxy under steady load.

Only load-balancer failures count: connection errors and HAProxy's own answers (502, 503, 504),
never the 500s the demo build answers on purpose (about 0.5%). The load runs in its own process
(the sandbox's bounded load generator) so the test's CLI run does not share its interpreter.
Every build here takes 50 ms per request, so requests are in flight whenever an app stops: a
host stopped while it still takes traffic fails some of them, every time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import pytest

from lrelease.sandbox import provision, services
from tests.rollout.conftest import Project

BASE = "1.0.0"
# Requests/s through HAProxy: 5,000 requests in 12.5 s, less than a 6-node roll-out with 1 s bakes
# takes; held on the shared 2-core machine beside the session's own load (150 req/s to the nodes).
# The load stops on its own after LB_SECONDS (a roll-out there took up to 300 s on a busy machine).
LB_RATE = 400
LB_SECONDS = 900
MIN_REQUESTS = 5000
SLOW = {"latency_ms": 50, "error_rate": 0.005}  # every request in flight 50 ms; the baseline's errors
LB_FAILURES = {502, 503, 504}  # HAProxy's own answers; the demo app's deliberate errors are 500
ADMIN_NOT_READY = 0x3F  # srv_admin_state bits: maint (0x01 0x02 0x04 0x20) and drain (0x08 0x10)


class LbLoad:
    """Steady GETs through HAProxy from `python -m lrelease.sandbox.loadgen`, bounded in rate,
    count and time; stopped with SIGTERM, it prints what it got per status code."""

    def __init__(self, project: Project, rate: float = LB_RATE, duration: float = LB_SECONDS) -> None:
        cfg = project.cfg
        self.argv = [sys.executable, "-m", "lrelease.sandbox.loadgen",
                     "--target", f"http://127.0.0.1:{cfg.haproxy_port}", "--allow-net", cfg.subnet,
                     "--rate", str(rate), "--duration", str(duration), "--max-requests", str(int(rate * duration)),
                     "--timeout", "5", "--concurrency", "48"]
        self.stats: dict = {}

    def __enter__(self) -> LbLoad:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        if exc_type is None:  # else the test failed already: let its error show
            assert self.proc.returncode == 0, err
            self.stats = json.loads(out)

    @property
    def sent(self) -> int:
        return self.stats["sent"]

    @property
    def failed(self) -> int:
        """Requests the load balancer failed: connection errors and HAProxy's 502/503/504."""
        return self.stats["errors"] + sum(n for code, n in self.stats["by_status"].items() if int(code) in LB_FAILURES)

    def __str__(self) -> str:
        return f"sent {self.sent}, failed at the LB {self.failed}, by status {self.stats['by_status']}, " \
               f"connection errors {self.stats['errors']}, {self.stats['elapsed']:.1f} s"


class InServiceWatch:
    """Samples HAProxy's runtime API every 50 ms: the fewest servers in service at once (admin
    state ready and health check up) and the most taken out by lrelease at once (drained)."""

    def __init__(self, project: Project) -> None:
        self.cfg, self.stop = project.cfg, threading.Event()
        self.fewest_in_service, self.most_drained, self.samples = len(project.nodes), 0, 0

    def _sample(self) -> None:
        text = services.haproxy_command(self.cfg, f"show servers state be_{self.cfg.app}")
        header, serving, drained = None, 0, 0
        for line in text.splitlines():
            if line.startswith("# "):
                header = line[2:].split()
            elif header and line.strip():
                row = dict(zip(header, line.split()))
                ready = not int(row["srv_admin_state"]) & ADMIN_NOT_READY
                serving += ready and row["srv_op_state"] == "2"
                drained += not ready
        self.fewest_in_service = min(self.fewest_in_service, serving)
        self.most_drained = max(self.most_drained, drained)
        self.samples += 1

    def _run(self) -> None:
        for _ in range(12_000):  # 10 minutes at most
            self._sample()
            if self.stop.wait(0.05):
                return

    def __enter__(self) -> InServiceWatch:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture(autouse=True)
def every_server_ready(fleet):
    """Whatever an earlier test left, every node takes traffic in HAProxy (reset() leaves it alone)."""
    cfg = fleet.config
    for node in cfg.all_nodes():
        services.haproxy_command(cfg, f"set server be_{cfg.app}/{node.name} state ready")
    services.wait_until_serving(cfg)


def report(scenario: str, load: LbLoad, watch: InServiceWatch | None = None) -> None:
    seen = f"; HAProxy: at most {watch.most_drained} drained, at least {watch.fewest_in_service} serving " \
           f"({watch.samples} samples)" if watch else ""
    print(f"\nzero-downtime {scenario}: {load}{seen}")


def outcome(project: Project, *args: str) -> dict:
    """The CLI's JSON outcome of a command; its whole output when there is none."""
    result = project.cli(*args, "--json")
    assert "{" in result.stdout, f"exit {result.exit_code}: {result.output}"
    return {"exit_code": result.exit_code, **json.loads(result.stdout[result.stdout.index("{"):])}


def serve_slow_build(project: Project, build: str = "1.0.1") -> None:
    """Every node serves `build` (SLOW), installed as the sandbox installs its baseline."""
    cfg, art = project.cfg, project.build(build, **SLOW)
    for node in cfg.all_nodes():
        provision.install_release(cfg, node, art)
        provision.service(cfg, node, "restart")
    services.wait_until_serving(cfg)
    assert {n: project.serving(n) for n in project.nodes} == {n: build for n in project.nodes}


def deployed(project: Project, build: str = "1.1.0") -> None:
    """`build` (SLOW) live on every node through a roll-out, without load."""
    project.build(build, **SLOW)
    out = outcome(project, "deploy", "--env", "production", "--build", build, "--yes")
    assert out["exit_code"] == 0, out


def test_a_rollout_with_drain_fails_no_request_at_the_load_balancer(project: Project):
    # Given a 6-node fleet behind HAProxy serving a build, each host drained while it switches
    serve_slow_build(project)
    project.build("1.1.0", **SLOW)
    # When a good build is rolled out in waves [1, 1, 50%, 100%] under steady load through HAProxy
    with LbLoad(project) as load:
        out = outcome(project, "deploy", "--env", "production", "--build", "1.1.0", "--yes")
    report("roll-out with drain", load)
    # Then every node serves it, at least 5,000 requests went through HAProxy, none failed there
    assert out["exit_code"] == 0, out
    assert {n: project.serving(n) for n in project.nodes} == {n: "1.1.0" for n in project.nodes}
    assert load.sent >= MIN_REQUESTS, str(load)
    assert load.failed == 0, str(load)


def test_a_fleet_rollback_keeps_half_the_fleet_in_service_and_fails_no_request(project: Project):
    # Given 1.1.0 live on all 6 nodes, and the default rollback.min_in_service ("50%")
    deployed(project)
    # When the environment is rolled back under steady load through HAProxy
    with LbLoad(project) as load, InServiceWatch(project) as watch:
        out = outcome(project, "rollback", "--env", "production", "--yes")
    report("fleet rollback, min_in_service 50%", load, watch)
    # Then every node is back on the baseline
    assert out["exit_code"] == 0, out
    assert {n: project.serving(n) for n in project.nodes} == {n: BASE for n in project.nodes}
    # And it went in groups of 3: never more than 3 drained, never fewer than 3 serving
    assert watch.samples > 20
    assert watch.most_drained == 3, vars(watch)
    assert watch.fewest_in_service >= 3, vars(watch)
    # And no request failed at the load balancer
    assert load.sent > 1000, str(load)
    assert load.failed == 0, str(load)


def test_a_rollback_of_every_host_at_once_is_an_outage(fleet, tmp_path):
    # Given 1.1.0 live on all 6 nodes and a rollback allowed to take every host out at once
    project = Project(fleet, tmp_path, bake_seconds=1, gate_timeout_seconds=10,
                      rollback={"min_in_service": 0})
    deployed(project)
    # When the environment is rolled back under the same load
    with LbLoad(project) as load, InServiceWatch(project) as watch:
        out = outcome(project, "rollback", "--env", "production", "--yes")
    report("fleet rollback, min_in_service 0", load, watch)
    # Then it succeeds, but every host was drained at the same moment and requests failed
    assert out["exit_code"] == 0, out
    assert watch.most_drained == 6, vars(watch)
    assert load.failed > 0, str(load)


def test_a_rollout_without_drain_fails_requests_at_the_load_balancer(fleet, tmp_path):
    # Given the same fleet with no load balancer configured for lrelease (no drain)
    project = Project(fleet, tmp_path, bake_seconds=1, gate_timeout_seconds=10, lb=None)
    serve_slow_build(project)
    project.build("1.1.0", **SLOW)
    # When the same roll-out runs under the same load
    with LbLoad(project) as load:
        out = outcome(project, "deploy", "--env", "production", "--build", "1.1.0", "--yes")
    report("roll-out without drain", load)
    # Then it succeeds, but HAProxy kept sending requests to restarting nodes: some failed
    assert out["exit_code"] == 0, out
    assert load.failed > 0, str(load)
