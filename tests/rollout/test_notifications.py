"""Notifications on the sandbox: a good receiver gets every event of a real roll-out in order, while a
receiver that always fails and one that never answers neither fail nor hold up the roll-out."""

from __future__ import annotations

import json
import logging
import time

import pytest
import yaml

from lrelease import notify
from tests.rollout.conftest import Project
from tests.unit.loopback import hanging, serve

KEY = "whsec-sandbox-0123456789"
SLACK_URL_TOKEN = "T000-B000-sandboxtoken42"


@pytest.fixture
def receivers(project: Project, monkeypatch):
    """lrelease.yml with four channels: a good webhook and a good Slack receiver that record what
    they get (and when), one answering 500 always, one that accepts connections and never answers."""
    arrived: list[float] = []

    def record(request):
        arrived.append(time.monotonic())
        return 200, "ok"

    with serve(record) as good, serve(lambda r: (500, "boom")) as failing, hanging() as stuck:
        monkeypatch.setenv("GOOD_HOOK", good.url + "/hook")
        monkeypatch.setenv("GOOD_SLACK", f"{good.url}/slack/{SLACK_URL_TOKEN}")
        monkeypatch.setenv("FAILING_HOOK", failing.url)
        monkeypatch.setenv("STUCK_HOOK", stuck)
        monkeypatch.setenv("HOOK_KEY", KEY)
        data = yaml.safe_load(project.path.read_text())
        data["notifications"] = [
            {"kind": "webhook", "url_env": "GOOD_HOOK", "secret_env": "HOOK_KEY"},
            {"kind": "slack", "url_env": "GOOD_SLACK", "events": ["start", "rollback", "end"]},
            {"kind": "webhook", "url_env": "FAILING_HOOK", "secret_env": "HOOK_KEY"},
            {"kind": "webhook", "url_env": "STUCK_HOOK", "secret_env": "HOOK_KEY"},
        ]
        project.path.write_text(yaml.safe_dump(data, sort_keys=False))
        yield good, failing, arrived


def events(good) -> list[dict]:
    return [json.loads(r.body) for r in good.requests if r.path == "/hook"]


def timed_deploy(project: Project, build: str) -> tuple[dict, float]:
    result = project.cli("deploy", "--env", "production", "--build", build, "--yes", "--json")
    returned = time.monotonic()
    out = json.loads(result.stdout[result.stdout.index("{"):])
    return {"exit_code": result.exit_code, "stderr": result.stderr, **out}, returned


def test_a_good_receiver_gets_every_event_in_order_while_failing_and_hanging_ones_cost_a_bounded_wait(
        project: Project, receivers, caplog):
    good, failing, arrived = receivers
    caplog.set_level(logging.WARNING, logger="lrelease.notify")
    # Given a good build, and the four receivers
    project.build("1.1.0")
    # When it is deployed (waves [1, 1, 50%, 100%])
    out, returned = timed_deploy(project, "1.1.0")
    # Then the roll-out succeeds: the failing and hanging receivers changed nothing
    assert out["exit_code"] == 0 and out["status"] == "succeeded", out
    # And the good webhook got every event, in order: start, each wave and its verdicts, end
    got = events(good)
    assert [e["kind"] for e in got] == ["start", "wave", "gate", "wave", "gate", "wave", "gate", "gate", "gate",
                                        "wave", "gate", "end"]
    waves = [(e["wave"], sorted(e["hosts"])) for e in got if e["kind"] == "wave"]
    assert waves == [(1, ["node1"]), (2, ["node2"]), (3, ["node3", "node4", "node5"]), (4, ["node6"])]
    gates = [(e["wave"], e["host"], e["verdict"]) for e in got if e["kind"] == "gate"]
    assert sorted(gates) == [(1, "node1", "pass"), (2, "node2", "pass"), (3, "node3", "pass"),
                             (3, "node4", "pass"), (3, "node5", "pass"), (4, "node6", "pass")]
    assert all(e["rollout_id"] == out["rollout_id"] and e["build"] == "1.1.0" and e["env"] == "production"
               for e in got)
    end = got[-1]
    assert (end["status"], end["exit_code"]) == ("succeeded", 0) and end["duration_seconds"] > 0
    # And each was signed with the key
    for r in (r for r in good.requests if r.path == "/hook"):
        assert r.headers["X-Lrelease-Signature"] == notify.signature(KEY, r.headers["X-Lrelease-Timestamp"], r.body)
    # And the Slack receiver got its filtered events only (start, end)
    slack = [json.loads(r.body)["text"] for r in good.requests if r.path.startswith("/slack/")]
    assert len(slack) == 2 and "started by" in slack[0] and "ended succeeded (exit 0)" in slack[1]
    # And the failing receiver was tried (and retried) but did not hold the roll-out
    assert len(failing.requests) >= notify.ATTEMPTS
    # And the wrapper returned at most DRAIN_SECONDS (plus 1 s of its own work) after the last event arrived
    assert returned - arrived[-1] <= notify.DRAIN_SECONDS + 1.0
    # And it said, in one line, that some events were not delivered, never quoting a URL
    lines = [r.getMessage() for r in caplog.records if r.name == "lrelease.notify"]
    assert len(lines) == 1 and "not delivered" in lines[0] and "$FAILING_HOOK" in lines[0], lines
    assert "127.0.0.1" not in lines[0] + out["stderr"] and SLACK_URL_TOKEN not in lines[0] + out["stderr"]


def test_a_failing_roll_out_tells_of_its_verdict_its_automatic_rollback_and_its_end(project: Project, receivers):
    good, _, _ = receivers
    # Given a build whose /health fails once it runs
    project.build("1.2.0-bad", health_fail=True)
    # When it is deployed
    out, _ = timed_deploy(project, "1.2.0-bad")
    # Then it is rolled back (exit 1), and the good receiver heard the whole story in order
    assert out["exit_code"] == 1 and out["status"] == "rolled_back", out
    got = events(good)
    assert [e["kind"] for e in got] == ["start", "wave", "gate", "rollback", "end"]
    gate, rollback, end = got[2], got[3], got[4]
    assert (gate["host"], gate["verdict"]) == ("node1", "fail") and gate["reason"]
    assert rollback["automatic"] is True and "gate failed on node1" in rollback["reason"]
    assert (end["status"], end["exit_code"]) == ("rolled_back", 1)
    # And chat got the rollback too, as one line
    slack = [json.loads(r.body)["text"] for r in good.requests if r.path.startswith("/slack/")]
    assert len(slack) == 3 and "rolling back automatically: gate failed on node1" in slack[1]
