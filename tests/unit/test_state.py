"""The state (on SQLite and on PostgreSQL): roll-outs, host transitions, gate outcomes, and the per-environment lock."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from lrelease import statedb
from lrelease.errors import ExitCode, LreleaseError
from lrelease.state import LockHeld, LockLost, StateError, StateStore, new_rollout_id
from tests.statedbs import dump, raw

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 1, 22, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(state_db):
    with StateStore(state_db) as s:
        yield s


def deploy(store: StateStore, env: str = "production", build: str = "1.1.0", **kw):
    return store.start_rollout(env, build, "deploy", "alice", reason=kw.pop("reason", "nightly"), **kw)


# -- schema -------------------------------------------------------------------------------
def test_a_new_sqlite_database_is_versioned_and_in_wal_mode(tmp_path):
    with StateStore(tmp_path / ".lrelease" / "lrelease.db") as store:
        assert store.path.exists() and store.schema_version() == statedb.SCHEMA_VERSION == 6
        db = sqlite3.connect(store.path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")} >= {
            "meta", "rollouts", "host_events", "gates", "locks", "captains", "env_pauses", "builds", "alembic_version"}


def test_a_new_database_is_at_the_newest_revision(store, state_db):
    assert store.schema_version() == statedb.SCHEMA_VERSION
    assert raw(state_db, "SELECT version_num FROM alembic_version") == [(statedb.REVISIONS[-1],)]


def test_reopening_keeps_the_data(state_db):
    with StateStore(state_db) as s:
        rid = deploy(s).id
    with StateStore(state_db) as s:
        assert s.rollout(rid).build == "1.1.0"


@pytest.mark.parametrize("sql, known", [
    ("UPDATE meta SET value = '99' WHERE key = 'schema_version'", "schema 99"),
    ("UPDATE alembic_version SET version_num = '0099_from_the_future'", "revision 0099_from_the_future"),
])
def test_a_database_from_a_newer_lrelease_is_refused(state_db, sql, known):
    StateStore(state_db).close()
    raw(state_db, sql)
    with pytest.raises(StateError, match=rf"newer lrelease \({known}, this one knows {statedb.SCHEMA_VERSION}\); upgrade lrelease") as err:
        StateStore(state_db)
    assert err.value.exit_code == ExitCode.USAGE and "\n" not in str(err.value)


# -- roll-outs ----------------------------------------------------------------------------
def test_a_rollout_is_recorded_from_start_to_finish(store):
    # Given a deploy started with its plan
    started = deploy(store, previous_build="1.0.0", plan={"waves": [["node1"], ["node2"]]})
    assert started.status == "running" and started.finished_at is None and started.exit_code is None
    assert started.pid == os.getpid() and len(started.id) == 12
    # When it finishes
    done = store.finish_rollout(started.id, "succeeded", 0)
    # Then everything is there, with ISO 8601 UTC times
    assert (done.env, done.build, done.previous_build, done.action) == ("production", "1.1.0", "1.0.0", "deploy")
    assert (done.status, done.exit_code, done.actor, done.reason) == ("succeeded", 0, "alice", "nightly")
    assert done.plan == {"waves": [["node1"], ["node2"]]}
    for stamp in (done.started_at, done.finished_at):
        assert stamp.endswith("Z") and datetime.fromisoformat(stamp).tzinfo is not None
    assert json.loads(json.dumps(done.to_dict()))["id"] == done.id


def test_history_is_newest_first_filtered_and_limited(state_db):
    clock = iter(T0 + timedelta(minutes=i) for i in range(100))
    with StateStore(state_db, clock=lambda: next(clock)) as s:
        a = deploy(s, build="1.0.0")
        b = deploy(s, env="next", build="1.1.0")
        c = deploy(s, build="1.1.0")
        s.finish_rollout(a.id, "succeeded", 0)
        s.finish_rollout(c.id, "rolled_back", 1)
        assert [r.id for r in s.history()] == [c.id, b.id, a.id]
        assert [r.id for r in s.history("production")] == [c.id, a.id]
        assert [r.id for r in s.history(limit=1)] == [c.id]
        assert s.last_rollout("production").id == c.id
        assert s.last_rollout("production", status="succeeded").build == "1.0.0"
        assert s.last_rollout("dev") is None


@pytest.mark.parametrize("call, match", [
    (lambda s: s.start_rollout("production", "1", "redeploy", "a"), "action"),
    (lambda s: s.finish_rollout(deploy(s).id, "running", 0), "status"),
    (lambda s: s.finish_rollout(deploy(s).id, "exploded", 0), "status"),
    (lambda s: s.record_host(deploy(s).id, "node1", "dancing"), "phase"),
])
def test_unknown_actions_statuses_and_phases_are_refused(store, call, match):
    with pytest.raises(ValueError, match=match):
        call(store)


def test_unknown_rollout_id_is_a_usage_error(store):
    with pytest.raises(StateError, match="no roll-out 'nope'"):
        store.finish_rollout("nope", "succeeded", 0)
    with pytest.raises(StateError):
        store.rollout("nope")


# -- hosts and gates ----------------------------------------------------------------------
def test_hosts_in_phase_follows_each_hosts_latest_phase(store):
    # Given a canary that passed, a host that switched and failed its gate and was rolled back,
    # and a host that only staged
    rid = deploy(store).id
    for host, phase in [("node1", "staged"), ("node2", "staged"), ("node3", "staged"),
                        ("node1", "switched"), ("node1", "gate_passed"),
                        ("node2", "switched"), ("node2", "gate_failed"), ("node2", "rolled_back")]:
        store.record_host(rid, host, phase, {"wave": 1})
    # Then "on the new build" means latest phase switched or gate_passed
    assert store.hosts_in_phase(rid, ("switched", "gate_passed")) == ["node1"]
    assert store.hosts_in_phase(rid, "staged") == ["node3"]
    assert store.hosts_in_phase(rid, "switched", latest=False) == ["node1", "node2"]
    assert store.host_phases(rid) == {"node1": "gate_passed", "node2": "rolled_back", "node3": "staged"}
    assert store.host_events(rid)[0].detail == {"wave": 1}
    assert store.hosts_in_phase(deploy(store).id, "switched") == []


def test_gate_outcomes_are_kept_in_order(store):
    rid = deploy(store).id
    store.record_gate(rid, 1, "node1", "pass", {"status": 200, "latency_ms": 3.2})
    store.record_gate(rid, 2, "node2", "fail", {"status": 503})
    got = store.gates(rid)
    assert [(g.wave, g.host, g.verdict) for g in got] == [(1, "node1", "pass"), (2, "node2", "fail")]
    assert got[0].evidence == {"latency_ms": 3.2, "status": 200} and got[0].at.endswith("Z")


def test_secret_looking_keys_are_never_written(store, state_db):
    # Given evidence and a plan that (wrongly) carry secrets
    rid = deploy(store, plan={"apm": {"api_key": "k-123"}}).id
    store.record_gate(rid, 1, "node1", "pass", {"query": "up", "headers": {"Authorization_token": "t-456"}})
    store.record_host(rid, "node1", "switched", {"webhook_url": "https://hooks/T1", "api_key_env": "APM_KEY"})
    # Then the database file holds none of them, but names of env vars stay
    rows = dump(state_db)
    assert "webhook_url" in rows
    for secret in ("k-123", "t-456", "hooks/T1"):
        assert secret not in rows
    assert store.host_events(rid)[0].detail == {"webhook_url": "<redacted>", "api_key_env": "APM_KEY"}


def test_the_gates_statistics_are_kept_whole(store):
    # Given a gate's evidence whose keys end like a password's ("p_pass") but are statistics
    rid = deploy(store).id
    evidence = {"p_fail": 0.9, "p_pass": 0.0004, "canary_share_above_pass": 0.01, "dispersion_pass": {"phi": 1.2}}
    store.record_gate(rid, 1, "node1", "pass", evidence)
    # Then they are stored as they are
    assert store.gates(rid)[0].evidence == evidence


# -- the lock -----------------------------------------------------------------------------
def test_one_rollout_at_a_time_per_environment(store):
    first, second = new_rollout_id(), new_rollout_id()
    with store.acquire_lock("production", first, heartbeat_every=0) as lock:
        assert store.lock_holder("production").rollout_id == first and lock.taken_over is None
        # When another roll-out asks for the same environment while the holder lives
        with pytest.raises(LockHeld) as err:
            with store.acquire_lock("production", second):
                pass
        # Then it is refused by policy, naming env, holder, pid and since
        assert err.value.exit_code == ExitCode.REFUSED == 4
        holder = store.lock_holder("production")
        assert str(err.value) == (f"environment production is locked by roll-out {first} (pid {os.getpid()} on "
                                  f"{store.hostname}, since {holder.acquired_at}); one roll-out at a time")
        # And another environment is not affected
        with store.acquire_lock("next", second, heartbeat_every=0):
            pass
    assert store.lock_holder("production") is None


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_the_lock_is_released_on_any_exception(store, exc):
    with pytest.raises(exc):
        with store.acquire_lock("production", "r1", heartbeat_every=0):
            raise exc()
    assert store.lock_holder("production") is None


HOLDER = textwrap.dedent("""
    import sys, time
    from lrelease.state import StateStore
    store = StateStore(sys.argv[1])
    ro = store.start_rollout("production", "1.1.0", "deploy", "bob", rollout_id=sys.argv[2])
    with store.acquire_lock("production", ro.id, ttl=3600):
        print("locked", flush=True)
        time.sleep(600)
