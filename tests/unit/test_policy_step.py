"""The playbooks' policy step (lrelease/policystep.py, the lrelease_policy action plugin) and the
guardian of a plain run (lrelease/guardian.py), with real processes, a real SQLite state and a real
ansible-playbook on localhost. The sandbox runs are in tests/rollout/test_policy_step.py."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from lrelease import guardian, policies, policystep
from lrelease.errors import ExitCode, LreleaseError
from lrelease.state import LockHeld, StateStore, new_rollout_id
from lrelease.window import parse_window
from tests.unit.playbook import ANSIBLE_PLAYBOOK, ENV, ROOT


def _sleeper() -> subprocess.Popen:
    """A process standing in for ansible-playbook (the lock and the row are bound to it)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _start(owner: int, **more) -> policystep.Start:
    return policystep.Start(env="production", action="deploy", build="1.1.0", actor="alice", owner_pid=owner,
                            via={"kind": "awx", "job_id": "42"}, hosts=["n1", "n2"], serial=[1, "100%"], **more)


def _wait(what, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s")


@pytest.fixture
def owner():
    proc = _sleeper()
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


# -- the wrapper's runs: verified, never recorded twice ------------------------------------------
def _policy_play(tmp_path: Path, task: dict) -> subprocess.CompletedProcess:
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "lrelease policy", "lrelease_policy": task, "register": "out"},
        {"name": "show", "ansible.builtin.debug": {"msg": "POLICY {{ out | to_json }}"}}]}]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play))
    return subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", str(path)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)


def test_a_wrapper_run_has_its_token_verified_and_records_nothing(tmp_path):
    # Given the wrapper's roll-out holding production's lock (row and lock by the wrapper)
    db = tmp_path / "state.db"
    with StateStore(db) as st, st.acquire_lock("production", rid := new_rollout_id()) as lock:
        st.start_rollout("production", "1.1.0", "deploy", "bob", rollout_id=rid, lock=lock)
        given = {"db": str(db), "env": "production", "token": lock.row.token}
        # When deploy.yml's policy step runs with the wrapper's lrelease_lock
        ok = _policy_play(tmp_path, {"step": "begin", "env": "production", "build": "1.1.0", "lock": given})
        # Then it passes, says it records nothing, and the store holds only the wrapper's row and lock
        assert ok.returncode == 0, ok.stdout
        assert "run by the lrelease wrapper: lock of production verified" in ok.stdout
        assert [r.id for r in st.history("production")] == [rid]
        assert st.lock_holder("production").token == lock.row.token
        # When the token is not the lock's any more (taken over)
        stale = _policy_play(tmp_path, {"step": "begin", "env": "production", "build": "1.1.0",
                                        "lock": {**given, "token": lock.row.token - 1}})
    # Then the step fails before any host changed, naming who holds it
    assert stale.returncode != 0
    assert f"the lock of production is held by roll-out {rid}" in stale.stdout
    assert "refused before any host changed" in stale.stdout


# -- plain runs -----------------------------------------------------------------------------------
def test_a_plain_run_takes_the_lock_bound_to_its_playbook_and_records_who_and_how(tmp_path, owner):
    with StateStore(tmp_path / "state.db") as st:
        began = policystep.begin(st, _start(owner.pid, reason="nightly"))
        row, lock = st.rollout(began["rollout_id"]), st.lock_holder("production")
    assert (row.status, row.actor, row.reason, row.via, row.pid) == ("running", "alice", "nightly",
                                                                     {"kind": "awx", "job_id": "42"}, owner.pid)
    assert (lock.rollout_id, lock.pid, lock.token) == (row.id, owner.pid, began["token"])


def test_a_plain_run_is_refused_while_another_live_rollout_holds_the_lock(tmp_path, owner):
    with StateStore(tmp_path / "state.db") as st, st.acquire_lock("production", cli := new_rollout_id()):
        with pytest.raises(policystep.Refused) as refused:
            policystep.begin(st, _start(owner.pid))
        assert f"locked by roll-out {cli}" in str(refused.value) and refused.value.exit_code == ExitCode.REFUSED
        assert st.history("production") == []


def test_a_policy_refusal_is_recorded_and_frees_the_lock(tmp_path, owner):
    # Given production's release captain is carol, and a plain run started by someone else
    with StateStore(tmp_path / "state.db") as st:
        st.set_captain("production", "carol", set_by="carol")
        start = _start(owner.pid)
        assert start.actor != "carol"
        # When its policy step begins, then the captain policy refuses it (exit 4), naming carol
        with pytest.raises(policies.PolicyRefused, match="release captain is carol") as refused:
            policystep.begin(st, start)
        assert refused.value.exit_code == ExitCode.REFUSED
        # And the refusal is recorded, with the policy that refused, and the lock is free
        [row] = st.history("production")
        assert (row.status, row.exit_code) == ("refused", 4) and st.lock_holder("production") is None
        assert row.policy["refused"]["policy"] == "captain"


