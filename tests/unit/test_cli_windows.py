"""Deploy windows and pause/promote from the CLI, with an injected clock: a deploy or resume refused
outside the window (exit 4, one line saying when it opens, recorded), `plan` showing the window
against the estimate (and warning) and the pauses, `promote`/`abort`/`resume` refusing what they
cannot do (exit 2), a hot-fix shown in `history` and `show`.

Refusals stop before any host is reached, so these need no sandbox (the fleet's addresses are
never dialled); tests/rollout/test_windows.py runs the accepted roll-outs."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.state import StateStore
from tests.clock import injected
from tests.unit.test_cli_policies import one_line, shop_project, words

DAY = datetime(2026, 11, 30, 13, 0, tzinfo=timezone.utc)  # Monday 14:00 in Amsterdam
WINDOW = {"timezone": "Europe/Amsterdam", "weekly": ["Sun-Thu 22:00-06:00"], "freeze": ["2026-12-24..2026-12-26"]}


@pytest.fixture
def clock(monkeypatch):
    return injected(monkeypatch, DAY)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Production (waves [1, pause, 100%]) with a night window."""
    return shop_project(tmp_path, window=WINDOW, waves=[1, "pause", "100%"], bake_seconds=1)


def run(project: Path, *args: str, actor: str = "alice"):
    return CliRunner(env={"LRELEASE_ACTOR": actor}).invoke(cli, [*args, "--config", str(project)])


def store(project: Path, clock) -> StateStore:
    return StateStore(project.parent / "state" / "lrelease.db", clock=clock)


def test_outside_the_window_a_deploy_is_refused_saying_when_it_opens_and_recorded(project, clock):
    # When alice deploys to production on Monday at 14:00 (its window is Sun-Thu 22:00-06:00)
    result = run(project, "deploy", "--env", "production", "--build", "1.6.0", "--yes")
    # Then exit 4, one line: closed, when it opens, the captain's way out
    assert result.exit_code == 4, result.output
    assert one_line(result) == (
        "lrelease: error: production's deploy window is closed at Mon 2026-11-30 14:00 Europe/Amsterdam (window: "
        "Sun-Thu 22:00-06:00 (Europe/Amsterdam), freeze 2026-12-24..2026-12-26); it next opens Mon 2026-11-30 22:00 "
        "Europe/Amsterdam (2026-11-30 21:00 UTC); outside it only the release captain starts a roll-out, with "
        "--hotfix --reason \"...\" (recorded)")
    # And the refusal is in the history (status refused: window), no lock left
    history = json.loads(run(project, "history", "--json").output)["rollouts"]
    assert [(r["action"], r["status"], r["policy"]["refused"]["policy"]) for r in history] == [
        ("deploy", "refused", "window")]
    assert "refused (window)" in words(run(project, "history", "--env", "production").output)
    # And next (no window) is not refused by it: plan says a deploy there would go ahead
    assert json.loads(run(project, "plan", "--env", "next", "--build", "1.6.0", "--json").output)[
        "policies"]["deploy_refused"] is None


def test_a_hotfix_by_someone_else_than_the_captain_is_refused_and_without_a_reason_is_bad_input(project, clock):
    run(project, "captain", "set", "alice", "--env", "production", actor="carol")
    no_reason = run(project, "deploy", "--env", "production", "--build", "1.6.0", "--hotfix", "--yes")
    assert no_reason.exit_code == 2 and one_line(no_reason).startswith(
        "lrelease: error: --hotfix: --reason: a reason, recorded with the roll-out"), no_reason.output
    bob = run(project, "deploy", "--env", "production", "--build", "1.6.0", "--hotfix", "--force", "--reason", "INC-9",
              "--yes", actor="bob")
    assert bob.exit_code == 4, bob.output
    assert one_line(bob).endswith("; --hotfix is for production's release captain, alice; bob is not")


