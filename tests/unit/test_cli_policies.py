"""The release policies from the CLI, with an injected clock: `captain set|show|clear`, `pause` /
`unpause`, and `deploy` refused (exit 4, one line, recorded, no host touched) for a paused
environment, a non-captain and a build not proven on Next; `plan` shows Next's evidence.

A refused deploy stops before any host is reached, so these need no sandbox: the fleet's
addresses are never dialled (tests/rollout/test_release_policies.py runs the accepted ones)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.state import StateStore
from tests.clock import injected

T0 = datetime(2026, 11, 30, 22, 0, 0, tzinfo=timezone.utc)
def env(**more) -> dict:
    return {"deploy_root": "/srv/shop", "service": {"systemd": "shop"}, "waves": ["100%"], **more}


@pytest.fixture
def clock(monkeypatch):
    """Every state store the CLI opens reads this clock."""
    return injected(monkeypatch, T0)


def shop_project(tmp_path: Path, **production) -> Path:
    """An lrelease.yml with next (node1) and production (node2, node3; its settings ``production``)
    and a build 1.6.0 in the artifacts store; no host is ever reached."""
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump({"nodes": {
        "node1": {"environment": "next", "address": "192.0.2.1"},
        "node2": {"environment": "production", "address": "192.0.2.2"},
        "node3": {"environment": "production", "address": "192.0.2.3"}}}))
    (tmp_path / "artifacts").mkdir()
    artifact = tmp_path / "artifacts" / "shop-1.6.0.tar.gz"
    artifact.write_bytes(b"not really a tarball")
    (tmp_path / "artifacts" / "shop-1.6.0.tar.gz.sha256").write_text(hashlib.sha256(artifact.read_bytes()).hexdigest())
    config = {"version": 1, "app": "shop", "fleet": "fleet.yml", "state_dir": "state",
              "environments": {"next": env(), "production": env(**production)}}
    path = tmp_path / "lrelease.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Production requires next with a 30m soak."""
    return shop_project(tmp_path, requires={"env": "next", "soak": "30m"})


def run(project: Path, *args: str, actor: str = "alice"):
    return CliRunner(env={"LRELEASE_ACTOR": actor}).invoke(cli, [*args, "--config", str(project)])


def words(text: str) -> str:
    """The text with its line breaks (a terminal's wrapping) and runs of spaces as single spaces."""
    return " ".join(text.split())


def one_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def store(project: Path, clock) -> StateStore:
    return StateStore(project.parent / "state" / "lrelease.db", clock=clock)


def succeeded_on_next(project: Path, clock, build: str = "1.6.0") -> None:
    """Record 1.6.0's roll-out to next as succeeded now (what a deploy there leaves in the store)."""
    with store(project, clock) as s:
        r = s.start_rollout("next", build, "deploy", "alice")
        s.record_host(r.id, "node1", "gate_passed")
        s.finish_rollout(r.id, "succeeded", 0)


# -- captain --------------------------------------------------------------------------------------
def test_captain_set_show_and_clear(project, clock):
    # When carol makes alice production's captain for 8 hours
    done = run(project, "captain", "set", "alice", "--env", "production", "--until", "8h", "--reason", "release 1.6",
               actor="carol")
    assert done.exit_code == 0, done.output
    assert one_line(done) == "production's release captain is alice until 2026-12-01 06:00 UTC"
    # Then show lists her for production and nobody for next
    shown = json.loads(run(project, "captain", "show", "--json").output)
    assert shown["schema"] == "lrelease.captains/v1"
    by_env = {e["env"]: e for e in shown["environments"]}
    assert by_env["production"]["captain"] == {"env": "production", "name": "alice", "until": "2026-12-01T06:00:00.000Z",
                                               "reason": "release 1.6", "set_by": "carol",
                                               "set_at": "2026-11-30T22:00:00.000Z"}
    assert by_env["next"]["captain"] is None and by_env["next"]["env_paused"] is None
    assert "alice" in run(project, "captain", "show", "--env", "production").output
    # When the captaincy is cleared: nobody
    cleared = run(project, "captain", "clear", "--env", "production", actor="dave")
    assert cleared.exit_code == 0 and one_line(cleared) == "alice is no longer production's release captain"
    assert json.loads(run(project, "captain", "show", "--env", "production", "--json").output)[
        "environments"][0]["captain"] is None


