"""A host that a plain or AWX run of deploy.yml / rollback.yml cannot reach (SSH failed: the node
is gone) is recorded as a failed host (`unreachable`, with the SSH error), so the run ends as a run
with a failed host does — halted, rolled_back, rollback_failed — and not `interrupted`.

The recording (lrelease.policystep.unreachable), the callback plugin that sees the host
(lrelease/ansible/callback/lrelease_record.py, fed real Ansible task results), and real
ansible-playbook runs on localhost with a host behind a closed loopback port (enabled by the
checkout's ansible.cfg, as AWX uses it). The sandbox run is in tests/rollout/test_policy_step.py."""

from __future__ import annotations

import importlib
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from ansible.executor.task_result import CallbackTaskResult
from ansible.inventory.host import Host
from ansible.playbook.task import Task

from lrelease import policystep
from lrelease.errors import ExitCode
from lrelease.state import StateStore, new_rollout_id
from tests.unit.playbook import ANSIBLE_PLAYBOOK, ENV, ROOT
from tests.unit.test_policy_step import _sleeper, _start, _wait, owner  # noqa: F401  owner: a fixture
from tests.unit.test_rollback_groups import rollback

SSH_ERROR = ("Failed to connect to the host via ssh: ssh: connect to host 198.18.108.4 port 22: "
             "Connection refused")


def _began(st: StateStore, owner_pid: int, **more) -> str:
    """A plain run begun and its lock adopted by this store (as the recording steps do)."""
    began = policystep.begin(st, replace(_start(owner_pid), hosts=["n1", "n2", "n3"], **more))
    st.adopt_lock("production", began["rollout_id"], began["token"])
    return began["rollout_id"]


# -- the recording --------------------------------------------------------------------------------
def test_a_host_lost_after_others_moved_ends_the_deploy_halted_naming_it(tmp_path, owner):
    # Given a plain deploy whose canary n1 switched and passed its gate
    with StateStore(tmp_path / "state.db") as st:
        rid = _began(st, owner.pid)
        for host in ("n1", "n2", "n3"):
            policystep.record(st, rid, host, "staged")
        policystep.record(st, rid, "n1", "switched")
        policystep.record(st, rid, "n1", "gate_passed", gate={"verdict": "pass"}, wave=1)
        # When n2 is unreachable in the next wave (and the play stops: no end step)
        assert policystep.unreachable(st, rid, "n2", SSH_ERROR, task="Switch to the build") is True
        ended = policystep.finalise(st, "production", rid)
        # Then the run is halted (5), not interrupted: n1 stays on the build for a human or the rollback job
        assert ended == ("halted", int(ExitCode.HALTED))
        row = st.rollout(rid)
        assert (row.status, row.exit_code, row.plan["ended_by"]["failed_hosts"]) == ("halted", 5, ["n2"])
        assert st.host_phases(rid) == {"n1": "gate_passed", "n2": "unreachable", "n3": "staged"}
        # And n2's record says it was unreachable, with the SSH error and the task
        [lost] = [e for e in st.host_events(rid) if e.host == "n2" and e.phase == "unreachable"]
        assert lost.detail == {"task": "Switch to the build", "msg": f"unreachable: {SSH_ERROR}"}
        assert st.lock_holder("production") is None and st.to_undo("production").id == rid


def test_a_host_lost_before_any_moved_ends_the_deploy_rolled_back(tmp_path, owner):
    # Given a plain deploy staging its hosts
    with StateStore(tmp_path / "state.db") as st:
        rid = _began(st, owner.pid)
        policystep.record(st, rid, "n1", "staged")
        # When n3 is unreachable while staging (the stage play stops every host)
        policystep.unreachable(st, rid, "n3", SSH_ERROR, task="Stage the build")
        # Then the run ends rolled_back (1: nothing moved, nothing to undo), as the wrapper ends it
        assert policystep.finalise(st, "production", rid) == ("rolled_back", int(ExitCode.ROLLED_BACK))
        assert st.rollout(rid).plan["ended_by"]["failed_hosts"] == ["n3"]


def test_a_rollback_with_a_lost_host_ends_rollback_failed(tmp_path, owner):
    # Given a plain rollback (rollback.yml) that moved n1 back
    with StateStore(tmp_path / "state.db") as st:
        rid = _began(st, owner.pid, action="rollback")
        policystep.record(st, rid, "n1", "rolled_back")
        # When n2 cannot be reached
        policystep.unreachable(st, rid, "n2", SSH_ERROR)
        # Then the rollback failed (3), whether its end step ran or its guardian ended it
        assert policystep.end(st, "production", rid, failed=["n2"]) == ("rollback_failed", int(ExitCode.ROLLBACK_FAILED))
        assert st.host_phases(rid) == {"n1": "rolled_back", "n2": "unreachable"}