def test_a_reused_rollout_id_gets_a_new_row_and_keeps_the_ledger_id(tmp_path, owner):
    with StateStore(tmp_path / "state.db") as st:
        first = policystep.begin(st, _start(owner.pid, ledger_id="job-7"))
        policystep.end(st, "production", first["rollout_id"])
        again = policystep.begin(st, _start(owner.pid, ledger_id="job-7"))
        assert first["rollout_id"] == "job-7" and again["rollout_id"] != "job-7"
        assert st.rollout(again["rollout_id"]).ledger_id == "job-7"


def test_a_plain_rollback_records_what_it_undoes_by_its_ledger_id(tmp_path, owner):
    with StateStore(tmp_path / "state.db") as st:
        deploy = policystep.begin(st, _start(owner.pid))
        policystep.end(st, "production", deploy["rollout_id"])
        back = policystep.begin(st, replace(_start(owner.pid), action="rollback", undo=[deploy["ledger_id"]]))
        row = st.rollout(back["rollout_id"])
        assert (row.action, row.undoes, row.previous_build) == ("rollback", deploy["rollout_id"], "1.1.0")


def test_a_rollback_of_an_awx_workflows_stretches_undoes_the_first_one_named(tmp_path, owner):
    # Given two stretches of one release recorded (an AWX workflow with a pause), the second newer
    with StateStore(tmp_path / "state.db") as st:
        first = policystep.begin(st, _start(owner.pid))
        policystep.end(st, "production", first["rollout_id"])
        second = policystep.begin(st, _start(owner.pid))
        policystep.end(st, "production", second["rollout_id"])
        # When the rollback is given both, as the later stretch hands them on (oldest first)
        back = policystep.begin(st, replace(_start(owner.pid), action="rollback",
                                            undo=[first["ledger_id"], second["ledger_id"]]))
        # Then it is recorded as undoing the release's first stretch (the newest would be the second)
        assert st.rollout(back["rollout_id"]).undoes == first["rollout_id"] != second["rollout_id"]


# -- the guardian ----------------------------------------------------------------------------------
def test_the_guardian_beats_the_heartbeat_while_the_playbook_lives_then_ends_a_killed_run(tmp_path, owner,
                                                                                          monkeypatch):
    # Given a plain run whose lock has a 2 s TTL, seen from another host (an AWX node elsewhere)
    monkeypatch.setenv("LRELEASE_LOCK_TTL", "2")
    db = tmp_path / "state.db"
    with StateStore(db) as st:
        began = policystep.begin(st, _start(owner.pid))
        st.record_host(began["rollout_id"], "n1", "staged")
        first_beat = st.lock_holder("production").heartbeat_at
    guard = guardian.spawn(str(db), "production", began["rollout_id"], began["token"], owner.pid)
    try:
        # (the guardian has started and beaten once: its start-up takes seconds on a loaded machine)
        with StateStore(db) as st:
            _wait(lambda: st.lock_holder("production").heartbeat_at != first_beat, 60)
        # When 3 TTLs pass while ansible-playbook lives
        time.sleep(6)
        # Then the lock is still alive for a process on another host
        with StateStore(db, hostname="elsewhere") as other, pytest.raises(LockHeld):
            other.take_lock("production", new_rollout_id())
        # When ansible-playbook is killed (SIGKILL) before its end step
        owner.kill()
        owner.wait(timeout=10)
        # Then the guardian ends the row as interrupted and frees the lock, and exits
        with StateStore(db) as st:
            row = _wait(lambda: (r := st.rollout(began["rollout_id"])).status != "running" and r)
            assert (row.status, row.exit_code) == ("interrupted", 130)
            assert row.plan["ended_by"]["guardian"] and st.lock_holder("production") is None
        assert _wait(lambda: _exited(guard))
    finally:
        _reap(guard)