@pytest.mark.parametrize("args, line", [
    (["captain", "set", "alice", "--env", "production", "--until", "2026-11-30T21:00Z"],
     "lrelease: error: --until: until: a time in the future, got '2026-11-30T21:00Z'"),
    (["captain", "set", "alice", "--env", "production", "--until", "tomorrow"],
     "lrelease: error: --until: until: an ISO 8601 time"),
    (["captain", "set", " ", "--env", "production"], "lrelease: error: NAME: captain: one line of printable text"),
    (["captain", "set", "alice", "--env", "staging"], "lrelease: error: "),
    (["pause", "--env", "production", "--reason", ""], "lrelease: error: --reason: reason: one line"),
    (["deploy", "--env", "production", "--build", "1.6.0", "--force", "--yes"],
     "lrelease: error: --force: --reason: a reason, recorded with the roll-out"),
    (["deploy", "--env", "production", "--build", "1.6.0", "--skip-next", "--reason", " ", "--yes"],
     "lrelease: error: --skip-next: --reason: a reason, recorded with the roll-out"),
    (["rollback", "--env", "production", "--force", "--yes"], "lrelease: error: --force: --reason: a reason"),
    (["resume", "--env", "production", "--force", "--yes"], "lrelease: error: --force: --reason: a reason"),
])
def test_bad_input_is_one_line_exit_2_and_records_nothing(project, clock, args, line):
    result = run(project, *args)
    assert result.exit_code == 2, result.output
    assert one_line(result).startswith(line), result.output
    db = project.parent / "state" / "lrelease.db"
    if db.exists():
        with store(project, clock) as s:
            assert s.captains() == [] and s.env_pauses() == [] and s.history() == []


# -- refusals ---------------------------------------------------------------------------------------
def test_a_deploy_by_someone_else_than_the_captain_is_refused_and_recorded(project, clock):
    # Given alice is next's captain until 06:00
    run(project, "captain", "set", "alice", "--env", "next", "--until", "2026-12-01T06:00:00Z", actor="carol")
    # When bob deploys to next
    result = run(project, "deploy", "--env", "next", "--build", "1.6.0", "--reason", "try", "--yes", actor="bob")
    # Then exit 4 with one line naming the captain and the way out
    assert result.exit_code == 4, result.output
    assert one_line(result) == ("lrelease: error: next's release captain is alice until 2026-12-01 06:00 UTC; bob is "
                                "not: ask alice, or add --force --reason \"...\" (recorded)")
    # And the history shows the refusal (no lock left, no host phase)
    history = json.loads(run(project, "history", "--json").output)["rollouts"]
    assert [(r["actor"], r["action"], r["status"], r["exit_code"]) for r in history] == [("bob", "deploy", "refused", 4)]
    assert history[0]["policy"]["refused"]["policy"] == "captain" and history[0]["hosts"] == {}
    with store(project, clock) as s:
        assert s.lock_holder("next") is None
    shown = run(project, "show", history[0]["id"])
    assert "refused by the release policies: next's release captain is alice" in shown.output


def test_a_paused_environment_refuses_a_deploy_naming_who_when_and_why(project, clock):
    # Given carol paused next at 22:00
    paused = run(project, "pause", "--env", "next", "--reason", "INC-42: hands off", actor="carol")
    assert paused.exit_code == 0 and "paused by carol since 2026-11-30 22:00 UTC: INC-42: hands off" in paused.output
    # When alice deploys there: exit 4 naming who paused, when and why
    clock.tick(minutes=5)
    result = run(project, "deploy", "--env", "next", "--build", "1.6.0", "--yes")
    assert result.exit_code == 4, result.output
    assert one_line(result) == ("lrelease: error: environment next is paused by carol since 2026-11-30 22:00 UTC "
                                "(INC-42: hands off): no roll-out starts there until `lrelease unpause --env next` "
                                "(a rollback still may)")
    # And captain show and plan say so
    assert json.loads(run(project, "captain", "show", "--env", "next", "--json").output)[
        "environments"][0]["env_paused"]["paused_by"] == "carol"
    assert "environment paused by carol since 2026-11-30 22:00 UTC: INC-42: hands off" in words(
        run(project, "plan", "--env", "next").output)
    # When unpaused: the pause is lifted
    lifted = run(project, "unpause", "--env", "next", actor="dave")
    assert lifted.exit_code == 0 and "no longer paused" in lifted.output
    assert json.loads(run(project, "captain", "show", "--env", "next", "--json").output)[
        "environments"][0]["env_paused"] is None