def test_when_the_end_step_runs_an_unreachable_host_is_never_succeeded(tmp_path, owner):
    # Given a plain deploy whose other hosts finished, n2 recorded unreachable by the callback,
    # and one whose n2 was lost without the callback (a user's ansible.cfg that does not enable it)
    with StateStore(tmp_path / "state.db") as st:
        seen = _began(st, owner.pid)
        for host in ("n1", "n3"):
            policystep.record(st, seen, host, "gate_passed", gate={"verdict": "pass"}, wave=1)
        policystep.unreachable(st, seen, "n2", SSH_ERROR, task="Switch to the build")
        # When the end step runs with n2 among the play's failed hosts
        ended = policystep.end(st, "production", seen, failed=["n2"])
        # Then the run is halted and n2 keeps its own record (unreachable, with its SSH error)
        assert ended == ("halted", int(ExitCode.HALTED))
        assert st.host_phases(seen) == {"n1": "gate_passed", "n3": "gate_passed", "n2": "unreachable"}
        assert [e.detail["msg"] for e in st.host_events(seen) if e.host == "n2"] == [f"unreachable: {SSH_ERROR}"]

        unseen = _began(st, owner.pid)
        policystep.record(st, unseen, "n1", "gate_passed", gate={"verdict": "pass"}, wave=1)
        # Then without the callback the end step still records n2 failed: halted, not succeeded
        assert policystep.end(st, "production", unseen, failed=["n2"]) == ("halted", int(ExitCode.HALTED))
        assert st.host_phases(unseen)["n2"] == "failed"


def test_the_recorded_error_is_one_scrubbed_line_cut_to_its_limit_and_recorded_once(tmp_path, owner):
    # Given an SSH error over several lines, with a proxy URL carrying a password, and very long
    error = "ssh: connect via http://deploy:hunter2@proxy.example:3128\n  refused " + "x" * 2000
    with StateStore(tmp_path / "state.db") as st:
        rid = _began(st, owner.pid)
        # When n2 is recorded unreachable, twice (two events for it)
        assert policystep.unreachable(st, rid, "n2", error) is True
        assert policystep.unreachable(st, rid, "n2", error) is False
        # Then one record, one line, no password, at most the limit, saying it was cut
        [event] = st.host_events(rid)
        msg = event.detail["msg"]
        assert msg.startswith("unreachable: ssh: connect via http://deploy:") and "hunter2" not in msg
        assert "\n" not in msg and "  " not in msg
        assert len(msg) == policystep.UNREACHABLE_MSG_CHARS and msg.endswith("...")
        # And an empty error still says what happened
        policystep.unreachable(st, rid, "n3", "")
        assert st.host_events(rid)[-1].detail["msg"] == "unreachable: no error given"


# -- the callback plugin ----------------------------------------------------------------------------
def _callback():
    """The callback as ansible-playbook loads it (its module, imported from the collection's file)."""
    module = importlib.import_module("lrelease.ansible.callback.lrelease_record")
    return module.CallbackModule()


def _result(host: str, action: str, name: str, data: dict) -> CallbackTaskResult:
    task = Task()
    task.action, task.name = action, name
    return CallbackTaskResult(Host(host), task, data, {})


def _begin_result(began: dict, db: Path) -> dict:
    """The policy step's result of a recorded plain run (as the action plugin returns it)."""
    return {"record": True, "env": "production", "rollout_id": began["rollout_id"], "ledger_id": began["ledger_id"],
            "lock": {"db": str(db), "env": "production", "token": began["token"], "closes_at": ""}}


def _unreachable(host: str, **task_fields) -> CallbackTaskResult:
    result = _result(host, "ansible.builtin.command", "Switch to the build", {"unreachable": True, "msg": SSH_ERROR})
    for name, value in task_fields.items():
        setattr(result.task, name, value)
    return result


def test_the_callback_records_a_host_lost_in_a_recorded_plain_run(tmp_path, owner):
    # Given a plain run's policy step result, seen by the callback (by its FQCN action)
    db = tmp_path / "state.db"
    with StateStore(db) as st:
        began = policystep.begin(st, _start(owner.pid))
    callback = _callback()
    callback.v2_runner_on_ok(_result("n1", "lrelease.release.lrelease_policy", "lrelease policy",
                                     _begin_result(began, db)))
    # When n3 is unreachable in a task that ignores it (the host goes on), then n2 turns unreachable
    callback.v2_runner_on_unreachable(_unreachable("n3", ignore_unreachable=True))
    callback.v2_runner_on_unreachable(_unreachable("n2"))
    # Then the run's record has n2 unreachable, with its SSH error and the task that found it, and not n3
    with StateStore(db) as st:
        [event] = st.host_events(began["rollout_id"])
        assert (event.host, event.phase, event.detail) == (
            "n2", "unreachable", {"task": "Switch to the build", "msg": f"unreachable: {SSH_ERROR}"})


