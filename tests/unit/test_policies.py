"""The release policies (lrelease/policies.py) over the state store, on SQLite and PostgreSQL:
release captains, environment pauses and Next before production, with an injected clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from lrelease.config import Requirement
from lrelease.errors import ExitCode
from lrelease.policies import PolicyRefused, check_start, decide, next_evidence
from lrelease.state import StateStore
from tests.statedbs import raw
from tests.clock import Clock

T0 = datetime(2026, 11, 30, 22, 0, 0, tzinfo=timezone.utc)
NEXT = Requirement("next", 30 * 60)


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def store(state_db, clock):
    with StateStore(state_db, clock=clock) as s:
        yield s


def refusal(store, env="production", **kw) -> PolicyRefused:
    kw.setdefault("actor", "bob")
    kw.setdefault("action", "deploy")
    with pytest.raises(PolicyRefused) as err:
        check_start(store, env, **kw)
    assert err.value.exit_code == ExitCode.REFUSED == 4
    assert "\n" not in str(err.value)
    return err.value


def rollout(store, clock, env, build, *, status="succeeded", action="deploy", minutes=5, **kw):
    """A roll-out recorded as it happens: started now, ended ``minutes`` later (the clock moves on)."""
    r = store.start_rollout(env, build, action, "alice", **kw)
    clock.tick(minutes=minutes)
    return store.finish_rollout(r.id, status, 0 if status == "succeeded" else 1)


# -- release captain -----------------------------------------------------------------------------
def test_nothing_refuses_where_no_policy_is_set(store):
    # Given an environment with no captain, no pause; when anyone starts anything there, it is allowed
    for action in ("deploy", "resume", "rollback"):
        assert check_start(store, "production", actor="bob", action=action) is None


def test_a_captain_owns_the_roll_outs_of_the_environment(store, clock):
    # Given alice is production's captain until 06:00 UTC
    store.set_captain("production", "alice", set_by="carol", until=T0 + timedelta(hours=8), reason="release 1.6")
    # When bob deploys, resumes or rolls back: refused, naming the captain, until when and the way out
    for action in ("deploy", "resume", "rollback"):
        err = refusal(store, actor="bob", action=action)
        assert err.policy == "captain"
        assert str(err) == ("production's release captain is alice until 2026-12-01 06:00 UTC; bob is not: ask alice, "
                            "or add --force --reason \"...\" (recorded)")
    # When alice does, or bob with --force and a reason: allowed, and the override is what gets recorded
    assert check_start(store, "production", actor="alice", action="deploy") is None
    forced = decide(store, "production", actor="bob", action="deploy", force_reason="alice is asleep, INC-7")
    assert forced.refused is None
    assert forced.record == {"forced": {"captain": "alice", "reason": "alice is asleep, INC-7"}}
    # And another environment is not hers
    assert check_start(store, "next", actor="bob", action="deploy") is None


def test_an_expired_or_cleared_captaincy_is_no_captain(store, clock, state_db):
    # Given alice was captain for an hour
    store.set_captain("production", "alice", set_by="carol", until=T0 + timedelta(hours=1))
    assert store.captain("production").name == "alice"
    # When the hour is over: no captain, anyone may deploy
    clock.tick(hours=1)
    assert store.captain("production") is None and store.captains() == []
    assert check_start(store, "production", actor="bob", action="deploy") is None
    # When bob is made captain, then cleared: no captain again, and both changes stay in the audit trail
    store.set_captain("production", "bob", set_by="carol")
    assert [c.name for c in store.captains()] == ["bob"] and store.captain("production").until is None
    assert store.clear_captain("production", cleared_by="dave").name == "bob"
    assert store.captain("production") is None and store.clear_captain("production", cleared_by="dave") is None
    rows = raw(state_db, "SELECT name, set_by, cleared_by FROM captains ORDER BY seq")
    assert rows == [("alice", "carol", "carol"), ("bob", "carol", "dave")]


def test_a_captaincy_cannot_end_in_the_past(store):
    with pytest.raises(ValueError, match="future"):
        store.set_captain("production", "alice", set_by="carol", until=T0 - timedelta(minutes=1))
    assert store.captain("production") is None


def test_an_environment_that_requires_a_captain_refuses_without_one(store):
    # Given `captain: required` and no captain set
    err = refusal(store, captain_required=True)
    assert str(err) == ("production needs a release captain and has none: `lrelease captain set NAME --env production`,"
                        " or add --force --reason \"...\" (recorded)")
    # When forced with a reason: allowed and recorded
    forced = decide(store, "production", actor="bob", action="deploy", captain_required=True, force_reason="first one")
    assert forced.refused is None and forced.record == {"forced": {"captain": None, "reason": "first one"}}


# -- environment pause ----------------------------------------------------------------------------
def test_a_paused_environment_starts_no_roll_out_but_a_rollback(store, clock, state_db):
    # Given carol paused production
    store.pause_env("production", paused_by="carol", reason="incident INC-42")
    # When anyone deploys or resumes there, even its captain: refused naming who, when and why
    store.set_captain("production", "alice", set_by="carol")
    for actor, action in (("alice", "deploy"), ("alice", "resume"), ("bob", "deploy")):
        err = refusal(store, actor=actor, action=action, force_reason="no")
        assert err.policy == "env_paused"
        assert str(err) == ("environment production is paused by carol since 2026-11-30 22:00 UTC (incident INC-42): "
                            "no roll-out starts there until `lrelease unpause --env production` (a rollback still may)")
    # When the captain rolls back: allowed (it is how one gets out of trouble)
    assert check_start(store, "production", actor="alice", action="rollback") is None
    # When it is unpaused: deploys start again, and the pause stays in the audit trail
    clock.tick(minutes=30)
    assert store.unpause_env("production", unpaused_by="dave").reason == "incident INC-42"
    assert store.env_pause("production") is None and store.unpause_env("production", unpaused_by="dave") is None
    assert check_start(store, "production", actor="alice", action="deploy") is None
    assert raw(state_db, "SELECT paused_by, unpaused_by, unpaused_at FROM env_pauses") == [
        ("carol", "dave", "2026-11-30T22:30:00.000Z")]


def test_pausing_a_paused_environment_keeps_the_first_pause(store, clock):
    first = store.pause_env("production", paused_by="carol", reason="one")
    clock.tick(minutes=1)
    assert store.pause_env("production", paused_by="dave", reason="two") == first
    assert store.env_pauses() == [first]


def test_an_unknown_action_is_a_bug_not_a_refusal(store):
    with pytest.raises(ValueError, match="action must be one of"):
        check_start(store, "production", actor="bob", action="promote")


# -- Next before production --------------------------------------------------------------------
def test_a_build_never_on_next_is_refused_with_what_is_missing(store, clock):
    # Given 1.5.0 went to next, 1.6.0 never did
    rollout(store, clock, "next", "1.5.0")
    # When 1.6.0 is deployed to production (which requires next, soak 30m)
    err = refusal(store, build="1.6.0", requires=NEXT)
    # Then refused: the build, where it must be proven and what is missing, and the way out
    assert err.policy == "requires"
    assert str(err) == ("1.6.0 is not proven on next, which production requires first: 1.6.0 was never deployed to "
                        "next; deploy it there first, or add --skip-next --reason \"...\" (recorded)")


def test_a_build_still_soaking_is_refused_then_accepted_after_the_soak(store, clock):
    # Given 1.6.0's roll-out to next succeeded, 12 minutes ago
    rollout(store, clock, "next", "1.6.0")
    clock.tick(minutes=12)
    # Then production refuses it: soaking, 12 of 30 minutes
    assert "1.6.0 is not proven on next, which production requires first: soaking on next: 12 of 30 minutes" in \
        str(refusal(store, build="1.6.0", requires=NEXT))
    # When the soak is over (30 minutes after the success): accepted, with the evidence kept for the record
    clock.tick(minutes=18)
    decision = decide(store, "production", actor="bob", action="deploy", build="1.6.0", requires=NEXT)
    assert decision.refused is None
    evidence = decision.record["requires"]
    assert evidence["proven"] and evidence["ran_seconds"] == 1800 and evidence["soak"] == "30m"
    assert evidence["detail"] == "proven on next: every host ran 1.6.0 for 30m after its roll-out succeeded (soak 30m)"
    # And the check applies to deploys only: a resume continues what was let through, a rollback goes back
    for action in ("resume", "rollback"):
        assert check_start(store, "production", actor="bob", action=action, build="1.7.0", requires=NEXT) is None


def test_skip_next_lets_an_unproven_build_through_and_says_what_was_missing(store):
    decision = decide(store, "production", actor="bob", action="deploy", build="1.6.0", requires=NEXT,
                      skip_next_reason="security fix CVE-1")
    assert decision.refused is None
    assert decision.record["skipped_next"] == {"requires": "next", "missing": "1.6.0 was never deployed to next",
                                               "reason": "security fix CVE-1"}


@pytest.mark.parametrize("after, detail", [
    ("rollback", "1.6.0 is not live on next: it was rolled back there at 2026-11-30 22:45 UTC"),
    ("failed", "1.6.0 is not live on next: its roll-out"),
    ("replaced", "1.6.0 ran on next only 10 of 30 minutes before 1.7.0 replaced it"),
])
def test_a_rollback_a_failure_or_a_short_run_since_leaves_it_unproven(store, clock, after, detail):
    # Given 1.6.0 succeeded on next at 22:05 and ran 10 minutes
    first = rollout(store, clock, "next", "1.6.0")
    clock.tick(minutes=10)
    # When, at 22:15 (and for 30 minutes), it was rolled back, failed a second roll-out, or 1.7.0 replaced it
    if after == "rollback":
        clock.tick(minutes=30)
        rollout(store, clock, "next", "1.5.0", action="rollback", undoes=first.id)
    elif after == "failed":
        rollout(store, clock, "next", "1.6.0", status="rolled_back")
    else:
        rollout(store, clock, "next", "1.7.0")
    clock.tick(hours=2)
    # Then it is not proven, and the refusal says why
    evidence = next_evidence(store, "1.6.0", NEXT)
    assert not evidence.proven and evidence.detail.startswith(detail), evidence.detail


def test_a_build_proven_then_replaced_stays_proven_and_a_new_success_proves_again(store, clock):
    # Given 1.6.0 ran 40 minutes on next, then 1.7.0 replaced it: 1.6.0 is still proven
    rollout(store, clock, "next", "1.6.0")
    clock.tick(minutes=40)
    rollout(store, clock, "next", "1.7.0")
    assert next_evidence(store, "1.6.0", NEXT).proven
    # Given 1.8.0 was rolled back on next, then deployed again and soaked: proven again
    bad = rollout(store, clock, "next", "1.8.0")
    rollout(store, clock, "next", "1.7.0", action="rollback", undoes=bad.id)
    assert not next_evidence(store, "1.8.0", NEXT).proven
    rollout(store, clock, "next", "1.8.0")
    clock.tick(minutes=31)
    assert next_evidence(store, "1.8.0", NEXT).proven


def test_a_refused_or_unfinished_roll_out_on_next_proves_nothing(store, clock):
    rollout(store, clock, "next", "1.6.0", status="refused")
    assert next_evidence(store, "1.6.0", NEXT).detail == "1.6.0 was never deployed to next"
    store.start_rollout("next", "1.6.0", "deploy", "alice")
    clock.tick(hours=1)
    evidence = next_evidence(store, "1.6.0", NEXT)
    assert not evidence.proven
    assert evidence.detail == "1.6.0 has not completed a roll-out on next (its last ended running)"


def test_the_policy_of_a_roll_out_is_kept_in_its_row(store):
    # Given a roll-out started with an override
    r = store.start_rollout("production", "1.6.0", "deploy", "bob", reason="hotfix",
                            policy={"forced": {"captain": "alice", "reason": "hotfix"}})
    # Then its row keeps it, and history returns it
    assert store.rollout(r.id).policy == {"forced": {"captain": "alice", "reason": "hotfix"}}
    assert store.history("production")[0].to_dict()["policy"] == {"forced": {"captain": "alice", "reason": "hotfix"}}
    # And a roll-out without one has none
    assert store.start_rollout("production", "1.6.1", "deploy", "bob").policy is None


def test_a_roll_out_halted_then_resumed_soaks_from_the_resume_s_end_and_its_rollback_counts(store, clock):
    # Given 1.6.0's deploy to next halted, and its resume succeeded 20 minutes later
    halted = rollout(store, clock, "next", "1.6.0", status="halted")
    clock.tick(minutes=20)
    rollout(store, clock, "next", "1.6.0", action="resume", resumes=halted.id)
    # Then it soaks from the resume's end: 31 minutes later it is proven
    clock.tick(minutes=29)
    assert next_evidence(store, "1.6.0", NEXT).detail == "soaking on next: 29 of 30 minutes"
    clock.tick(minutes=2)
    assert next_evidence(store, "1.6.0", NEXT).proven
    # When a rollback undoes that chain (it names the deploy, the chain's first roll-out): not proven
    rollout(store, clock, "next", "1.5.0", action="rollback", undoes=halted.id)
    assert not next_evidence(store, "1.6.0", NEXT).proven
