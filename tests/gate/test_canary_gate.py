"""The APM gate on the sandbox under steady load, with real Prometheus and the scrape provider:
a bad build is halted on the canary and rolled back; a good one completes; a metrics source
that goes away mid-roll-out halts for a human (exit 5) with no further host switched. The gate
settings are the sandbox's (``sandbox_gate``: looks every 20 s up to 80 s, +1 point of errors
tolerated), the ones `lrelease sandbox up --gate` writes."""

from __future__ import annotations

import threading
import time

import pytest

from lrelease.sandbox import services
from lrelease.sandbox.fleet import sandbox_gate
from tests.conftest import LOAD_RATE
from tests.rollout.conftest import Project

BASELINE = "1.0.0"
# Traffic while these tests run (requests/s over 6 nodes): ~50 per node, a few errors a second
# fleet-wide at the baseline's 0.5%, so a short bake has something to judge.
GATE_LOAD = 300


@pytest.fixture(scope="module")
def busy(sandbox):
    """The session's fleet under the gate tests' load; the session's own load afterwards."""
    services.stop_load(sandbox.config)
    services.start_load(sandbox.config, rate=GATE_LOAD, duration=3600)
    try:
        yield sandbox
    finally:
        services.stop_load(sandbox.config)
        services.start_load(sandbox.config, rate=LOAD_RATE, duration=3600)


@pytest.fixture
def steady(busy):
    busy.reset()
    return busy


@pytest.fixture(params=["scrape", "prometheus"])
def gated(request, steady, tmp_path) -> Project:
    return Project(steady, tmp_path, waves=[1, 1, "100%"], bake_seconds=10, gate=sandbox_gate(steady.config, request.param))


def never_switched(project: Project, rollout_id: str, nodes: list[str]) -> bool:
    return all(not [e for e in project.ledger(n) if e.get("rollout_id") == rollout_id] for n in nodes)


# 10% errors: on a loaded CI machine the load generator can deliver far fewer requests than
# GATE_LOAD, and a 5% build was once still Inconclusive at the 80 s maximum bake (4.2% vs 0.47%,
# p 0.0072 where 0.004 was needed). The gate's power at 5% is measured in bench/gate_simulation.py
# and tests/rollout/test_second_app.py rolls a 5% build back on the sandbox.
@pytest.mark.parametrize("behaviour, check", [({"error_rate": 0.10}, "errors"), ({"latency_ms": 300}, "latency")])
def test_a_regression_is_halted_on_the_canary_and_rolled_back(gated: Project, behaviour, check):
    # Given a fleet just reset to the baseline (every host's `current` changed now; the test before
    # this one may have left a bad canary's minutes in Prometheus) and a build that is worse than
    # its peers (10% errors against ~0.5%, or +300 ms)
    reset_at = time.time()
    gated.build("2.0.0-bad", **behaviour)
    # When it is deployed
    out = gated.json("deploy", "--env", "production", "--build", "2.0.0-bad", "--yes")
    # Then the gate fails the canary on that metric, the canary alone is rolled back, exit 1
    # (on failure, the judge's last look says what it saw: requests counted, shares, dispersion)
    assert out["exit_code"] == 1, (out["message"], [g["evidence"].get("last") for g in out["gates"]])
    assert out["switched"] == ["node1"] and out["rolled_back"] == ["node1"]
    [verdict] = out["gates"]
    assert verdict["verdict"] == "fail", verdict
    assert check in verdict["reason"], verdict["reason"]
    assert verdict["evidence"]["compared_with"] == "peers"
    # And the hosts' own past that joined the dispersion estimate (fewer than ten peers) starts no
    # earlier than the reset: never in the minutes of whatever the fleet served before (every
    # host reported when its `current` changed; this test's state store knows no earlier roll-out)
    before = verdict["evidence"]["before_switch"]
    assert reset_at - 10 <= before["from"] < before["to"] == verdict["evidence"]["switched_at"], before
    # And the second host was never switched; every node serves the baseline again
    assert never_switched(gated, out["rollout_id"], gated.nodes[1:])
    assert {n: gated.serving(n) for n in gated.nodes} == {n: BASELINE for n in gated.nodes}


def test_a_good_build_completes(gated: Project):
    # Given a build as good as the baseline (the same ~0.5% of errors, the same latency)
    gated.build("2.1.0", error_rate=0.005)
    # When it is deployed in waves [1, 1, 100%]
    out = gated.json("deploy", "--env", "production", "--build", "2.1.0", "--yes")
    # Then every host passed its gate and the roll-out succeeded
    assert out["exit_code"] == 0, (out["message"], [g["reason"] for g in out["gates"]])
    assert out["status"] == "succeeded"
    assert sorted(g["host"] for g in out["gates"]) == gated.nodes
    assert {g["verdict"] for g in out["gates"]} == {"pass"}
    # The first two waves were judged against the hosts not yet switched, the last against
    # its hosts' own window before their switch
    compared = {g["host"]: g["evidence"]["compared_with"] for g in out["gates"]}
    assert compared == {"node1": "peers", "node2": "peers", **{n: "baseline" for n in gated.nodes[2:]}}
    # And each pass rests on numbers: errors and latency both ruled out a regression
    for g in out["gates"]:
        checks = {c["check"]: c for c in g["evidence"]["last"]["checks"]}
        assert checks["errors"]["verdict"] == "pass" and checks["latency"]["verdict"] == "pass", g["reason"]
        assert checks["errors"]["evidence"]["reference_requests"] >= 200
    # And every node serves the new build; the roll-out's scrape readings are gone with it, and
    # so is the board where the last wave's first task left the other hosts' results
    assert {n: gated.serving(n) for n in gated.nodes} == {n: "2.1.0" for n in gated.nodes}
    assert not list((gated.path.parent / "state" / "gate").glob("readings-*.json"))
    assert not list((gated.path.parent / "state" / "gate").glob("readings-*.json.waves/*"))


def test_prometheus_stopped_mid_rollout_halts_for_a_human(steady, tmp_path):
    # Given a roll-out judged by Prometheus, and Prometheus stopped once the canary switched
    project = Project(steady, tmp_path, waves=[1, 1, "100%"], bake_seconds=10, gate=sandbox_gate(steady.config, "prometheus"))
    project.build("2.2.0", error_rate=0.005)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(
        project.json("deploy", "--env", "production", "--build", "2.2.0", "--yes")))
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and project.current("node1") != "2.2.0":
            time.sleep(0.2)
        services.stop_prometheus(steady.config)
        worker.join(timeout=300)
    finally:
        services.start_prometheus(steady.config)
        services.wait_for_targets(steady.config)
    # Then the gate is inconclusive, the roll-out halts (exit 5) and no further host switched
    assert result["exit_code"] == 5, result.get("message")
    assert result["status"] == "halted"
    assert [g["verdict"] for g in result["gates"]] == ["inconclusive"]
    assert result["switched"] == ["node1"] and result["rolled_back"] == []
    assert never_switched(project, result["rollout_id"], project.nodes[1:])
    # And every host is on a complete build: node1 on the new one, serving it; the rest on the baseline
    assert project.serving("node1") == "2.2.0"
    assert {n: project.serving(n) for n in project.nodes[1:]} == {n: BASELINE for n in project.nodes[1:]}
