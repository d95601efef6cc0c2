"""The environment's health check on the sandbox, through the CLI: the body rules of lrelease.yml
decide the deploy's gate, and a host rolled back passes the rollback's verify step by the same rules."""

from __future__ import annotations

from tests.rollout.conftest import Project

BASE = "1.0.0"


def test_body_rules_decide_the_gate_and_the_rollback_passes_them(fleet, tmp_path):
    # Given an environment whose health check wants the body's "version" to be 1.0.0 or 1.1.0
    # (the demo app answers {"status": "pass", "version": ...} with 200)
    rules = {"path": "/health", "expect_status": [200],
             "body_json": {"field": "version", "values": [BASE, "1.1.0"]}, "body_contains": '"status"'}
    project = Project(fleet, tmp_path, waves=[1, "100%"], bake_seconds=0, gate_timeout_seconds=3, health=rules)
    project.build("1.2.0")
    # When 1.2.0, healthy by its status code, is deployed
    out = project.json("deploy", "--env", "production", "--build", "1.2.0", "--yes")
    # Then the canary fails its gate on the body rule, and is rolled back cleanly (exit 1): the
    # rollback's verify step passed the same rules on the baseline
    assert out["exit_code"] == 1, (out["message"], out.get("gates"))
    assert out["switched"] == ["node1"] and out["rolled_back"] == ["node1"]
    [gate] = out["gates"]
    assert gate["verdict"] == "fail"
    assert 'version is "1.2.0", expected "1.0.0" or "1.1.0"' in gate["reason"], gate["reason"]
    assert {n: project.serving(n) for n in project.nodes} == {n: BASE for n in project.nodes}
    # When 1.1.0, whose version the rule accepts, is deployed
    project.build("1.1.0")
    good = project.json("deploy", "--env", "production", "--build", "1.1.0", "--yes")
    # Then every host passes the same check
    assert good["exit_code"] == 0, good
    assert {n: project.serving(n) for n in project.nodes} == {n: "1.1.0" for n in project.nodes}
