"""``lrelease awx launch`` against a fake AWX on loopback (tests/fakes/awx.py: answers written
from AWX's documented API v2). Real HTTP, the real client and CLI; only AWX is a fake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lrelease import awx, secrets
from lrelease.cli.main import cli
from lrelease.errors import ConfigError, ExitCode
from lrelease.runner import EventKind
from tests.fakes.awx import FORBIDDEN, FakeAwx, Node, Script, Template

TOKEN = "awx-T0ken-s3cret-4242"


# -- events as AWX stores them (event, event_data: the same as ansible-runner's) ------------------
def play(name):
    return {"event": "playbook_on_play_start", "event_data": {"play": name}}


def ok(host, task, role="", **res):
    return {"event": "runner_on_ok", "event_data": {"host": host, "task": task, "role": role, "res": res}}


def failed(host, task, role="", **res):
    return {"event": "runner_on_failed", "event_data": {"host": host, "task": task, "role": role, "res": res}}


def stats():
    return {"event": "playbook_on_stats", "event_data": {"ok": {}, "changed": {}, "failures": {}, "dark": {}}}


GOOD_RUN = [play("lrelease stage"), ok("node1", "staged", "lrelease_stage", current="1.3.0"),
            ok("node2", "staged", "lrelease_stage", current="1.3.0"), play("lrelease switch"),
            ok("", "lrelease wave", ansible_play_batch=["node1"]),
            ok("node1", "switched", "lrelease_switch", changed=True),
            ok("node1", "lrelease gate", verdict="pass", reason="healthy"),
            ok("", "lrelease wave", ansible_play_batch=["node2"]),
            ok("node2", "switched", "lrelease_switch", changed=True),
            ok("node2", "lrelease gate", verdict="pass", reason="healthy"), stats()]
SUMMARIES = [{"host_name": "node1", "ok": 9, "changed": 2}, {"host_name": "node2", "ok": 9, "changed": 2}]


class Clock:
    """An injected clock: sleep() only moves time on, and records each wait."""

    def __init__(self) -> None:
        self.now, self.waits = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in (*awx.ENV_URL, *awx.ENV_TOKEN, awx.ENV_TOKEN_FILE, awx.ENV_CA_BUNDLE, "CONTROLLER_VERIFY_SSL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(awx, "POLL_FIRST", 0.01)  # CLI runs sleep for real: keep them short
    monkeypatch.setattr(awx, "POLL_MAX", 0.02)
    yield
    secrets.clear()


def client_for(fake: FakeAwx, clock: Clock | None = None) -> awx.Client:
    clock = clock or Clock()
    settings = awx.settings_from_env({"LRELEASE_AWX_URL": fake.url, "LRELEASE_AWX_TOKEN": TOKEN})
    return awx.Client(settings, clock=clock, sleep=clock.sleep)


def cli_env(fake: FakeAwx) -> dict[str, str]:
    return {"LRELEASE_AWX_URL": fake.url, "LRELEASE_AWX_TOKEN": TOKEN}


def run_cli(fake: FakeAwx, *args: str):
    return CliRunner().invoke(cli, ["awx", "launch", *args], env=cli_env(fake), catch_exceptions=False)


def job_requests(fake: FakeAwx) -> list:
    return [r for r in fake.requests if "/api/v2/jobs/" in r.path or "/api/v2/workflow_jobs/" in r.path]


# -- a job template --------------------------------------------------------------------------------
def test_launch_polls_to_successful_and_streams_every_event_once_in_order():
    # Given a deploy template whose job goes pending -> running -> successful, its events served
    # two per page, and an AWX that ignores counter__gt (so every poll re-reads earlier events)
    fake = FakeAwx(TOKEN, page_size=2, honour_counter_gt=False)
    fake.add(Template(7, "lrelease-deploy", script=Script(statuses=["pending", "running", "running", "successful"],
                                                          events=GOOD_RUN, summaries=SUMMARIES)))
    seen, statuses, clock = [], [], Clock()
    with fake.running():
        c = client_for(fake, clock)
        # When it is launched by name and followed
        launched = c.launch(c.find_template("lrelease-deploy"), awx.extra_vars("1.4.0", "production", "nightly", {}))
        outcome = c.follow(launched, on_event=seen.append, on_status=lambda what, job, s: statuses.append(s))
    # Then the extra vars went as the template prompts for them, with a Bearer token
    post = next(r for r in fake.requests if r.method == "POST")
    assert post.path == "/api/v2/job_templates/7/launch/"
    assert json.loads(post.body) == {"extra_vars": {"lrelease_build": "1.4.0", "lrelease_env": "production",
                                                    "lrelease_reason": "nightly"}}
    assert {r.headers["Authorization"] for r in fake.requests} == {f"Bearer {TOKEN}"}
    # And it was followed to its end: exit 0, each status once, in order
    assert statuses == ["pending", "running", "successful"]
    assert (outcome.exit_code, outcome.status) == (ExitCode.OK, "successful")
    # And every event reached the progress view once and in order, over several pages
    assert [(e.kind, e.host) for e in seen] == [
        (EventKind.PLAY_STARTED, None), (EventKind.HOST_STAGED, "node1"), (EventKind.HOST_STAGED, "node2"),
        (EventKind.PLAY_STARTED, None), (EventKind.WAVE_STARTED, None), (EventKind.HOST_SWITCHED, "node1"),
        (EventKind.GATE_PASSED, "node1"), (EventKind.WAVE_STARTED, None), (EventKind.HOST_SWITCHED, "node2"),
        (EventKind.GATE_PASSED, "node2")]
    assert any(r.query.get("page") == "2" for r in fake.requests if r.path.endswith("/job_events/"))
    # And the host summaries were read at the end; polling backed off within its bounds
    assert [h["host"] for h in outcome.to_json()["host_summaries"]] == ["node1", "node2"]
    assert clock.waits and all(0 < w <= awx.POLL_MAX for w in clock.waits)


def test_events_after_a_gap_wait_for_the_missing_one():
    # Given an AWX that has saved events 1, 2 and 4 (3 is still on its way), then all of them
    events = [play("lrelease stage")] + [ok(f"node{i}", "staged", "lrelease_stage", current="1") for i in (1, 2, 3)]
    order, pages = [], iter([[1, 2, 4], [1, 2, 3, 4]])

    class Pages:
        def pages(self, path, params):
            return [{"counter": c, **events[c - 1]} for c in next(pages) if c > params["counter__gt"]]

    stream = awx._Events(Pages(), 1, lambda e: order.append(e["event_data"].get("host") or "play"))
    # When it is read twice
    first = stream.pull()
    stream.pull()
    # Then event 4 waited for 3: each once, in counter order
    assert first == 2
    assert order == ["play", "node1", "node2", "node3"]


def test_a_gap_that_stays_is_passed_after_a_few_polls():
    # Given an AWX that never saves event 3 (lost), only 1, 2, 4 and 5
    order = []

    class Pages:
        def pages(self, path, params):
            return [{"counter": c, "event": "x", "event_data": {"n": c}} for c in (1, 2, 4, 5)
                    if c > params["counter__gt"]]

    stream = awx._Events(Pages(), 1, lambda e: order.append(e["event_data"]["n"]))
    # When it is polled: 4 and 5 wait GAP_POLLS polls for 3, then go on without it
    for _ in range(awx.GAP_POLLS):
        stream.pull()
    assert order == [1, 2]
    stream.pull()
    assert order == [1, 2, 4, 5]


def test_ignored_fields_refused_naming_them_and_nothing_polled():
    # Given a template with a survey asking for the build only, not prompting for other variables
    fake = FakeAwx(TOKEN)
    fake.add(Template(7, "lrelease-deploy", ask_variables=False, survey_vars=("lrelease_build",)))
    with fake.running():
        # When it is launched with an environment too
        result = run_cli(fake, "lrelease-deploy", "--build", "1.4.0", "--env", "production")
        requests = list(fake.requests)
    # Then: exit 2, one line naming the dropped field and what to enable
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("lrelease: error")]
    assert len(errors) == 1
    assert "extra_vars (lrelease_env)" in errors[0] and "enable 'Prompt on launch' for extra variables" in errors[0]
    # And the job was cancelled, never polled
    assert [(r.method, r.path) for r in requests if "/jobs/" in r.path] == [("POST", "/api/v2/jobs/101/cancel/")]
    assert fake.jobs[101].canceled


def test_template_prompting_for_nothing_refused_before_launch():
    # Given a template that neither prompts for variables nor has a survey
    fake = FakeAwx(TOKEN)
    fake.add(Template(7, "lrelease-deploy", ask_variables=False))
    with fake.running():
        # When it is launched
        result = run_cli(fake, "7", "--build", "1.4.0")
    # Then it is refused before any POST: nothing launched
    assert result.exit_code == 2
    assert "prompts for no extra variables" in result.stderr and "lrelease_build" in result.stderr
    assert not [r for r in fake.requests if r.method == "POST"]
    assert not fake.jobs


@pytest.mark.parametrize("answer, expected", [
    ((400, {"variables_needed_to_start": ["'lrelease_waves' value missing"], "extra_vars": ["Invalid JSON"]}),
     "AWX refused to launch job template 'lrelease-deploy' (7) (HTTP 400): variables_needed_to_start: "
     "'lrelease_waves' value missing; extra_vars: Invalid JSON"),
    ((403, FORBIDDEN), "the token's AWX user may not launch job template 'lrelease-deploy' (7) (HTTP 403: "
                       "You do not have permission to perform this action.): ask for the Execute role on it"),
])
def test_400_and_403_are_one_line_each(answer, expected):
    # Given a template whose launch AWX refuses
    fake = FakeAwx(TOKEN)
    fake.add(Template(7, "lrelease-deploy", error=answer))
    with fake.running():
        # When it is launched
        result = run_cli(fake, "lrelease-deploy", "--build", "1.4.0")
    # Then one line says why, exit 2, nothing polled
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"lrelease: error: {expected}"]
    assert not job_requests(fake)


def test_unknown_template_and_wrong_token():
    fake = FakeAwx(TOKEN)
    with fake.running():
        missing = run_cli(fake, "lrelease-deploy", "--build", "1.4.0")
        env = {**cli_env(fake), "LRELEASE_AWX_TOKEN": "not-the-token"}
        denied = CliRunner().invoke(cli, ["awx", "launch", "7", "--build", "1.4.0"], env=env)
    assert missing.exit_code == 2 and "no job template named 'lrelease-deploy'" in missing.stderr
    assert denied.exit_code == 2
    assert denied.stderr.splitlines() == ["lrelease: error: AWX did not accept the token (HTTP 401: Authentication "
                                          "credentials were not provided.): check LRELEASE_AWX_TOKEN (or "
                                          "LRELEASE_AWX_TOKEN_FILE)"]


def test_failed_job_exits_1_with_the_failed_host_summary():
    # Given a deploy job that goes pending -> running -> failed: node1's switch failed and was
    # put back (no host left on the new build)
    events = [play("lrelease stage"), ok("node1", "staged", "lrelease_stage", current="1.3.0"),
              ok("", "lrelease wave", ansible_play_batch=["node1"]),
              ok("node1", "switched", "lrelease_switch", changed=True),
              ok("node1", "reverted", "lrelease_switch", changed=True),
              failed("node1", "lrelease host failed", msg="the app did not listen on 8080"), stats()]
    fake = FakeAwx(TOKEN)
    fake.add(Template(7, "lrelease-deploy", script=Script(statuses=["pending", "running", "failed"], events=events,
                                                          summaries=[{"host_name": "node1", "ok": 5, "failures": 1},
                                                                     {"host_name": "node2", "ok": 4}])))
    with fake.running():
        # When it is launched and followed
        result = run_cli(fake, "lrelease-deploy", "--build", "1.4.0", "--env", "production")
    # Then exit 1, the failed host's summary shown, progress lines on stderr
    assert result.exit_code == 1, result.output
    assert "node1: failures 1, unreachable 0, ok 5, changed 0 (job 101)" in result.stdout
    assert "node2:" not in result.stdout
    assert "job 101 failed (failed: node1); no host was left on the new build" in result.stderr
    assert "node1: failed — the app did not listen on 8080" in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("job 101:")] == [
        "job 101: pending", "job 101: running", "job 101: failed"]


LOCK_HELD = ("refused: production is locked by deploy a1b2c3 of 1.3.0 (bob, since 2026-11-30T21:00:00Z); "
             "wait for it, or `lrelease unlock` if it is dead")


@pytest.mark.parametrize(("playbook", "exit_code", "msg"), [
    ("playbooks/deploy.yml", 4, LOCK_HELD),
    ("playbooks/rollback.yml", 4, LOCK_HELD),
    ("playbooks/deploy.yml", 2, "lrelease_env: 'prod' is not an environment of lrelease.yml (production, next)"),
])
def test_a_job_whose_policy_step_failed_changed_no_host_and_says_so(playbook, exit_code, msg):
    # Given a deploy or rollback job that AWX ran, whose policy step failed before any host
    # changed (another roll-out holds the lock; or bad settings)
    events = [play("lrelease stage" if "deploy" in playbook else "lrelease policy"),
              failed("node1", "lrelease policy", msg=msg, exit_code=exit_code),
              failed("node1", "lrelease policy refused", msg=msg), stats()]
    fake = FakeAwx(TOKEN)
    fake.add(Template(7, "t", script=Script(statuses=["running", "failed"], events=events, playbook=playbook,
                                            summaries=[{"host_name": "node1", "ok": 1, "failures": 1}])))
    with fake.running():
        result = run_cli(fake, "t", "--build", "1.4.0", "--env", "production")
    # Then it exits with the policy step's own code (4 refused, 2 bad settings): never 1 ("rolled
    # back cleanly") nor 3 ("the rollback failed"), with the step's reason in one line
    assert result.exit_code == exit_code, result.output
    assert f"job 101 changed no host: {msg}" in result.stderr


def test_failed_gate_leaving_the_canary_on_the_new_build_halts():
    # Given a deploy job whose canary gate failed: node1 stays on 1.4.0 (AWX does not roll back)
    events = [ok("", "lrelease wave", ansible_play_batch=["node1"]),
              ok("node1", "switched", "lrelease_switch", changed=True),
              failed("node1", "lrelease gate", verdict="fail", reason="HTTP 500"), stats()]
    fake = FakeAwx(TOKEN)
    fake.add(Template(7, "d", script=Script(statuses=["running", "failed"], events=events,
                                            artifacts={"lrelease_rollback_build": "1.4.0"})))
    with fake.running():
        c = client_for(fake)
        outcome = c.follow(c.launch(c.find_template("7"), {"lrelease_build": "1.4.0"}))
    # Then it is a halt for a human (5), naming the host and what to do
    assert outcome.exit_code == ExitCode.HALTED
    assert "node1 stay on 1.4.0 for a human: launch the rollback template" in outcome.message


def test_canceled_and_error_jobs():
    fake = FakeAwx(TOKEN)
    fake.add(Template(7, "c", script=Script(statuses=["running", "canceled"])))
    fake.add(Template(8, "e", script=Script(statuses=["pending", "error"], explanation="Failed to pull the EE image")))
    fake.add(Template(9, "s", script=Script(statuses=["running", "failed"], playbook="playbooks/status.yml")))
    with fake.running():
        c = client_for(fake)
        canceled, error, status = (c.follow(c.launch(c.find_template(t), {"lrelease_build": "1"})) for t in "789")
    assert canceled.exit_code == ExitCode.INTERRUPTED
    assert error.exit_code == ExitCode.INTERNAL and "Failed to pull the EE image" in error.message
    assert status.exit_code == ExitCode.HALTED and "the fleet is not consistent" in status.message


# -- a workflow --------------------------------------------------------------------------------------
def release_workflow(rollback_status: str | None, workflow_status: str = "successful", *,
                     rollback_playbook: str = "playbooks/rollback.yml", on_failure: bool = True) -> Template:
    """deploy -> on failure: rollback (AWX marks such a workflow successful: the failure was handled)."""
    deploy = Script(statuses=["running", "failed"], events=[failed("node1", "lrelease gate", verdict="fail",
                                                                   reason="HTTP 500")],
                    summaries=[{"host_name": "node1", "failures": 1}])
    rollback = None if rollback_status is None else Script(
        statuses=["running", rollback_status], playbook=rollback_playbook,
        events=[play("lrelease rollback"), ok("node1", "rolled back", "lrelease_rollback", changed=True)],
        summaries=[{"host_name": "node1", "ok": 3, "changed": 1, "failures": int(rollback_status == "failed")}])
    if rollback_status is None:  # the deploy succeeded: the rollback node did not run
        deploy = Script(statuses=["running", "successful"], events=GOOD_RUN, summaries=SUMMARIES)
    return Template(20, "lrelease release", workflow=True, workflow_statuses=["running", "running", workflow_status],
                    nodes=[Node(1, "lrelease-deploy", deploy, failure=[2] if on_failure else [], success=[] if on_failure else [2]),
                           Node(2, "lrelease-rollback", rollback)])


@pytest.mark.parametrize("playbook, on_failure", [
    ("playbooks/rollback.yml", True),  # the exported workflow
    ("site/undo-release.yml", True),  # a team's own rollback template, on the failure path
    ("playbooks/rollback.yml", False),  # lrelease's rollback playbook, wherever the node is
])
def test_workflow_successful_after_its_rollback_node_is_a_failed_release(playbook, on_failure):
    # Given a workflow that AWX reports successful because its rollback node handled the failure
    fake = FakeAwx(TOKEN)
    fake.add(release_workflow("successful", rollback_playbook=playbook, on_failure=on_failure))
    with fake.running():
        # When it is launched and followed
        result = run_cli(fake, "lrelease release", "--workflow", "--build", "1.4.0", "--env", "production", "--json")
    # Then the release failed and was rolled back: exit 1
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "lrelease.awx/v1" and doc["status"] == "successful" and doc["exit_code"] == 1
    assert doc["message"].startswith("rolled back: the workflow ran its rollback step 'lrelease-rollback'")
    assert [(n["name"], n["role"], n["status"]) for n in doc["nodes"]] == [
        ("lrelease-deploy", "step", "failed"), ("lrelease-rollback", "rollback", "successful")]
    # And both steps' events reached the progress view (stderr), in the order they happened
    err = result.stderr.splitlines()
    order = ["node1: gate FAILED — HTTP 500", "step 'lrelease-deploy' (job 102): failed", "rolling back",
             "node1: rolled back", "step 'lrelease-rollback' (job 103): successful", "workflow 101: successful"]
    assert [line for line in err if line in order] == order


def test_workflow_whose_rollback_failed_exits_3_and_a_clean_one_0():
    fake = FakeAwx(TOKEN)
    fake.add(release_workflow("failed", workflow_status="failed"))
    with fake.running():
        c = client_for(fake)
        bad = c.follow(c.launch(c.find_template("20", workflow=True), {"lrelease_build": "1.4.0"}))
    good_fake = FakeAwx(TOKEN)
    good_fake.add(release_workflow(None))
    with good_fake.running():
        c = client_for(good_fake)
        good = c.follow(c.launch(c.find_template("20", workflow=True), {"lrelease_build": "1.4.0"}))
    assert bad.exit_code == ExitCode.ROLLBACK_FAILED and "'lrelease-rollback'" in bad.message
    assert good.exit_code == ExitCode.OK
    assert [n["role"] for n in good.nodes] == ["step", "not run"]


def test_workflow_waiting_at_an_approval_node_is_a_halt():
    deploy = Script(statuses=["running", "failed"],
                    events=[failed("node1", "lrelease gate", verdict="inconclusive", reason="no data")])
    fake = FakeAwx(TOKEN)
    fake.add(Template(21, "w", workflow=True, workflow_statuses=["running"],
                      nodes=[Node(1, "deploy", deploy, failure=[2]), Node(2, "a human decides", None, approval=True)]))
    with fake.running():
        c = client_for(fake)
        outcome = c.follow(c.launch(c.find_template("21", workflow=True), {"lrelease_build": "1"}), max_wait=60)
    assert outcome.exit_code == ExitCode.HALTED and "approval 'a human decides' waits" in outcome.message


PAUSED = ("paused: the deploy window of production closed at 2026-12-01T05:00:00+00:00; `lrelease resume` or the next "
          "nightly run continues it in the next window (nothing rolled back: every host is on a complete build)")


REFUSED = ("refused: production's release captain is alice; awx-bob is not: ask alice, or add --force --reason "
           "\"...\" (recorded) (the deploy changed no host: nothing to roll back)")


def exported_workflow(*, triage: str, approval: str | None = None, rollback: str | None = None,
                      triage_said: str = PAUSED) -> Template:
    """The shape `lrelease awx export` writes: deploy (failed) → triage → success: rollback →
    success: the red status step; triage → failure: the "roll back?" approval (an APM gate; its
    approval: rollback, denial: the red step) or, without one, the red step."""
    deploy = Script(statuses=["running", "failed"], events=[
        ok("", "lrelease wave", ansible_play_batch=["node1"]), ok("node1", "switched", "lrelease_switch", changed=True),
        ok("node1", "lrelease gate", verdict="pass", reason="healthy"), stats()],
        artifacts={"lrelease_rollback_build": "1.4.0", "lrelease_outcome": "paused"})
    says = ok("localhost", "lrelease triage rollback", msg="failed: node1 failed; rolling production back") if \
        triage == "successful" else failed("localhost", "lrelease triage stop", msg=triage_said)
    triage_job = Script(statuses=["running", triage], playbook="playbooks/triage.yml", events=[says, stats()])
    rolled = Script(statuses=["running", "failed"], playbook="playbooks/status.yml", events=[
        failed("node1", "Check the fleet", msg="fleet is inconsistent (expected 1.4.0)"), stats()])
    rollback_job = None if rollback is None else Script(statuses=["running", rollback], playbook="playbooks/rollback.yml",
                                                        events=[ok("node1", "rolled back", "lrelease_rollback", changed=True)])
    red = 5
    nodes = [Node(1, "lrelease deploy production", deploy, failure=[2]),
             Node(2, "lrelease triage production", triage_job, success=[4], failure=[3 if approval else red]),
             Node(4, "lrelease rollback production", rollback_job, success=[red]),
             Node(red, "lrelease rolled back production", rolled if rollback in ("successful", None) else None)]
    if approval:
        nodes.insert(2, Node(3, "lrelease roll back production?", None, success=[4], failure=[red], approval=True,
                             approval_status=approval))
    return Template(30, "lrelease release production", workflow=True,
                    workflow_statuses=["running", "running", "failed"], nodes=nodes)


@pytest.mark.parametrize("approval", [None, "failed"], ids=["health only: the red step", "APM gate: approval denied"])
def test_workflow_whose_triage_left_the_deploy_for_a_human_is_a_halt_not_a_rollback(approval):
    # Given the exported workflow after a deploy its window paused: the triage step failed
    # (nothing to roll back), then (an APM gate) the approval "roll back?" was denied, and the
    # red status step failed
    fake = FakeAwx(TOKEN)
    fake.add(exported_workflow(triage="failed", approval=approval))
    with fake.running():
        c = client_for(fake)
        outcome = c.follow(c.launch(c.find_template("30", workflow=True), {"lrelease_build": "1.4.0"}))
    # Then it is a halt (5) saying why, not a failed rollback: neither triage nor the status step is one
    assert outcome.exit_code == ExitCode.HALTED, outcome.message
    assert outcome.message == f"left for a human: the triage step 'lrelease triage production' (job 103) said {PAUSED}"
    roles = {n["node"]: (n["name"], n["role"]) for n in outcome.nodes}
    assert roles[2] == ("lrelease triage production", "step") and roles[5] == ("lrelease rolled back production", "step")
    assert roles[4][1] == "not run"  # the rollback


def test_workflow_whose_deploy_a_policy_refused_is_a_refusal_not_a_rollback():
    # Given the exported workflow after a deploy the policy step refused (not the captain): the
    # triage step failed saying so, and the red status step failed
    fake = FakeAwx(TOKEN)
    fake.add(exported_workflow(triage="failed", triage_said=REFUSED))
    with fake.running():
        c = client_for(fake)
        outcome = c.follow(c.launch(c.find_template("30", workflow=True), {"lrelease_build": "1.4.0"}))
    # Then it is a refusal (4) saying why; nothing was rolled back
    assert outcome.exit_code == ExitCode.REFUSED, outcome.message
    assert outcome.message == f"refused: the triage step 'lrelease triage production' (job 103) said {REFUSED}"
    assert {n["node"]: n["role"] for n in outcome.nodes}[4] == "not run"  # the rollback


def test_workflow_whose_triage_said_roll_back_is_rolled_back_by_its_rollback_step():
    # Given the exported workflow after a failed deploy: triage said "roll back", the rollback
    # succeeded, and the red status step failed (the fleet is not on the build)
    fake = FakeAwx(TOKEN)
    fake.add(exported_workflow(triage="successful", rollback="successful"))
    with fake.running():
        c = client_for(fake)
        outcome = c.follow(c.launch(c.find_template("30", workflow=True), {"lrelease_build": "1.4.0"}))
    # Then it was rolled back (1) by the rollback step; the red step (also on triage's failure path) is no rollback
    assert outcome.exit_code == ExitCode.ROLLED_BACK, outcome.message
    assert "rollback step 'lrelease rollback production'" in outcome.message
    assert [(n["name"], n["role"]) for n in outcome.nodes] == [
        ("lrelease deploy production", "step"), ("lrelease triage production", "step"),
        ("lrelease rollback production", "rollback"), ("lrelease rolled back production", "step")]


# -- secrets and settings ---------------------------------------------------------------------------
def test_token_never_shown_even_when_awx_echoes_it():
    # Given an AWX whose 400 echoes the Authorization header back
    fake = FakeAwx(TOKEN)
    fake.add(Template(7, "d", error=(400, {"detail": f"bad header Bearer {TOKEN}"})))
    fake.add(Template(8, "ok", script=Script(events=GOOD_RUN, summaries=SUMMARIES)))
    with fake.running():
        refused = run_cli(fake, "7", "--build", "1.4.0")
        good = run_cli(fake, "8", "--build", "1.4.0", "--json")
        c = client_for(fake)
        with pytest.raises(awx.AwxRefused) as err:  # the library's own error text, before the CLI's scrubbing
            c.launch(c.find_template("7"), {"lrelease_build": "1.4.0"})
    assert TOKEN not in str(err.value) and "Bearer ***" in str(err.value)
    # Then the token is masked in the error, and absent from every output
    assert refused.exit_code == 2 and "bad header Bearer ***" in refused.stderr
    for result in (refused, good):
        assert TOKEN not in result.stdout + result.stderr
    assert good.exit_code == 0


def test_settings_from_the_environment(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("file-t0ken-value\n")
    s = awx.settings_from_env({"CONTROLLER_HOST": "awx.example.com", "LRELEASE_AWX_TOKEN_FILE": str(token_file)})
    assert s.url == "https://awx.example.com" and s.token.reveal() == "file-t0ken-value"
    assert "file-t0ken-value" not in repr(s) and secrets.scrub("x file-t0ken-value") == "x ***"
    with pytest.raises(ConfigError, match="^environment: LRELEASE_AWX_URL: the AWX base URL"):
        awx.settings_from_env({"LRELEASE_AWX_TOKEN": TOKEN})
    with pytest.raises(ConfigError, match="^environment: LRELEASE_AWX_TOKEN: an AWX OAuth2 token"):
        awx.settings_from_env({"LRELEASE_AWX_URL": "https://awx"})
    with pytest.raises(ConfigError, match="LRELEASE_AWX_URL: an http.s. URL of AWX without user:password"):
        awx.settings_from_env({"LRELEASE_AWX_URL": "https://u:pw@awx", "LRELEASE_AWX_TOKEN": TOKEN})
    with pytest.raises(ConfigError, match="LRELEASE_AWX_CA_BUNDLE: the path of a readable PEM file"):
        awx.settings_from_env({"LRELEASE_AWX_URL": "https://awx", "LRELEASE_AWX_TOKEN": TOKEN,
                               "LRELEASE_AWX_CA_BUNDLE": str(tmp_path / "nope.pem")})


def test_bad_options_are_one_line_and_send_nothing():
    fake = FakeAwx(TOKEN)
    with fake.running():
        bad_build = run_cli(fake, "7", "--build", "../etc")
        bad_var = run_cli(fake, "7", "--build", "1.4.0", "--extra-var", "lrelease_build=2")
        no_url = CliRunner().invoke(cli, ["awx", "launch", "7", "--build", "1.4.0"], env={"LRELEASE_AWX_TOKEN": TOKEN})
    assert bad_build.exit_code == bad_var.exit_code == no_url.exit_code == 2
    assert bad_var.stderr.splitlines() == ["lrelease: error: --extra-var: lrelease_build: not one of lrelease_build, "
                                           "lrelease_env, lrelease_reason (give --build, --env, --reason)"]
    assert len(no_url.stderr.splitlines()) == 1
    assert not fake.requests


def test_extra_var_values_arrive_typed_in_the_launch():
    # Given a deploy template that prompts for extra vars
    fake = FakeAwx(TOKEN)
    fake.add(Template(7, "lrelease-deploy", script=Script(statuses=["successful"], events=[stats()])))
    with fake.running():
        # When it is launched with lists, numbers, booleans and build-like strings as --extra-var
        result = run_cli(fake, "7", "--build", "1.4.0", "--no-wait",
                         "--extra-var", 'lrelease_waves=[1, "50%", "100%"]',
                         "--extra-var", "lrelease_bake_seconds=60", "--extra-var", "lrelease_gate_interval=0.5",
                         "--extra-var", "lrelease_cleanup=false", "--extra-var", "lrelease_health_body_json={status: ok}",
                         "--extra-var", "lrelease_previous_build=1.10", "--extra-var", 'lrelease_note="42"',
                         "--extra-var", "lrelease_actor=ops team")
    # Then AWX got them typed in its extra_vars object, as ansible-playbook -e '{...}' would:
    # lists, mappings, numbers and booleans as such; a version stays the string given
    assert result.exit_code == 0, result.stderr
    post = next(r for r in fake.requests if r.method == "POST")
    assert json.loads(post.body)["extra_vars"] == {
        "lrelease_build": "1.4.0", "lrelease_waves": [1, "50%", "100%"], "lrelease_bake_seconds": 60,
        "lrelease_gate_interval": 0.5, "lrelease_cleanup": False, "lrelease_health_body_json": {"status": "ok"},
        "lrelease_previous_build": "1.10", "lrelease_note": "42", "lrelease_actor": "ops team"}


def test_a_malformed_list_extra_var_is_one_line_and_launches_nothing():
    fake = FakeAwx(TOKEN)
    with fake.running():
        result = run_cli(fake, "7", "--build", "1.4.0", "--extra-var", "lrelease_waves=[1, '50%'")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["lrelease: error: --extra-var: lrelease_waves: a YAML/JSON list or "
                                          "mapping, got \"[1, '50%'\""]
    assert not fake.requests


# -- end to end: the installed command, a real process, the fake AWX ---------------------------------
def test_end_to_end_cli_process_against_the_fake_awx():
    # Given a fake AWX with a deploy template whose job succeeds
    fake = FakeAwx(TOKEN, page_size=3)
    fake.add(Template(7, "lrelease-deploy", script=Script(statuses=["pending", "running", "successful"],
                                                          events=GOOD_RUN[:-1], summaries=SUMMARIES,
                                                          late_events=True)))  # node2's gate: saved after the end
    lrelease = Path(sys.executable).parent / "lrelease"
    with fake.running():
        # When `lrelease awx launch` runs as cron would, with --json
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("LRELEASE_AWX", "CONTROLLER_"))},
               **cli_env(fake)}
        done = subprocess.run([str(lrelease), "awx", "launch", "lrelease-deploy", "--build", "1.4.0", "--env",
                               "production", "--json"], env=env, capture_output=True, text=True, timeout=120)
    # Then: exit 0, the outcome alone on stdout, progress on stderr, the token nowhere
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["kind"], doc["id"], doc["status"], doc["failed_hosts"]) == ("job", 101, "successful", [])
    assert doc["url"] == f"{fake.url}/#/jobs/playbook/101/output"
    assert [h["host"] for h in doc["host_summaries"]] == ["node1", "node2"]
    err = done.stderr.splitlines()
    assert err[0] == f"launched job template 'lrelease-deploy' (7): job 101 {fake.url}/#/jobs/playbook/101/output"
    for line in ("job 101: running", "wave 1: node1", "node1: gate passed — healthy", "node2: gate passed — healthy",
                 "job 101: successful"):
        assert line in err
    assert TOKEN not in done.stdout + done.stderr


def test_no_wait_launches_and_exits_0_without_polling():
    fake = FakeAwx(TOKEN)
    fake.add(Template(7, "lrelease-deploy"))
    with fake.running():
        result = run_cli(fake, "lrelease-deploy", "--build", "1.4.0", "--no-wait", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["id"] == 101 and json.loads(result.stdout)["status"] == "launched"
    assert not job_requests(fake)


def test_a_job_that_never_ends_or_an_awx_that_goes_away_is_exit_70(monkeypatch):
    # Given a job that stays running, followed for at most 60 s (injected clock)
    fake = FakeAwx(TOKEN)
    fake.add(Template(7, "d", script=Script(statuses=["running"])))
    clock = Clock()
    monkeypatch.setattr(awx, "POLL_FIRST", 1.0)  # the real backoff: 1, 2, 4, 8, 15... s of the injected clock
    monkeypatch.setattr(awx, "POLL_MAX", 15.0)
    with fake.running():
        c = client_for(fake, clock)
        with pytest.raises(awx.AwxLostSight, match=r"job 101 had not ended after 60 s: stopped following it; it goes "
                                                   r"on in AWX: http://127\.0\.0\.1:\d+/#/jobs/playbook/101/output"):
            c.follow(c.launch(c.find_template("7"), {"lrelease_build": "1"}), max_wait=60)
        assert 60 <= clock.now <= 60 + awx.POLL_MAX and clock.waits[:5] == [1, 2, 4, 8, 15]
        # And an AWX that stops answering after the launch
        launched = c.launch(c.find_template("7"), {"lrelease_build": "1"})
    monkeypatch.setattr(awx, "MISSES", 1)  # each unanswered poll is retried by urllib3 for a few seconds
    with pytest.raises(awx.AwxLostSight, match="AWX stopped answering while following job 102") as err:
        c.follow(launched)
    assert err.value.exit_code == ExitCode.INTERNAL


@pytest.mark.parametrize("command", [["awx"], ["awx", "launch"]])
def test_help_shows_examples_and_exit_codes(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Examples:\n    lrelease awx launch " in result.output and "Exit codes:\n      0  success\n" in result.output
    assert "\n      1  failed" in result.output
    # exit 4 only from launch: a job's policy step or a workflow's triage step says a policy refused the run
    refused = "\n      4  a job's policy step, or a workflow's triage step, says a policy refused the run"
    assert (refused in result.output) == (command == ["awx", "launch"]), result.output
    assert ("\n      4  " in result.output) == (command == ["awx", "launch"]), result.output