def test_the_guardian_ends_a_failed_run_from_its_host_phases(tmp_path, owner):
    # Given a plain run whose canary failed its gate (the later plays never ran)
    db = tmp_path / "state.db"
    with StateStore(db) as st:
        began = policystep.begin(st, _start(owner.pid))
        rid = began["rollout_id"]
        st.adopt_lock("production", rid, began["token"])
        for host in ("n1", "n2"):
            policystep.record(st, rid, host, "staged")
        policystep.record(st, rid, "n1", "switched")
        policystep.record(st, rid, "n1", "gate_failed", gate={"verdict": "fail", "evidence": {"probes": 3}}, wave=1)
    guard = guardian.spawn(str(db), "production", rid, began["token"], owner.pid)
    try:
        # When ansible-playbook exits
        owner.kill()
        owner.wait(timeout=10)
        # Then the row is halted (the canary stays on the build for a rollback) and the lock free
        with StateStore(db) as st:
            row = _wait(lambda: (r := st.rollout(rid)).status != "running" and r)
            assert (row.status, row.exit_code, row.plan["ended_by"]["failed_hosts"]) == ("halted", 5, ["n1"])
            assert st.lock_holder("production") is None and st.to_undo("production").id == rid
            assert [(g.host, g.wave, g.verdict) for g in st.gates(rid)] == [("n1", 1, "fail")]
    finally:
        _reap(guard)


def test_the_next_run_ends_a_dead_plain_run_as_its_guardian_would(tmp_path, owner):
    # Given a plain run whose canary failed its gate, whose ansible-playbook is gone and whose
    # guardian has not ended it yet (the next AWX job starts on the same machine at once)
    db = tmp_path / "state.db"
    dead = _sleeper()
    with StateStore(db) as st:
        first = policystep.begin(st, _start(dead.pid))
        st.adopt_lock("production", first["rollout_id"], first["token"])
        policystep.record(st, first["rollout_id"], "n1", "switched")
        policystep.record(st, first["rollout_id"], "n1", "gate_failed", gate={"verdict": "fail"}, wave=1)
    dead.kill()
    dead.wait(timeout=10)
    # When the next run begins
    with StateStore(db) as st:
        policystep.begin(st, _start(owner.pid))
        # Then it took the dead run's lock and ended that run as failed (halted), not interrupted
        assert (st.rollout(first["rollout_id"]).status, st.rollout(first["rollout_id"]).exit_code) == ("halted", 5)


def test_the_end_step_ends_the_run_and_the_guardian_then_leaves(tmp_path, owner):
    db = tmp_path / "state.db"
    with StateStore(db) as st:
        began = policystep.begin(st, _start(owner.pid))
    guard = guardian.spawn(str(db), "production", began["rollout_id"], began["token"], owner.pid)
    try:
        with StateStore(db) as st:
            st.adopt_lock("production", began["rollout_id"], began["token"])
            assert policystep.end(st, "production", began["rollout_id"]) == ("succeeded", 0)
        assert _wait(lambda: _exited(guard))
        with StateStore(db) as st:
            assert st.rollout(began["rollout_id"]).status == "succeeded" and st.lock_holder("production") is None
    finally:
        _reap(guard)


def _exited(pid: int) -> bool:
    import os

    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def _reap(pid: int) -> None:
    import os
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


# -- small pieces ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "serial", "wave"), [
    ("a", [1, "100%"], 1), ("b", [1, "100%"], 2), ("e", [1, "100%"], 2),
    ("c", [1, 1, "50%"], 3), ("e", [1, 1, "50%"], 4), ("e", [], 1), ("z", [1], 0),
])
def test_waves_are_numbered_as_ansible_cuts_serial_batches(host, serial, wave):
    assert policystep.wave_of(host, ["a", "b", "c", "d", "e"], serial) == wave


def test_the_actor_is_the_explicit_one_then_lrelease_user_then_awx_then_the_os_user():
    awx = {"awx_user_name": "alice"}
    assert policystep.actor({"lrelease_actor": "ci", **awx}, {"LRELEASE_USER": "bob"}) == "ci"
    assert policystep.actor(awx, {"LRELEASE_USER": "bob"}) == "bob"
    assert policystep.actor(awx, {}) == "alice"
    assert policystep.actor({"tower_user_name": "tom"}, {}) == "tom"
    assert policystep.actor({}, {}) not in ("", None)
    assert policystep.via({"tower_job_id": 9}) == {"kind": "awx", "job_id": "9"}
    assert policystep.via({}) == {"kind": "ansible-playbook"}


def test_where_the_state_is(tmp_path, monkeypatch):
    monkeypatch.delenv("LRELEASE_STATE_URL", raising=False)
    monkeypatch.delenv("LRELEASE_STATE_URL_FILE", raising=False)
    # a checkout: .lrelease/lrelease.db beside playbooks/
    assert policystep.locate("", str(tmp_path / "playbooks")).target == str(tmp_path / ".lrelease" / "lrelease.db")
    assert policystep.locate(str(tmp_path / "s.db")).db == str(tmp_path / "s.db")
    monkeypatch.setenv("LRELEASE_STATE_URL", "postgresql://u:secret@db.example/lr")
    where = policystep.locate("", str(tmp_path / "playbooks"))
    assert where.db == "" and "secret" not in where.shown  # the URL never travels as an extra var
    with pytest.raises(LreleaseError, match="lrelease_state_db: expected the path of a SQLite file"):
        policystep.locate("postgresql://u:secret@db.example/lr")