def test_plan_shows_the_window_against_the_estimate_and_the_pauses(project, clock):
    # Given Monday 14:00: closed; a roll-out started at 22:00 ends within minutes: it fits
    data = json.loads(run(project, "plan", "--env", "production", "--json").output)
    window = data["window"]
    assert (window["open"], window["starts_at"], window["closes_at"], window["fits"], window["warning"]) == (
        False, "2026-11-30T21:00:00.000Z", "2026-12-01T05:00:00.000Z", True, None)
    assert data["pauses"] == [1] and [w["hosts"] for w in data["waves"]] == [["node2"], ["node3"]]
    shown = words(run(project, "plan", "--env", "production").output)
    assert ("deploy window Sun-Thu 22:00-06:00 (Europe/Amsterdam), freeze 2026-12-24..2026-12-26: closed now; opens "
            "Mon 2026-11-30 22:00 Europe/Amsterdam, closes Tue 2026-12-01 06:00 Europe/Amsterdam; a roll-out started "
            "when it opens ends about Mon 2026-11-30 22:0") in shown
    assert re.search(r"\bpause\W+awaits promotion\W+2\W+node3", shown), shown
    assert ("pause after wave 1: the roll-out stops there once the wave is judged, awaiting promotion (exit 5): "
            "`lrelease promote --env production` goes on, `lrelease abort --env production` rolls back what it "
            "switched") in shown
    assert 'plan: <build> to production (2 hosts, waves [1, pause, "100%"])' in shown
    # When it is 05:59 on Tuesday: open; the usual 27 s fit in the minute left, the longest 87 s do not
    assert (data["estimate_seconds"], data["estimate_max_seconds"]) == (27, 87)
    clock.now = datetime(2026, 12, 1, 4, 59, 0, tzinfo=timezone.utc)
    data = json.loads(run(project, "plan", "--env", "production", "--json").output)
    assert data["window"]["open"] and data["window"]["fits"] and not data["window"]["fits_max"]
    assert data["window"]["warning"] == ("at its longest (1m27s) the roll-out would not finish in the 1m the window "
                                         "leaves: it would then pause at a wave boundary (exit 5)")
    # When it is 05:59:50: not even the usual time fits
    clock.now = datetime(2026, 12, 1, 4, 59, 50, tzinfo=timezone.utc)
    data = json.loads(run(project, "plan", "--env", "production", "--json").output)
    assert data["window"]["open"] and not data["window"]["fits"]
    assert data["window"]["warning"].startswith("the roll-out usually takes ")
    assert "it would pause at a wave boundary when the window closes (exit 5; `lrelease resume` in the next " \
           "window)" in data["window"]["warning"]
    assert "warning: the roll-out usually takes" in words(run(project, "plan", "--env", "production").output)


def test_promote_abort_and_resume_say_what_they_cannot_do(project, clock):
    clock.now = datetime(2026, 11, 30, 21, 30, tzinfo=timezone.utc)  # inside the window
    # Given nothing awaits promotion: promote and abort exit 2 saying so, recording nothing
    for command in ("promote", "abort"):
        result = run(project, command, "--env", "production", "--yes")
        assert result.exit_code == 2, result.output
        assert one_line(result) == ("lrelease: error: nothing awaits promotion in production: no roll-out stopped at "
                                    "a pause of its waves")
    # Given a roll-out awaiting promotion (node2 judged): resume points at promote and abort
    with store(project, clock) as s:
        waiting = s.start_rollout("production", "1.6.0", "deploy", "alice")
        s.record_host(waiting.id, "node2", "gate_passed")
        s.finish_rollout(waiting.id, "awaiting_promotion", 5)
    resumed = run(project, "resume", "--env", "production", "--yes")
    assert resumed.exit_code == 2, resumed.output
    assert one_line(resumed) == (f"lrelease: error: roll-out {waiting.id} of 1.6.0 to production awaits promotion: "
                                 "`lrelease promote --env production` goes on, `lrelease abort --env production` "
                                 "rolls it back")
    # And outside the window (Tuesday 14:00) a promotion is refused like a resume (exit 4), recorded
    clock.now = datetime(2026, 12, 1, 13, 0, tzinfo=timezone.utc)
    promoted = run(project, "promote", "--env", "production", "--yes")
    assert promoted.exit_code == 4 and "production's deploy window is closed" in one_line(promoted), promoted.output
    with store(project, clock) as s:
        assert [(r.action, r.status) for r in s.history("production")] == [("resume", "refused"),
                                                                         ("deploy", "awaiting_promotion")]
        assert s.resumable("production").id == waiting.id
    # And history shows the status, show what to do with it
    assert "awaiting_promotion" in run(project, "history", "--env", "production").output
    assert ("next awaiting promotion: `lrelease promote --env production` goes on, `lrelease abort --env production` "
            "rolls back what it switched") in words(run(project, "show", waiting.id).output)


def test_history_and_show_say_a_roll_out_went_ahead_as_a_hotfix(project, clock):
    with store(project, clock) as s:
        r = s.start_rollout("production", "1.6.0", "deploy", "alice", policy={"hotfix": {
            "captain": "alice", "reason": "INC-42", "at": "Mon 2026-11-30 14:00 Europe/Amsterdam",
            "window": "Sun-Thu 22:00-06:00 (Europe/Amsterdam)", "next_open": "x"}})
        s.finish_rollout(r.id, "succeeded", 0)
    assert "succeeded (--hotfix)" in words(run(project, "history", "--env", "production").output)
    assert "--hotfix by the release captain alice outside the deploy window (at Mon 2026-11-30 14:00 " \
           "Europe/Amsterdam; window Sun-Thu 22:00-06:00 (Europe/Amsterdam)): INC-42" in words(
               run(project, "show", r.id).output)


@pytest.mark.parametrize("command", ["promote", "abort"])
def test_promote_and_abort_show_examples_and_every_exit_code(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert f"lrelease {command} --env" in result.output
    assert "Exit codes:\n      0  success\n" in result.output and "awaiting promotion" in result.output