""")


def spawn_holder(db: str, rollout_id: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), rollout_id], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_sigkilled_holder_cannot_leave_the_lock_stuck(store):
    # Given another process that started a roll-out and holds the lock (TTL an hour)
    holder = spawn_holder(store.where.target, "deadbeef0001")
    try:
        assert store.interrupted("production") == []
        with pytest.raises(LockHeld, match=f"pid {holder.pid}"):
            store.take_lock("production", "mine00000001")
        # When it is SIGKILLed (and not yet reaped by its parent: a zombie)
        holder.send_signal(signal.SIGKILL)
        os.waitid(os.P_PID, holder.pid, os.WEXITED | os.WNOWAIT)
        # Then its roll-out shows as interrupted and resumable
        assert [r.id for r in store.interrupted("production")] == ["deadbeef0001"]
        assert store.resumable("production").id == "deadbeef0001"
        # And the lock is taken over at once, long before the TTL
        with store.acquire_lock("production", "mine00000001", heartbeat_every=0) as lock:
            assert lock.taken_over.rollout_id == "deadbeef0001" and lock.taken_over.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_whose_pid_was_reused_is_taken_over(store, state_db):
    # Given a lock row naming a live pid (ours) but another process start time
    handle = store.take_lock("production", "old000000001")
    raw(state_db, "UPDATE locks SET pid_start = '1' WHERE env = 'production'")
    # Then the pid belongs to someone else now, and the lock is free
    with store.acquire_lock("production", "new000000001", heartbeat_every=0) as lock:
        assert lock.taken_over.rollout_id == "old000000001"
    # And the old handle finds out it lost the lock
    with pytest.raises(LockLost, match="old000000001 lost the lock"):
        handle.heartbeat()
    assert handle.lost


def test_a_holder_on_another_host_is_trusted_until_its_heartbeat_is_older_than_the_ttl(state_db):
    path = state_db
    # Given a lock taken on another host at T0 with a 60 s TTL
    elsewhere = StateStore(path, hostname="bastion-2", clock=lambda: T0)
    elsewhere.take_lock("production", "remote000001", ttl=60)
    # When this host asks 59 s later, it is refused (the pid means nothing here)
    soon = StateStore(path, clock=lambda: T0 + timedelta(seconds=59))
    with pytest.raises(LockHeld, match="on bastion-2, since 2024-05-01T22:00:00.000Z"):
        soon.take_lock("production", "local0000001")
    # And 61 s later the silent holder is taken over
    late = StateStore(path, clock=lambda: T0 + timedelta(seconds=61))
    lock = late.take_lock("production", "local0000001")
    assert lock.taken_over.hostname == "bastion-2" and late.lock_holder("production").rollout_id == "local0000001"


def test_the_heartbeat_thread_keeps_a_long_rollout_alive(state_db):
    path = state_db
    with StateStore(path) as s:
        with s.acquire_lock("production", "beat00000001", ttl=2, heartbeat_every=0.05):
            first = s.lock_holder("production").heartbeat_at
            time.sleep(0.3)
            assert s.lock_holder("production").heartbeat_at > first
            # a process on another host, 1.5 s later than the last beat, still sees it alive
            later = datetime.fromisoformat(s.lock_holder("production").heartbeat_at) + timedelta(seconds=1.5)
            with pytest.raises(LockHeld):
                StateStore(path, hostname="other", clock=lambda: later).take_lock("production", "x")


def test_racing_processes_get_the_lock_exactly_once(tmp_path, state_db):
    # Given eight live processes, all started and ready, that try to take the same lock at the
    # same moment; the winner holds it until every one has tried (a winner that exited before a
    # slow starter tried would rightly be taken over: its process is gone)
    path = state_db
    StateStore(path).close()
    go, release = tmp_path / "go", tmp_path / "release"
    code = textwrap.dedent("""
        import os, sys, time
        from lrelease.state import LockHeld, StateStore
        store = StateStore(sys.argv[1])
        open(os.path.join(sys.argv[3], "ready-%d" % os.getpid()), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
            time.sleep(0.005)
        try:
            store.take_lock("production", "r%d" % os.getpid(), ttl=60)
            print("won", flush=True)
            while not os.path.exists(sys.argv[4]) and time.monotonic() < deadline:
                time.sleep(0.01)
        except LockHeld:
            print("held", flush=True)
    """)
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(go), str(ready), str(release)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(8)]
    deadline = time.monotonic() + 60
    while len(list(ready.iterdir())) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    # When they all try at once
    go.touch()
    answers = sorted(p.stdout.readline().strip() for p in procs)  # each answers once, winner still holding
    release.touch()
    for p in procs:
        p.communicate(timeout=60)
    # Then exactly one wins
    assert answers == ["held"] * 7 + ["won"]


def test_a_write_waits_for_another_processs_write_transaction_to_end(state_db):
    # Given this process in the middle of a write transaction (as take_lock is, between its check
    # of the holder and its write of the new one)
    with StateStore(state_db) as store:
        code = textwrap.dedent("""
            import sys
            from lrelease.state import StateStore
            StateStore(sys.argv[1]).take_lock("production", "other0000001", ttl=60)
            print("won", flush=True)
        """)
        with store._write():
            other = subprocess.Popen([sys.executable, "-c", code, str(state_db)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT)
            # When another process asks for the lock meanwhile, it waits (it neither reads a stale
            # "nobody holds it" and writes, nor fails)
            with pytest.raises(subprocess.TimeoutExpired):
                other.communicate(timeout=3)
            assert store.lock_holder("production") is None
        # Then it goes on once the transaction ended
        out, err = other.communicate(timeout=60)
        assert out.strip() == "won", err
        assert store.lock_holder("production").rollout_id == "other0000001"


def test_resumable_is_the_newest_unfinished_deploy_not_hidden_by_refusals(state_db):
    clock = iter(T0 + timedelta(minutes=i) for i in range(100))
    with StateStore(state_db, clock=lambda: next(clock)) as s:
        halted = deploy(s)
        s.finish_rollout(halted.id, "halted", 5)
        refused = deploy(s, status="refused")
        s.finish_rollout(refused.id, "refused", 4)
        assert s.resumable("production").id == halted.id
        # a rollback after it means there is nothing to resume
        rb = s.start_rollout("production", "1.0.0", "rollback", "alice")
        s.finish_rollout(rb.id, "succeeded", 0)
        assert s.resumable("production") is None
        # a running roll-out of this live process is not resumable
        deploy(s)
        assert s.resumable("production") is None and s.interrupted("production") == []


def test_lock_errors_are_lrelease_errors():
    assert issubclass(LockHeld, LreleaseError) and issubclass(LockLost, LreleaseError)


# -- build records (lrelease build) -------------------------------------------------------------
def test_a_build_is_recorded_once_with_its_provenance_and_listed_newest_first(store):
    from lrelease.statebuilds import BuildRecord

    # Given two builds recorded, the second with a pick and a revert
    first = BuildRecord(version="1.0.0", sha256="a" * 64, artifact="shop-1.0.0.tar.gz", repository="/src/shop",
                        branch="release/1.0.0", commit="c" * 40, tags=("v1.0.0",), branch_point="c" * 40,
                        built_by="alice")
    second = BuildRecord(version="1.0.0+2", sha256="b" * 64, artifact="shop-1.0.0+2.tar.gz", repository="/src/shop",
                         branch="release/1.0.0", commit="d" * 40, branch_point="c" * 40,
                         picks=({"commit": "d" * 40, "from": "e" * 40, "subject": "revert it"},),
                         reverts=({"commit": "d" * 40, "reverts": "f" * 40, "subject": "revert it"},),
                         built_by="bob")
    store.record_build(first)
    got = store.record_build(second)
    # Then each reads back as recorded, with when it was built
    assert got.to_dict() | {"built_at": ""} == second.to_dict()
    assert got.built_at.endswith("Z")
    assert store.build_record("1.0.0").tags == ("v1.0.0",)
    assert [b.version for b in store.build_records()] == ["1.0.0+2", "1.0.0"]
    assert store.build_record("2.0.0") is None
    # And the same build id again is refused (one line, exit 2), the first record unchanged
    with pytest.raises(StateError, match="build 1.0.0 is recorded already") as err:
        store.record_build(second.__class__(**{**second.__dict__, "version": "1.0.0"}))
    assert err.value.exit_code == ExitCode.USAGE
    assert store.build_record("1.0.0").commit == "c" * 40
