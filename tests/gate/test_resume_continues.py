"""`resume` after a halt goes on with the halted judgement on the sandbox: the scrape readings
are kept, so the evidence gathered before the halt (and while halted) counts, instead of the
same too-short judgement starting from zero and halting again. A restart of the app during the
halt makes the kept readings unsound: the judgement then starts from zero and says why.

The settings make one bake too short on purpose: the judge needs 2,400 requests of the canary
(``min_requests``) and a bake lasts at most 40 s, at ~50 requests/s per node — so a judgement
from zero can never decide, and one that goes on from the evidence it had can."""

from __future__ import annotations

import re

import pytest
import requests

from lrelease.sandbox import provision
from lrelease.sandbox.fleet import sandbox_gate
from tests.gate.test_canary_gate import busy, steady  # noqa: F401  (fixtures: the gate tests' load)
from tests.rollout.conftest import Project

MIN_REQUESTS = 2400
CONTINUED = re.compile(r"^continuing the judgement of wave 1 from \d+ s of evidence \(\+\d+ s while halted\)")


@pytest.fixture
def short(steady, tmp_path) -> Project:  # noqa: F811
    gate = {**sandbox_gate(steady.config, "scrape"), "bake_seconds": 10, "interval_seconds": 10,
            "max_bake_seconds": 40, "min_requests": MIN_REQUESTS}
    return Project(steady, tmp_path, waves=[1, "100%"], bake_seconds=10, gate=gate)


def start_time(project: Project, node: str) -> float:
    n = project.cfg.find_node(node)
    page = requests.get(f"http://{n.address}:{n.app_port}/metrics", timeout=5).text
    return float(re.search(r"^process_start_time_seconds (\S+)$", page, re.M).group(1))


def halted(project: Project) -> tuple[str, dict]:
    """Deploy a good build; its canary halts Inconclusive (too little traffic within 40 s)."""
    project.build("2.3.0", error_rate=0.005)
    out = project.json("deploy", "--env", "production", "--build", "2.3.0", "--yes")
    assert out["exit_code"] == 5 and out["status"] == "halted", out["message"]
    assert len(out["gates"]) == 1, [(g["host"], g["verdict"], g["reason"][:300]) for g in out["gates"]]
    [gate] = out["gates"]
    assert (gate["host"], gate["verdict"]) == ("node1", "inconclusive")
    assert "not enough traffic" in gate["reason"]
    return out["rollout_id"], gate


def canary_requests(gate: dict) -> float:
    checks = {c["check"]: c for c in gate["evidence"]["last"]["checks"]}
    return checks["errors"]["evidence"]["canary_requests"]


def test_resume_goes_on_with_the_halted_judgement_from_the_readings_kept(short: Project):
    # Given a roll-out halted on its canary after 40 s of evidence (fewer requests than needed)
    rollout_id, first = halted(short)
    before = canary_requests(first)
    assert before < MIN_REQUESTS
    started = start_time(short, "node1")
    # When a human resumes it
    out = short.json("resume", "--env", "production", "--yes")
    gates = {g["host"]: g for g in out["gates"]}
    # Then node1's judgement went on from when its bake started: the evidence it had counts,
    # the output says so, and with it the canary passes
    node1 = gates["node1"]
    assert node1["verdict"] == "pass", node1["reason"]
    continued = node1["evidence"]["continued"]
    assert continued["continued"] is True and continued["wave"] == 1
    assert continued["from_rollout"] == rollout_id
    assert node1["evidence"]["started_at"] == first["evidence"]["started_at"]
    assert CONTINUED.match(node1["reason"]), node1["reason"]
    assert "(node1: continuing the judgement of wave 1 from " in out["message"], out["message"]
    assert canary_requests(node1) >= MIN_REQUESTS > before
    # And the app was not restarted by the resume: the readings are of the same process
    assert start_time(short, "node1") == started
    # And the next wave, judged from zero with the same settings, cannot decide: it halts again
    assert out["exit_code"] == 5, out["message"]
    rest = [g for h, g in gates.items() if h != "node1"]
    assert rest and {g["verdict"] for g in rest} == {"inconclusive"}
    assert all("continued" not in g["evidence"] for g in rest)


def test_a_restart_while_halted_makes_the_judgement_start_from_zero(short: Project):
    # Given a roll-out halted on its canary, whose app is restarted while it waits
    _, first = halted(short)
    provision.service(short.cfg, short.cfg.find_node("node1"), "restart")
    # When a human resumes it
    out = short.json("resume", "--env", "production", "--yes")
    # Then node1's judgement starts from zero, saying why, and (40 s not being enough) halts again
    [gate] = [g for g in out["gates"] if g["host"] == "node1"]
    continued = gate["evidence"]["continued"]
    assert continued["continued"] is False
    assert continued["note"] == "judging wave 1 from zero: node1's app restarted since (its counters start again from zero)"
    assert gate["verdict"] == "inconclusive" and gate["evidence"]["started_at"] > first["evidence"]["started_at"]
    assert out["exit_code"] == 5 and out["gates"] == [gate]