def test_the_callback_records_nothing_for_the_wrapper_or_without_a_policy_step(tmp_path, owner):
    # Given the wrapper's roll-out (it records from its own events) and a policy step that said so
    db = tmp_path / "state.db"
    with StateStore(db) as st, st.acquire_lock("production", rid := new_rollout_id()) as lock:
        st.start_rollout("production", "1.1.0", "deploy", "bob", rollout_id=rid, lock=lock)
        wrapped = _callback()
        wrapped.v2_runner_on_ok(_result("n1", "lrelease_policy", "lrelease policy",
                                        {"record": False, "msg": "run by the lrelease wrapper"}))
        # And a playbook without a policy step
        bare = _callback()
        # When a host is unreachable in either
        wrapped.v2_runner_on_unreachable(_unreachable("n2"))
        bare.v2_runner_on_unreachable(_unreachable("n2"))
        # Then nothing is recorded (the wrapper records n2 itself)
        assert st.host_events(rid) == []
        # And a result of another task that happens to carry `record` teaches it nothing
        bare.v2_runner_on_ok(_result("n1", "ansible.builtin.set_fact", "x", {"record": True, "rollout_id": rid,
                                                                              "lock": {"db": str(db)}}))
        bare.v2_runner_on_unreachable(_unreachable("n3"))
        assert st.host_events(rid) == []


def test_the_callback_warns_and_never_fails_when_it_cannot_record(tmp_path, owner, capsys):
    # Given a recorded plain run that has ended (its lock released) and one whose state is unreadable
    db = tmp_path / "state.db"
    with StateStore(db) as st:
        began = policystep.begin(st, _start(owner.pid))
        policystep.end(st, "production", began["rollout_id"])
    ended = _callback()
    ended.v2_runner_on_ok(_result("n1", "lrelease_policy", "lrelease policy", _begin_result(began, db)))
    (tmp_path / "not-a-db").write_text("garbage " * 100)
    broken = _callback()
    broken.v2_runner_on_ok(_result("n1", "lrelease_policy", "lrelease policy",
                                   _begin_result(began, tmp_path / "not-a-db")))
    # When a host is unreachable: Then no exception reaches Ansible
    ended.v2_runner_on_unreachable(_unreachable("n2"))
    broken.v2_runner_on_unreachable(_unreachable("n2"))
    # And the ended run is untouched; the unreadable state gives one warning naming the host
    with StateStore(db) as st:
        assert st.host_events(began["rollout_id"]) == [] and st.rollout(began["rollout_id"]).status == "succeeded"
    err = capsys.readouterr()
    assert "lrelease_record: n2 unreachable, not recorded:" in err.out + err.err


# -- real ansible-playbook, the checkout's ansible.cfg ----------------------------------------------
def test_a_plain_rollback_yml_run_records_its_unreachable_host_and_ends_rollback_failed(tmp_path):
    # When rollback.yml runs without the wrapper on 6 hosts in groups of 3, p2 behind a closed port,
    # with a hook that reaches each host
    hook = "- ansible.builtin.ping:\n  tags: [test_hook]\n"
    rc, out, groups = rollback(tmp_path, 6, hook=hook, unreachable="p2")
    # Then the run is recorded rollback_failed (3), p2 unreachable with its SSH error
    assert rc != 0 and "UNREACHABLE" in out and groups == [["p1", "p2", "p3"]], out
    with StateStore(tmp_path / "state.db") as st:
        [row] = st.history("production")
        assert (row.action, row.status, row.exit_code) == ("rollback", "rollback_failed", 3)
        assert st.host_phases(row.id)["p2"] == "unreachable"
        [lost] = [e for e in st.host_events(row.id) if e.host == "p2"]
        assert lost.detail["msg"].startswith("unreachable: ")
        assert "connect to host 127.0.0.1 port 1: Connection refused" in lost.detail["msg"]
        assert st.lock_holder("production") is None


def test_a_plain_run_that_stops_on_an_unreachable_host_is_ended_by_its_guardian_rolled_back(tmp_path):
    # Given a playbook that begins a recorded plain run (the policy step, as deploy.yml's) on
    # localhost and `gone` (ssh to a closed loopback port), then reaches every host, and has no end step
    db = tmp_path / "state.db"
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {
        "here": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "gone": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1}}}}))
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "any_errors_fatal": True, "tasks": [
        {"name": "lrelease policy", "lrelease.release.lrelease_policy": {
            "step": "begin", "env": "production", "build": "1.1.0", "state_db": str(db),
            "hosts": "{{ ansible_play_hosts_all }}", "job_id": "77"}, "run_once": True, "register": "policy"},
        {"name": "Reach the host", "ansible.builtin.ping": {}}]}]))
    # When it runs with plain ansible-playbook from the checkout (its ansible.cfg)
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inv), str(play)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "UNREACHABLE" in proc.stdout, proc.stdout
    # Then its guardian ends the run rolled_back (1: nothing moved), `gone` recorded unreachable: not interrupted
    with StateStore(db) as st:
        [row] = st.history("production")
        row = _wait(lambda: (r := st.rollout(row.id)).status != "running" and r, 30)
        assert (row.status, row.exit_code, row.plan["ended_by"]["failed_hosts"]) == ("rolled_back", 1, ["gone"])
        assert st.host_phases(row.id) == {"gone": "unreachable"}
        assert st.lock_holder("production") is None
