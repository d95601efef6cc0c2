"""Roll-outs on the sandbox over real SSH, through the CLI: good, bad, rollback, killed+resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.rollout.conftest import Project

BASE = "1.0.0"


def test_good_build_reaches_every_node_in_waves_and_ledgers_agree_with_history(project: Project):
    # Given a good build
    project.build("1.1.0")
    # When it is deployed with waves [1, 1, 50%, 100%]
    out = project.json("deploy", "--env", "production", "--build", "1.1.0", "--yes")
    # Then it succeeds and every node serves it
    assert out["exit_code"] == 0, out
    assert out["status"] == "succeeded"
    assert [w["hosts"] for w in out["plan"]["waves"]] == [["node1"], ["node2"], ["node3", "node4", "node5"], ["node6"]]
    assert {n: project.serving(n) for n in project.nodes} == {n: "1.1.0" for n in project.nodes}
    # And every host ledger has exactly one switch line for this roll-out, from the baseline
    for n in project.nodes:
        lines = [e for e in project.ledger(n) if e.get("rollout_id") == out["rollout_id"]]
        assert [(e["event"], e["from"], e["to"]) for e in lines] == [("switch", BASE, "1.1.0")], n
    # And history agrees (every host switched and passed its gate), and status is consistent
    hist = project.json("history", "--env", "production")["rollouts"][0]
    assert (hist["id"], hist["status"], hist["build"], hist["exit_code"]) == (out["rollout_id"], "succeeded", "1.1.0", 0)
    assert hist["hosts"] == {n: "gate_passed" for n in project.nodes}
    status = project.json("status", "--env", "production")
    assert status["consistent"] is True
    assert {h["host"]: h["build"] for h in status["hosts"]} == {n: "1.1.0" for n in project.nodes}


def test_bad_build_stops_at_the_canary_and_only_the_canary_is_rolled_back(project: Project):
    # Given a build whose /health fails once it runs
    project.build("1.2.0-bad", health_fail=True)
    # When it is deployed
    out = project.json("deploy", "--env", "production", "--build", "1.2.0-bad", "--yes")
    # Then the roll-out fails after the canary, which alone is rolled back; exit 1
    assert out["exit_code"] == 1, out
    assert out["status"] == "rolled_back"
    assert out["switched"] == ["node1"] and out["rolled_back"] == ["node1"]
    assert [g["verdict"] for g in out["gates"]] == ["fail"]
    # And every node serves the baseline; the others were never switched
    assert {n: project.serving(n) for n in project.nodes} == {n: BASE for n in project.nodes}
    assert [e["event"] for e in project.ledger("node1") if e.get("rollout_id") == out["rollout_id"]] == ["switch", "rollback"]
    for n in project.nodes[1:]:
        assert [e for e in project.ledger(n) if e.get("rollout_id") == out["rollout_id"]] == [], n


def test_rollback_brings_every_node_back_to_the_previous_build(project: Project):
    # Given 1.1.0 live everywhere
    project.build("1.1.0")
    assert project.json("deploy", "--env", "production", "--build", "1.1.0", "--yes")["exit_code"] == 0
    # When the environment is rolled back
    out = project.json("rollback", "--env", "production", "--yes")
    # Then every node is back on the baseline; exit 0
    assert out["exit_code"] == 0, out
    assert out["rolled_back"] == sorted(project.nodes)
    assert {n: project.serving(n) for n in project.nodes} == {n: BASE for n in project.nodes}
    assert all(project.ledger(n)[-1]["event"] == "rollback" for n in project.nodes)


def test_checksum_mismatch_is_refused_before_any_host_changes(project: Project):
    # Given an artifact whose .sha256 does not match it
    art = project.build("1.3.0")
    art.sha256_path.write_text("0" * 64 + f"  {art.path.name}\n")
    # When deployed
    result = project.cli("deploy", "--env", "production", "--build", "1.3.0", "--yes")
    # Then: one line, exit 2, and no host has even staged it
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "sha256" in result.output
    for n in project.nodes:
        assert not (project.cfg.node_root(project.cfg.find_node(n)) / "releases" / "1.3.0").exists()


def test_bad_input_is_one_line_and_exit_2(project: Project, tmp_path: Path):
    for args, words in [
        (("deploy", "--env", "staging", "--build", "1.0.0", "--yes"), "no environment 'staging'"),
        (("deploy", "--env", "production", "--build", "7.7.7", "--yes"), "build 7.7.7 not found"),
    ]:
        result = project.cli(*args)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and words in result.output
    bad = tmp_path / "broken.yml"
    bad.write_text("version: 1\napp: demoapp\nenvironments:\n  production:\n    waves: [0]\n"
                   "    deploy_root: /srv/demoapp\n    service: {command: /srv/demoapp/bin/demoapp-service}\n")
    from click.testing import CliRunner

    from lrelease.cli.main import cli
    result = CliRunner().invoke(cli, ["plan", "--env", "production", "--config", str(bad)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "environments.production.waves[0]" in result.output


def test_killed_wrapper_leaves_a_resumable_rollout_and_resume_skips_done_hosts(project: Project):
    # Given a good build rolling out one host at a time, slowly
    project = Project(project.sandbox, project.path.parent, waves=[1], bake_seconds=2, gate_timeout_seconds=10)
    project.build("1.4.0")
    env = {**os.environ, "LRELEASE_CONFIG": str(project.path), "LRELEASE_ACTOR": "killer-test"}
    lrelease = str(Path(sys.executable).parent / "lrelease")
    proc = subprocess.Popen([lrelease, "deploy", "--env", "production", "--build", "1.4.0", "--yes", "--json"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # When the wrapper is SIGKILLed once two hosts have switched
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(project.current(n) == "1.4.0" for n in project.nodes) < 2:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)  # ansible-playbook gets SIGTERM from the kernel when its parent dies
    done_before = [n for n in project.nodes if project.current(n) == "1.4.0"]
    assert 2 <= len(done_before) < len(project.nodes), done_before
    still = [n for n in project.nodes if project.current(n) == "1.4.0"]
    assert still == done_before, "the playbook kept going without its wrapper"
    # Then status shows the interrupted roll-out
    status = project.json("status", "--env", "production")
    assert [r["build"] for r in status["interrupted"]] == ["1.4.0"]
    assert status["consistent"] is False
    # And resume finishes it (the lock is not stuck), without redeploying finished hosts
    out = project.json("resume", "--env", "production", "--yes")
    assert out["exit_code"] == 0, out
    assert {n: project.serving(n) for n in project.nodes} == {n: "1.4.0" for n in project.nodes}
    for n in project.nodes:
        switches = [e for e in project.ledger(n) if e["event"] == "switch" and e["to"] == "1.4.0"]
        assert len(switches) == 1, (n, switches)
    assert project.json("status", "--env", "production")["interrupted"] == []


def test_a_service_command_given_as_an_argv_list_restarts_the_app_on_deploy_and_rollback(project: Project):
    # Given the service run through /usr/bin/env with an argument (no shell anywhere)
    root = project.cfg.deploy_root
    argv = ["/usr/bin/env", "LRELEASE_ARGV_TEST=1", f"{root}/bin/{project.cfg.app}-service"]
    listed = Project(project.sandbox, project.path.parent, waves=[1, "100%"], bake_seconds=1, gate_timeout_seconds=10,
                     service={"command": argv})
    listed.build("1.9.0")
    # When a build is deployed and then rolled back
    out = listed.json("deploy", "--env", "production", "--build", "1.9.0", "--yes")
    assert out["exit_code"] == 0, out["message"]
    assert {n: listed.serving(n) for n in listed.nodes} == {n: "1.9.0" for n in listed.nodes}
    back = listed.json("rollback", "--env", "production", "--yes")
    # Then each restart ran the new build, then the old one again
    assert back["exit_code"] == 0, back["message"]
    assert {n: listed.serving(n) for n in listed.nodes} == {n: BASE for n in listed.nodes}