def test_an_installed_collection_keeps_its_state_out_of_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv("LRELEASE_STATE_URL", raising=False)
    monkeypatch.delenv("LRELEASE_STATE_URL_FILE", raising=False)
    # Given the playbooks of an installed copy (a wheel's site-packages/lrelease/_content, or an
    # ansible-galaxy collections path): Then the state goes to the user's XDG state directory
    site = tmp_path / "site-packages" / "lrelease" / "_content" / "ansible_collections" / "lrelease" / "release"
    where = policystep.locate("", str(site / "playbooks"), environ={"XDG_STATE_HOME": str(tmp_path / "xdg")})
    assert where.target == str(tmp_path / "xdg" / "lrelease" / "lrelease.db")
    home = policystep.locate("", str(site / "playbooks"), environ={})
    assert home.target == str(Path.home() / ".local" / "state" / "lrelease" / "lrelease.db")
    # Given lrelease_config (the project's lrelease.yml): Then its state_dir, wherever the playbooks are
    project = tmp_path / "project"
    project.mkdir()
    _environment(project, state_dir="st")
    assert policystep.locate("", str(site / "playbooks"), str(project / "lrelease.yml")).target == \
        str(project / "st" / "lrelease.db")


def test_a_plain_run_learns_when_its_window_closes_and_ends_paused_past_it(tmp_path, owner):
    # Given production's window (nightly 22:00-06:00 UTC) and a plain run starting inside it at 23:00
    env = replace(_environment(tmp_path), window=parse_window("UTC", ["daily 22:00-06:00"]))
    night = datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc)
    with StateStore(tmp_path / "state.db", clock=lambda: night) as st:
        began = policystep.begin(st, _start(owner.pid, environment=env))
        # Then the policy step hands the wave-boundary check the window's close, and records it
        assert began["closes_at"] == "2026-12-01T06:00:00.000Z"
        assert st.rollout(began["rollout_id"]).plan["window_closes_at"] == began["closes_at"]
        # And the check passes before the close and stops the run after it
        assert policystep.window_check("production", began["closes_at"], night) == ""
        closed = policystep.window_check("production", began["closes_at"], datetime(2026, 12, 1, 6, 0, 1,
                                                                                     tzinfo=timezone.utc))
        assert closed == "window closed: the deploy window of production closed at 2026-12-01T06:00:00.000Z"
        # When the playbook ends stopped there (one wave done, no host failed)
        st.record_host(began["rollout_id"], "n1", "gate_passed", {})
        ended = policystep.end(st, "production", began["rollout_id"], stopped=True, window_closed=True)
        # Then it is recorded paused (exit 5), as the wrapper records it, and the lock is free
        assert ended == ("paused", int(ExitCode.HALTED))
        assert st.rollout(began["rollout_id"]).status == "paused" and st.lock_holder("production") is None
    # And a run without a window (or a rollback) gets no close to check
    with StateStore(tmp_path / "other.db", clock=lambda: night) as st:
        assert policystep.begin(st, _start(owner.pid, environment=_environment(tmp_path)))["closes_at"] == ""
    assert policystep.window_check("production", "") == ""


def _environment(tmp_path: Path, **top):
    """Production's settings from a minimal lrelease.yml in ``tmp_path``."""
    from lrelease.config import load_config

    path = tmp_path / "lrelease.yml"
    production = {"deploy_root": "/srv/demo", "service": {"command": "/srv/demo/bin/demo-service"}}
    path.write_text(yaml.safe_dump({"version": 1, "app": "demo", **top, "environments": {"production": production}}))
    return load_config(path).environment("production")


def test_the_placeholder_policies_refuse_nothing(tmp_path):
    with StateStore(tmp_path / "state.db") as st:
        assert policies.check_start(st, "production", actor="a", action="deploy") is None



def test_the_wrapper_reads_the_same_user_variable_as_the_policy_step(monkeypatch):
    # Given LRELEASE_USER set (what the policy step and nightly read) and no LRELEASE_ACTOR
    from lrelease.rollout import default_actor
    monkeypatch.delenv("LRELEASE_ACTOR", raising=False)
    monkeypatch.setenv("LRELEASE_USER", "dora")
    # Then the wrapper acts as that user too, and LRELEASE_ACTOR still wins when set
    assert default_actor() == "dora" == policystep.actor({}, {"LRELEASE_USER": "dora"})
    monkeypatch.setenv("LRELEASE_ACTOR", "eve")
    assert default_actor() == "eve"