def test_next_before_production_refused_never_deployed_then_soaking_then_proven_in_plan(project, clock):
    # Given 1.6.0 was never deployed to next: production refuses it, saying so
    result = run(project, "deploy", "--env", "production", "--build", "1.6.0", "--yes")
    assert result.exit_code == 4, result.output
    assert one_line(result) == ("lrelease: error: 1.6.0 is not proven on next, which production requires first: 1.6.0 "
                                "was never deployed to next; deploy it there first, or add --skip-next --reason \"...\" "
                                "(recorded)")
    # When its roll-out to next succeeded 12 minutes ago: refused, soaking 12 of 30 minutes
    succeeded_on_next(project, clock)
    clock.tick(minutes=12)
    result = run(project, "deploy", "--env", "production", "--build", "1.6.0", "--yes")
    assert result.exit_code == 4 and "soaking on next: 12 of 30 minutes" in one_line(result)
    # And plan shows the evidence, as a line and in JSON
    plan = words(run(project, "plan", "--env", "production", "--build", "1.6.0").output)
    assert "requires next first (soak 30m): soaking on next: 12 of 30 minutes" in plan
    data = json.loads(run(project, "plan", "--env", "production", "--build", "1.6.0", "--json").output)
    evidence = data["policies"]["requires"]["evidence"]
    assert not evidence["proven"] and evidence["ran_seconds"] == 12 * 60
    assert "soaking" in data["policies"]["deploy_refused"]
    # When the soak is over: plan says proven, and a deploy would not be refused
    clock.tick(minutes=18)
    data = json.loads(run(project, "plan", "--env", "production", "--build", "1.6.0", "--json").output)
    assert data["policies"]["requires"]["evidence"]["proven"] and data["policies"]["deploy_refused"] is None
    assert "requires next first (soak 30m): proven on next: every host ran 1.6.0 for 30m after its roll-out " \
           "succeeded" in words(run(project, "plan", "--env", "production", "--build", "1.6.0").output)
    # And the refusals are in the history, each with what refused
    refused = json.loads(run(project, "history", "--env", "production", "--json").output)["rollouts"]
    assert [r["policy"]["refused"]["policy"] for r in refused] == ["requires", "requires"]


def test_a_config_whose_requires_names_no_environment_is_refused(project):
    config = yaml.safe_load(project.read_text())
    config["environments"]["production"]["requires"] = {"env": "staging"}
    project.write_text(yaml.safe_dump(config))
    result = run(project, "plan", "--env", "production")
    assert result.exit_code == 2
    assert "environments.production.requires.env: one of the environments of this file (next, production), " \
           "got 'staging'" in one_line(result)
    config["environments"]["next"]["requires"] = {"env": "production"}
    config["environments"]["production"]["requires"] = {"env": "next", "soak": "1 hour"}
    project.write_text(yaml.safe_dump(config))
    assert "environments.production.requires.soak: a duration such as 30m" in one_line(run(project, "plan", "--env",
                                                                                           "production"))
    config["environments"]["production"]["requires"] = {"env": "next"}
    project.write_text(yaml.safe_dump(config))
    assert "no loop of requires, got next -> production -> next" in one_line(run(project, "plan", "--env", "next"))


def test_resume_and_rollback_are_checked_too_and_a_refusal_leaves_them_to_do(project, clock):
    # Given a halted deploy of 1.6.0 on next (node1 passed its gate), and next paused, alice its captain
    with store(project, clock) as s:
        halted = s.start_rollout("next", "1.6.0", "deploy", "alice")
        s.record_host(halted.id, "node1", "gate_passed")
        s.finish_rollout(halted.id, "halted", 5)
    run(project, "pause", "--env", "next", "--reason", "looking at the halt", actor="carol")
    run(project, "captain", "set", "alice", "--env", "next", actor="carol")
    # When alice resumes it: refused, the environment is paused
    resumed = run(project, "resume", "--env", "next", "--yes")
    assert resumed.exit_code == 4 and "environment next is paused by carol" in one_line(resumed), resumed.output
    # When bob rolls it back (allowed on a paused environment, but alice owns next): refused naming her
    rolled = run(project, "rollback", "--env", "next", "--yes", actor="bob")
    assert rolled.exit_code == 4, rolled.output
    assert one_line(rolled).startswith("lrelease: error: next's release captain is alice; bob is not: ask alice")
    # Then both refusals are recorded, and the halted roll-out is still the one to resume or undo
    with store(project, clock) as s:
        assert [(r.action, r.status, r.actor) for r in s.history("next")] == [
            ("rollback", "refused", "bob"), ("resume", "refused", "alice"), ("deploy", "halted", "alice")]
        assert s.resumable("next").id == halted.id and s.to_undo("next").id == halted.id
        assert s.chain(halted.id) == [s.rollout(halted.id)] and s.lock_holder("next") is None


@pytest.mark.parametrize("command", [["captain", "set"], ["captain", "show"], ["captain", "clear"], ["pause"],
                                     ["unpause"]])
def test_the_policy_commands_show_examples_and_their_exit_codes(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert f"Examples:\n    lrelease {' '.join(command)}" in result.output
    assert "Exit codes:\n      0  success\n" in result.output and "\n      2  usage" in result.output


@pytest.mark.parametrize("command", ["deploy", "resume", "rollback"])
def test_the_roll_out_commands_offer_the_overrides(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert "--force" in result.output and ("--skip-next" in result.output) == (command == "deploy")
