"""Deploy windows in the release policies (lrelease/policies.py), pauses in wave lists (plan and
config), and the two statuses they end roll-outs with (migration 0004), with an injected clock, on
SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import yaml

from lrelease import statedb
from lrelease.config import load_config
from lrelease.errors import ConfigError
from lrelease.plan import plan_waves, skip_done, split_pauses
from lrelease.policies import PolicyRefused, check_start, decide, describe, short, window_closes
from lrelease.state import StateStore
from lrelease.window import parse_window
from tests.statedbs import raw
from tests.clock import Clock

# Monday 30 November 2026, 14:00 in Amsterdam: outside Sun-Thu 22:00-06:00
DAY = datetime(2026, 11, 30, 13, 0, tzinfo=timezone.utc)
NIGHT = datetime(2026, 11, 30, 21, 30, tzinfo=timezone.utc)  # 22:30 local: inside
NIGHTS = parse_window("Europe/Amsterdam", ["Sun-Thu 22:00-06:00"])


@pytest.fixture
def clock():
    return Clock(DAY)


@pytest.fixture
def store(state_db, clock):
    with StateStore(state_db, clock=clock) as s:
        yield s


# -- the window policy --------------------------------------------------------------------------
def test_outside_its_window_a_deploy_and_a_resume_are_refused_saying_when_it_opens(store):
    # Given production's window Sun-Thu 22:00-06:00 in Amsterdam, and Monday 14:00 there
    for action in ("deploy", "resume"):
        # When bob starts a roll-out: refused by the window, saying when it next opens
        with pytest.raises(PolicyRefused) as refused:
            check_start(store, "production", actor="bob", action=action, window=NIGHTS, build="1.6.0")
        assert refused.value.policy == "window" and int(refused.value.exit_code) == 4
        assert str(refused.value) == (
            "production's deploy window is closed at Mon 2026-11-30 14:00 Europe/Amsterdam (window: Sun-Thu "
            "22:00-06:00 (Europe/Amsterdam)); it next opens Mon 2026-11-30 22:00 Europe/Amsterdam (2026-11-30 21:00 "
            "UTC); outside it only the release captain starts a roll-out, with --hotfix --reason \"...\" (recorded)")


def test_inside_its_window_a_deploy_goes_ahead_and_a_rollback_is_never_refused(store, clock):
    # Given 22:30 local: open, closing at 06:00 local (05:00 UTC)
    clock.now = NIGHT
    assert decide(store, "production", actor="bob", action="deploy", window=NIGHTS).refused is None
    assert window_closes(type("Env", (), {"window": NIGHTS})(), NIGHT) == datetime(2026, 12, 1, 5, 0, tzinfo=timezone.utc)
    # And at 14:00 a rollback (a way out of trouble) is not refused by the window
    clock.now = DAY
    assert decide(store, "production", actor="bob", action="rollback", window=NIGHTS).refused is None


def test_a_hotfix_is_the_captains_alone_and_recorded(store):
    store.set_captain("production", "alice", set_by="carol")
    # When bob (not the captain) asks for a hot-fix, even with --force: refused by the window, naming alice
    bob = decide(store, "production", actor="bob", action="deploy", window=NIGHTS, hotfix_reason="INC-42",
                 force_reason="alice is asleep")
    assert bob.policy == "window"
    assert bob.refused.endswith("; --hotfix is for production's release captain, alice; bob is not")
    # When alice asks without --hotfix: refused; with it and a reason: let through, recorded
    assert decide(store, "production", actor="alice", action="deploy", window=NIGHTS).policy == "window"
    ok = decide(store, "production", actor="alice", action="deploy", window=NIGHTS, hotfix_reason="INC-42 checkout down")
    assert ok.refused is None
    assert ok.record["hotfix"] == {"captain": "alice", "reason": "INC-42 checkout down",
                                   "at": "Mon 2026-11-30 14:00 Europe/Amsterdam",
                                   "window": "Sun-Thu 22:00-06:00 (Europe/Amsterdam)",
                                   "next_open": "Mon 2026-11-30 22:00 Europe/Amsterdam (2026-11-30 21:00 UTC)"}
    # Then show and history say so
    assert short(ok.record) == "--hotfix"
    assert describe(ok.record) == ["--hotfix by the release captain alice outside the deploy window (at Mon 2026-11-30 "
                                   "14:00 Europe/Amsterdam; window Sun-Thu 22:00-06:00 (Europe/Amsterdam)): "
                                   "INC-42 checkout down"]


def test_a_hotfix_without_a_captain_is_refused_saying_how_to_get_one(store):
    refused = decide(store, "production", actor="alice", action="deploy", window=NIGHTS, hotfix_reason="INC-42")
    assert refused.policy == "window"
    assert refused.refused.endswith("; --hotfix is for production's release captain and it has none "
                                    "(`lrelease captain set NAME --env production`)")


def test_the_environment_pause_and_the_captain_are_checked_before_the_window(store):
    store.set_captain("production", "alice", set_by="carol")
    assert decide(store, "production", actor="bob", action="deploy", window=NIGHTS).policy == "captain"
    store.pause_env("production", paused_by="carol", reason="INC-7")
    assert decide(store, "production", actor="alice", action="deploy", window=NIGHTS,
                  hotfix_reason="x").policy == "env_paused"


# -- pauses in wave lists -----------------------------------------------------------------------
def test_pause_markers_split_from_the_waves():
    assert split_pauses([1, "pause", "50%", "100%"]) == ((1, "50%", "100%"), (1,))
    assert split_pauses([1, "pause", 2, "pause", "100%"]) == ((1, 2, "100%"), (1, 2))
    assert split_pauses([1, "100%"]) == ((1, "100%"), ())
    for bad in (["pause", 1], [1, "pause"], [1, "pause", "pause", 2]):
        with pytest.raises(ValueError, match="a pause stands between two waves"):
            split_pauses(bad)


def test_a_plan_keeps_its_pauses_and_a_resume_drops_the_one_behind_it():
    hosts = [f"n{i}" for i in range(1, 7)]
    plan = plan_waves(hosts, [1, "50%", "100%"], pauses=(1, 2))
    assert [w.hosts for w in plan.waves] == [("n1",), ("n2", "n3", "n4"), ("n5", "n6")]
    assert plan.pauses == (1, 2) and plan.to_dict()["pauses"] == [1, 2]
    # When the canary is done (promoted past the first pause): the second pause follows its wave, now the first
    resumed = skip_done(plan, ["n1"])
    assert [w.hosts for w in resumed.waves] == [("n2", "n3", "n4"), ("n5", "n6")] and resumed.pauses == (1,)
    # A wave half done keeps its pause; a pause after the last wave (a small fleet) is dropped
    assert skip_done(plan, ["n1", "n2"]).pauses == (1,)
    assert plan_waves(["n1", "n2"], [1, "50%", "100%"], pauses=(1, 2)).pauses == (1,)
    assert plan_waves(["n1"], [1, "100%"], pauses=(1,)).pauses == ()


def _config(tmp_path: Path, **env) -> Path:
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump({"nodes": {"node1": {"environment": "production",
                                                                             "address": "192.0.2.1"}}}))
    path = tmp_path / "lrelease.yml"
    path.write_text(yaml.safe_dump({"version": 1, "app": "shop", "fleet": "fleet.yml", "environments": {
        "production": {"deploy_root": "/srv/shop", "service": {"systemd": "shop"}, **env}}}, sort_keys=False))
    return path


def test_config_reads_the_window_and_the_pauses(tmp_path):
    path = _config(tmp_path, waves=[1, "pause", "50%", "100%"], window={
        "timezone": "Europe/Amsterdam", "weekly": ["Sun-Thu 22:00-06:00"], "freeze": ["2026-12-24..2026-12-26"]})
    env = load_config(path).environment("production")
    assert env.waves == (1, "50%", "100%") and env.pauses == (1,)
    assert env.playbook_vars()["lrelease_waves"] == [1, "50%", "100%"]  # a pause is no serial value
    assert env.window == parse_window("Europe/Amsterdam", ["Sun-Thu 22:00-06:00"], ["2026-12-24..2026-12-26"])
    canary = load_config(_config(tmp_path, waves=[1, 2, "100%"], pause_after_canary=True)).environment("production")
    assert canary.waves == (1, 2, "100%") and canary.pauses == (1,)
    # Defaults: no window (always open), no pause
    plain = load_config(_config(tmp_path)).environment("production")
    assert plain.window is None and plain.pauses == ()


@pytest.mark.parametrize("env, key, expected", [
    ({"waves": [1, "pause"]}, "environments.production.waves",
     "a pause stands between two waves (not first, not last, never two in a row), got [1, 'pause']"),
    ({"waves": [1, "stop", 2]}, "environments.production.waves[1]", "or pause between two waves, got 'stop'"),
    ({"window": {"timezone": "Europe/Amsterdamm"}}, "environments.production.window.timezone",
     "an IANA time zone name such as Europe/Amsterdam or UTC, got 'Europe/Amsterdamm'"),
    ({"window": {"timezone": "UTC", "weekly": ["Sun-Thu 22:00-6"]}}, "environments.production.window.weekly[0]",
     'a rule such as "Sun-Thu 22:00-06:00"'),
    ({"window": {"timezone": "UTC", "freeze": ["2026-12-26..2026-12-24"]}}, "environments.production.window.freeze[0]",
     "its end not before its start, got '2026-12-26..2026-12-24'"),
    ({"window": {"weekly": ["daily 22:00-06:00"]}}, "environments.production.window.timezone", "required"),
    ({"pause_after_canary": "yes"}, "environments.production.pause_after_canary", "true or false"),
])
def test_a_bad_window_or_pause_is_one_line_naming_the_key(tmp_path, env, key, expected):
    path = _config(tmp_path, **env)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: {key}: "), message
    assert expected in message, message


# -- the statuses -------------------------------------------------------------------------------
def test_a_roll_out_can_end_paused_or_awaiting_promotion_and_is_resumable(store):
    for status in ("paused", "awaiting_promotion"):
        r = store.start_rollout("production", "1.6.0", "deploy", "alice")
        store.finish_rollout(r.id, status, 5)
        assert store.resumable("production").id == r.id
        assert store.to_undo("production").id == r.id


def test_migration_0004_upgrades_a_schema_4_sqlite_file_keeping_its_rows_and_order(tmp_path):
    # Given a database at revision 0003 (schema 4) with two roll-outs and a host event
    path = tmp_path / "lrelease.db"
    engine_db = statedb.connect(statedb.locate(str(path)))
    try:
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(statedb.__file__).parent / "migrations"))
        with engine_db.begin():
            config.attributes["connection"] = engine_db
            command.upgrade(config, "0003_release_policies")
    finally:
        engine_db.close()
    db = sqlite3.connect(path)
    for rid, started in (("b", "2020-01-01T10:00:00.000Z"), ("a", "2020-01-01T10:00:00.000Z")):
        db.execute("INSERT INTO rollouts (id, env, build, action, status, actor, started_at, pid, hostname) "
                   "VALUES (?, 'production', '1.5.0', 'deploy', 'succeeded', 'alice', ?, 1, 'h')", (rid, started))
    db.execute("INSERT INTO host_events (rollout_id, host, phase, at) VALUES ('a', 'node1', 'switched', 'x')")
    db.commit()
    with pytest.raises(sqlite3.IntegrityError):  # schema 4 refuses the new status
        db.execute("UPDATE rollouts SET status = 'paused' WHERE id = 'a'")
    db.close()
    # When a store opens it: upgraded in place
    with StateStore(path) as store:
        assert store.schema_version() == statedb.SCHEMA_VERSION
        # Then the rows, their order (seq) and the references are kept, and the new statuses are accepted
        assert [r.id for r in store.history("production")] == ["a", "b"]
        new = store.start_rollout("production", "1.6.0", "deploy", "alice")
        store.finish_rollout(new.id, "awaiting_promotion", 5)
        assert store.history("production")[0].id == new.id
    assert raw(path, "SELECT rollout_id FROM host_events") == [("a",)]
    assert raw(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('rollouts_by_env', 'rollouts_seq')") == [(2,)]
    assert raw(path, "PRAGMA foreign_key_check") == []
    with pytest.raises(sa.exc.IntegrityError):
        raw(path, "UPDATE rollouts SET status = 'nonsense' WHERE id = 'a'")


# -- the wrapper's stop request -----------------------------------------------------------------
def test_the_wrappers_stop_request_follows_the_caller_and_a_lost_lock():
    from lrelease.rollout import _Stop
    from lrelease.runner import StopRequest

    # Given a run holding its lock: no stop until asked
    lock = SimpleNamespace(lost=None)
    caller = StopRequest()
    asked = _Stop(caller, lock)
    assert asked.level == 0
    # When the caller presses Ctrl-C: a stop at a safe point, the caller's (the roll-out then ends interrupted)
    caller.escalate()
    assert asked.level == StopRequest.STOP and asked.caller_level == StopRequest.STOP and not asked.cancel_requested
    # And a run whose lock was lost stops at the next safe point, though nobody asked
    lost = _Stop(StopRequest(), SimpleNamespace(lost="taken over"))
    assert lost.level == StopRequest.STOP and lost.caller_level == 0


def test_a_pause_and_a_window_close_are_the_playbooks_own_stops():
    from lrelease.rollout import _at_pause, _pause_before, _window_closed
    from lrelease.runner import RunResult

    # Given waves [1, pause, 1, 100%] over four hosts: the playbook holds back every host after the pause
    plan = plan_waves(["a", "b", "c", "d"], [1, 1, "100%"], pauses=(1,))
    assert _pause_before(plan) == ["b", "c", "d"]
    assert _pause_before(plan_waves(["a", "b"], [1, "100%"])) == []
    # And only a stop whose reason names the pause is one (a Ctrl-C's stop or a failure is not);
    # likewise a stop because the deploy window closed
    paused_here = RunResult(stopped=True, stop_reason="awaiting promotion: a pause of the waves comes before b")
    closed = RunResult(stopped=True, stop_reason="window closed: the deploy window of production closed at "
                                                 "2026-12-01T05:00:00+00:00")
    assert _at_pause(paused_here) and not _window_closed(paused_here)
    assert _window_closed(closed) and not _at_pause(closed)
    for other in (RunResult(stopped=True, stop_reason="stop requested"), RunResult(stopped=False, stop_reason="")):
        assert not _at_pause(other) and not _window_closed(other)


def test_the_playbook_gets_the_window_close_on_the_controllers_clock():
    from lrelease.rollout import Releaser

    # Given a store whose (injected) clock reads 05:55 UTC while the close is 06:00: five minutes from now
    store_now = datetime(2026, 12, 1, 5, 55, tzinfo=timezone.utc)
    fake = SimpleNamespace(store=SimpleNamespace(clock=lambda: store_now))
    before = datetime.now(timezone.utc)
    handed = datetime.fromisoformat(Releaser._on_controller_clock(fake, store_now + timedelta(minutes=5)))
    after = datetime.now(timezone.utc)
    # Then the playbook's check is handed five minutes from now on the controller's clock, to the second
    second = timedelta(seconds=1)
    assert before + timedelta(minutes=5) - second <= handed <= after + timedelta(minutes=5) + second
    assert handed.microsecond == 0
