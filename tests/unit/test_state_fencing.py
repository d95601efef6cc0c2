"""The state store's failure paths: fencing tokens, a paused holder, upgrades, corrupt files,
and which roll-out a rollback undoes. On SQLite and on PostgreSQL (``state_db``), except what
only a SQLite file can show (a corrupt file, the upgrade of an old file: test_state_migrations.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from lrelease.errors import ExitCode
from lrelease.state import LockHeld, LockLost, StateStore

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 29, 22, 0, 0, tzinfo=timezone.utc)


def at(seconds: float):
    return lambda: T0 + timedelta(seconds=seconds)


# -- fencing ------------------------------------------------------------------------------
def test_every_grant_carries_a_larger_token_and_the_row_keeps_it(state_db):
    path = state_db
    with StateStore(path) as store:
        tokens = []
        for rid in ("a00000000001", "a00000000002", "a00000000003"):
            with store.acquire_lock("production", rid, heartbeat_every=0) as lock:
                store.start_rollout("production", "1.0.0", "deploy", "ann", rollout_id=rid, lock=lock)
                tokens.append(lock.row.token)
        # another environment has its own sequence
        with store.acquire_lock("next", "b00000000001", heartbeat_every=0) as other:
            assert other.row.token == 1
        assert tokens == sorted(tokens) and len(set(tokens)) == 3
        assert [store.rollout(r).lock_token for r in ("a00000000001", "a00000000003")] == [tokens[0], tokens[2]]


def test_a_holder_whose_lock_was_taken_over_cannot_write_and_learns_who_holds_it(state_db):
    path = state_db
    # Given a roll-out on another host holding the lock, whose heartbeat then stops (a paused VM)
    paused = StateStore(path, hostname="bastion-1", clock=at(0))
    lock = paused.take_lock("production", "paused000001", ttl=60)
    paused.start_rollout("production", "2.0.0", "deploy", "ann", rollout_id="paused000001", lock=lock)
    paused.record_host("paused000001", "node1", "switched")
    # When a process on this host finds it silent past the TTL and takes the lock over
    here = StateStore(path, clock=at(61))
    new = here.take_lock("production", "takeover0001")
    row = here.start_rollout("production", "2.0.0", "resume", "bob", rollout_id="takeover0001", lock=new,
                             resumes="paused000001")
    # Then the takeover is recorded with the old holder
    assert row.took_over["rollout_id"] == "paused000001" and row.took_over["hostname"] == "bastion-1"
    assert new.row.token > lock.row.token
    # And the paused holder, continued, can record nothing more: each write is refused, naming the holder
    for write in (lambda: paused.record_host("paused000001", "node2", "switched"),
                  lambda: paused.record_gate("paused000001", 2, "node2", "pass"),
                  lambda: paused.finish_rollout("paused000001", "succeeded", 0),
                  lambda: paused.heartbeat("production", "paused000001")):
        with pytest.raises(LockLost, match="lost the lock of environment production; it is now held by "
                                           "roll-out takeover0001") as err:
            write()
        assert err.value.exit_code == ExitCode.REFUSED
    assert [e.host for e in here.host_events("paused000001")] == ["node1"]
    # And it may only mark its own row lock_lost while nobody else ended it
    assert paused.finish_rollout("paused000001", "lock_lost", 4).status == "lock_lost"
    # And its release leaves the new holder's lock alone
    lock.release()
    assert here.lock_holder("production").rollout_id == "takeover0001"


def test_a_lost_lock_names_who_took_it_over_after_that_one_released_it(state_db):
    path = state_db
    paused = StateStore(path, hostname="bastion-1", clock=at(0))
    paused.take_lock("production", "paused000001", ttl=60)
    paused.start_rollout("production", "2.0.0", "deploy", "ann", rollout_id="paused000001")
    here = StateStore(path, clock=at(61))
    with here.acquire_lock("production", "takeover0001", heartbeat_every=0) as new:
        here.start_rollout("production", "2.0.0", "resume", "bob", rollout_id="takeover0001", lock=new)
    with pytest.raises(LockLost, match=r"roll-out takeover0001 \(pid \d+ on .+\) took it over at .* and has since "
                                       "released it"):
        paused.record_host("paused000001", "node3", "switched")


def test_a_stopped_holder_on_this_host_keeps_its_lock_past_the_ttl(state_db):
    # Given a process on this host holding the lock with a 1 s TTL and no heartbeat
    path = state_db
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from lrelease.state import StateStore
        s = StateStore({str(path)!r})
        s.take_lock("production", "stopped00001", ttl=1)
        print("locked", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        # When it is stopped (Ctrl-Z) and its heartbeat is far older than the TTL
        os.kill(holder.pid, signal.SIGSTOP)
        later = StateStore(path, clock=lambda: datetime.now(timezone.utc) + timedelta(hours=1))
        # Then it is alive, so its lock is not taken
        with pytest.raises(LockHeld, match="stopped00001"):
            later.take_lock("production", "thief0000001")
        # And once it is gone, the lock is free
        holder.kill()
        holder.wait()
        assert later.take_lock("production", "thief0000001").taken_over.rollout_id == "stopped00001"
    finally:
        holder.kill()
        holder.wait()


def test_heartbeat_errors_are_surfaced_and_end_as_a_lost_lock(state_db, caplog):
    # Given a store whose heartbeat writes fail (a locked or vanished database)
    class Failing(StateStore):
        def heartbeat(self, env, rollout_id, db=None):
            raise sa.exc.OperationalError("UPDATE locks", {}, Exception("database is locked"))

    with Failing(state_db) as store:
        with store.acquire_lock("production", "beat00000001", ttl=0.3, heartbeat_every=0.02) as lock:
            # When it keeps failing for longer than the TTL
            lock._thread.join(timeout=5)
            # Then each error was logged, and the handle knows it can no longer count on the lock
            assert isinstance(lock.error, sa.exc.OperationalError)
            assert isinstance(lock.lost, LockLost)
    assert "lock heartbeat of production failed: database is locked" in caplog.text


# -- what a rollback undoes ---------------------------------------------------------------------
def run(store: StateStore, rid: str, build: str, status: str, action: str = "deploy", **kw) -> None:
    store.start_rollout("production", build, action, "ann", rollout_id=rid, **kw)
    if status != "running":
        store.finish_rollout(rid, status, 0)


def test_the_rollback_undoes_the_newest_chain_that_changed_hosts_whatever_its_status(state_db):
    with StateStore(state_db, clock=at(0)) as store:
        run(store, "r1", "1.1.0", "succeeded")
        assert store.to_undo("production").id == "r1"
        # a halted roll-out after it is what a rollback undoes now, not the last success
        store.clock = at(1)
        run(store, "r2", "2.2.0", "halted")
        assert store.to_undo("production").id == "r2"
        # a resume of it belongs to the same chain: the root is undone with all of it
        store.clock = at(2)
        run(store, "r3", "2.2.0", "interrupted", action="resume", resumes="r2")
        assert store.to_undo("production").id == "r2"
        assert [r.id for r in store.chain("r2")] == ["r2", "r3"]
        # refused runs changed nothing
        store.clock = at(3)
        run(store, "r4", "9.9.9", "refused")
        assert store.to_undo("production").id == "r2"
        # once a rollback undid that chain, the next rollback goes one further back
        store.clock = at(4)
        run(store, "k1", "2.2.0", "succeeded", action="rollback", undoes="r2")
        assert store.to_undo("production").id == "r1"
        assert store.resumable("production") is None
        # a deploy that rolled itself back left nothing to undo
        store.clock = at(5)
        run(store, "r5", "3.0.0", "rolled_back")
        assert store.to_undo("production").id == "r1"
        # a failed rollback leaves its chain to undo
        store.clock = at(6)
        run(store, "k2", "1.1.0", "rollback_failed", action="rollback", undoes="r1")
        assert store.to_undo("production").id == "r1"
        # a rollback to an explicit build is returned as such: nothing recorded past it
        store.clock = at(7)
        run(store, "k3", "1.0.0", "succeeded", action="rollback")
        assert store.to_undo("production").id == "k3"


def test_a_crashed_or_lock_lost_rollout_is_resumable(state_db):
    with StateStore(state_db) as store:
        for status in ("crashed", "lock_lost"):
            run(store, f"x-{status}", "1.1.0", status)
            assert store.resumable("production").id == f"x-{status}"


PAUSED_HOLDER = textwrap.dedent("""
    import os, sys, time
    from datetime import datetime, timezone
    from lrelease.state import LockLost, StateStore
    T0 = datetime(2026, 11, 29, 22, 0, 0, tzinfo=timezone.utc)
    store = StateStore(sys.argv[1], hostname="bastion-1", clock=lambda: T0)
    lock = store.take_lock("production", "paused000001", ttl=60)
    store.start_rollout("production", "2.0.0", "deploy", "ann", rollout_id="paused000001", lock=lock)
    store.record_host("paused000001", "node1", "switched")
    print("token", lock.row.token, flush=True)
    while not os.path.exists(sys.argv[2]):  # paused (a VM frozen), then continued
        time.sleep(0.01)
    try:
        store.record_host("paused000001", "node2", "switched")
        print("wrote", flush=True)
    except LockLost as lost:
        print("refused", lost, flush=True)
""")


def test_a_takeover_from_another_process_bumps_the_token_and_fences_the_old_holder(tmp_path, state_db):
    # Given another process (on "another host") holding the lock, then silent past its TTL
    go = tmp_path / "continue"
    holder = subprocess.Popen([sys.executable, "-c", PAUSED_HOLDER, str(state_db), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        word, old_token = holder.stdout.readline().split()
        assert word == "token", holder.stderr.read()
        # When this process takes the lock over
        here = StateStore(state_db, clock=at(61))
        new = here.take_lock("production", "takeover0001")
        # Then its token is larger, and the takeover names the old holder
        assert new.row.token > int(old_token) and new.taken_over.rollout_id == "paused000001"
        # And when the old holder continues, its next write is refused, naming the new holder
        go.touch()
        out, err = holder.communicate(timeout=60)
        assert out.startswith("refused roll-out paused000001 lost the lock of environment production; it is now"
                              " held by roll-out takeover0001"), out + err
        assert [e.host for e in here.host_events("paused000001")] == ["node1"]
    finally:
        holder.kill()
        holder.wait()
