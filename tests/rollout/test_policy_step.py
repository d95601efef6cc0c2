"""The playbooks' policy step on the sandbox: deploy.yml and rollback.yml run by plain
ansible-playbook as AWX runs them (extra vars from a file, awx_user_name / awx_job_id) take the
environment's lock, record the roll-out and each host's progress in the project's state, and end
the record and free the lock however the run ends: success, a failed gate, SIGKILL, a host lost
(unreachable: recorded by the callback plugin lrelease_record).

The session fleet (6 nodes); runs are limited to three of them (canary, then the rest) to stay
short; the verdicts do not depend on the bake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from lrelease import policystep, statedb
from lrelease.config import load_config
from lrelease.rollout import Releaser
from lrelease.sandbox import services
from lrelease.state import StateStore, new_rollout_id
from tests.rollout.conftest import Project
from tests.rollout.test_faults import assert_hosts_complete

ROOT = Path(__file__).resolve().parents[2]
BASE = "1.0.0"
HOSTS = 3


@pytest.fixture
def awx(fleet, tmp_path):
    return Awx(Project(fleet, tmp_path, waves=[1, "100%"], bake_seconds=0, gate_timeout_seconds=4))


class Awx:
    """Plain ansible-playbook runs of the project's production environment, as a job template."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.config = load_config(project.path)
        self.env = self.config.environment("production")
        self.inventory = Releaser(self.config).inventory(self.env)
        self.db = self.config.db_path
        self.hosts = project.nodes[:HOSTS]

    def store(self) -> StateStore:
        return StateStore(self.db)

    def extravars(self, build: str, **extra) -> dict:
        art = self.project.build(build, **extra.pop("behaviour", {}))
        return {**self.env.playbook_vars(), "lrelease_build": art.build, "lrelease_artifact": str(art.path),
                "lrelease_artifact_sha256": art.sha256, "lrelease_waves": [1, "100%"], "lrelease_hosts": "production",
                "lrelease_state_db": str(self.db), "awx_user_name": "alice", **extra}

    def argv(self, playbook: str, extravars: dict) -> list[str]:
        vars_file = self.project.path.parent / f"vars-{playbook}-{time.monotonic_ns()}.json"
        vars_file.write_text(json.dumps(extravars))
        return [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(self.inventory), f"playbooks/{playbook}",
                "-l", ",".join(self.hosts), "-e", f"@{vars_file}"]

    def environ(self, **more: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("LRELEASE_USER", "LRELEASE_STATE_URL",
                                                                  "LRELEASE_STATE_URL_FILE")}
        return {**env, "ANSIBLE_NOCOLOR": "1", **more}

    def play(self, playbook: str, extravars: dict) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(playbook, extravars), cwd=ROOT, env=self.environ(), capture_output=True,
                              text=True, timeout=300)

    def history(self) -> list[dict]:
        return self.project.json("history", "--env", "production")["rollouts"]

    def wait_ended(self, rid: str, seconds: float = 30) -> dict:
        """The row once its guardian (or the playbook) ended it."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.store() as st:
                row = st.rollout(rid)
                if row.status != "running" and st.lock_holder("production") is None:
                    return row.to_dict()
            time.sleep(0.5)
        raise AssertionError(f"roll-out {rid} still running or locked after {seconds} s")


def test_a_plain_run_is_refused_while_the_cli_holds_the_lock_then_an_awx_run_is_recorded(awx):
    # Given a CLI roll-out holding production's lock (a live process: this one, beating its heartbeat)
    cli_rid = new_rollout_id()
    with awx.store() as st, st.acquire_lock("production", cli_rid):
        st.start_rollout("production", "0.9.0", "deploy", "bob", rollout_id=cli_rid)
        # When AWX runs deploy.yml with plain ansible-playbook
        refused = awx.play("deploy.yml", awx.extravars("1.1.0", awx_job_id=4241))
        # Then it is refused, naming the holder, before any host changed
        assert refused.returncode != 0
        assert f"locked by roll-out {cli_rid}" in refused.stdout and f"pid {os.getpid()}" in refused.stdout
        assert {n: awx.project.current(n) for n in awx.hosts} == {n: BASE for n in awx.hosts}
        assert "lrelease.release.lrelease_stage : staged" not in refused.stdout
        st.finish_rollout(cli_rid, "succeeded", 0)

    # When the lock is free and AWX runs it again
    ok = awx.play("deploy.yml", awx.extravars("1.1.0", awx_job_id=4242))

    # Then it succeeds and history shows it with its user and AWX job id; the lock is free
    assert ok.returncode == 0, ok.stdout[-3000:]
    assert {n: awx.project.current(n) for n in awx.hosts} == {n: "1.1.0" for n in awx.hosts}
    [row] = [r for r in awx.history() if r["plan"].get("via", {}).get("job_id") == "4242"]
    assert (row["action"], row["build"], row["status"], row["exit_code"], row["actor"]) == \
        ("deploy", "1.1.0", "succeeded", 0, "alice")
    assert row["hosts"] == {h: "gate_passed" for h in awx.hosts}
    assert {g["host"] for g in row["gates"]} == set(awx.hosts) and {g["wave"] for g in row["gates"]} == {1, 2}
    table = awx.project.cli("history", "--env", "production").stdout
    assert "AWX job 4242" in table and "alice" in table
    assert "AWX job 4242" in awx.project.cli("show", row["id"]).stdout
    with awx.store() as st:
        assert st.lock_holder("production") is None
    # and the hosts' ledgers carry the recorded id, so `lrelease rollback` knows what to undo
    assert awx.project.ledger(awx.hosts[0])[-1]["rollout_id"] == row["id"]
    with awx.store() as st:
        assert st.to_undo("production").id == row["id"]

    # When rollback.yml runs without the wrapper, undoing that job (as the AWX workflow hands it on)
    back = awx.play("rollback.yml", {**awx.extravars("1.1.0", awx_job_id=4243),
                                     "lrelease_rollback_build": "1.1.0", "lrelease_rollback_undo": [row["id"]]})

    # Then the same lock and record: a rollback row that undoes it, each host rolled back, lock free
    assert back.returncode == 0, back.stdout[-3000:]
    [rb] = [r for r in awx.history() if r["plan"].get("via", {}).get("job_id") == "4243"]
    assert (rb["action"], rb["status"], rb["exit_code"], rb["undoes"]) == ("rollback", "succeeded", 0, row["id"])
    assert rb["hosts"] == {h: "rolled_back" for h in awx.hosts}
    assert {n: awx.project.current(n) for n in awx.hosts} == {n: BASE for n in awx.hosts}
    with awx.store() as st:
        # (what is left to undo is the older CLI roll-out, no longer the AWX one)
        assert st.lock_holder("production") is None and st.to_undo("production").id == cli_rid


def test_a_failed_awx_run_is_ended_by_its_guardian_and_frees_the_lock(awx):
    # When AWX deploys a build that fails its health check on the canary
    bad = awx.play("deploy.yml", awx.extravars("1.2.0", awx_job_id=4250, behaviour={"health_fail": True}))

    # Then the play fails, and the record says so, with the lock free (the guardian ended it)
    assert bad.returncode != 0
    [row] = [r for r in awx.history() if r["plan"].get("via", {}).get("job_id") == "4250"]
    row = awx.wait_ended(row["id"])
    canary = awx.hosts[0]
    assert (row["status"], row["exit_code"]) == ("halted", 5)  # the canary stays on it for the rollback
    assert row["plan"]["ended_by"]["failed_hosts"] == [canary]
    with awx.store() as st:
        assert st.host_phases(row["id"]) == {h: "staged" for h in awx.hosts[1:]} | {canary: "gate_failed"}
        assert [g.verdict for g in st.gates(row["id"])] == ["fail"]
        assert st.to_undo("production").id == row["id"]


def test_an_awx_run_whose_staging_fails_is_recorded_as_the_wrapper_records_it(fleet, tmp_path):
    # Given a before_stage hook that fails on every host (staging fails before any host moved)
    awx = Awx(Project(fleet, tmp_path, waves=[1, "100%"], bake_seconds=0, gate_timeout_seconds=4,
                      hooks={"before_stage": [{"shell": "echo no space left >&2; exit 3"}]}))
    # When AWX runs deploy.yml with plain ansible-playbook
    bad = awx.play("deploy.yml", awx.extravars("1.5.0", awx_job_id=4255))
    # Then the play fails, and the record says what the wrapper says for it: rolled_back (exit 1:
    # failed, nothing moved, nothing to undo), each host failed (not an interrupted run), lock free
    assert bad.returncode != 0
    [row] = [r for r in awx.history() if r["plan"].get("via", {}).get("job_id") == "4255"]
    row = awx.wait_ended(row["id"])
    assert (row["status"], row["exit_code"]) == ("rolled_back", 1)
    assert row["plan"]["ended_by"]["failed_hosts"] == sorted(awx.hosts)
    with awx.store() as st:
        assert st.host_phases(row["id"]) == {h: "failed" for h in awx.hosts}
    assert {n: awx.project.current(n) for n in awx.hosts} == {n: BASE for n in awx.hosts}


def test_an_awx_run_killed_mid_run_leaves_a_lock_the_next_run_takes(awx):
    # Given an AWX run in its bake on the canary
    argv = awx.argv("deploy.yml", {**awx.extravars("1.3.0", awx_job_id=4260), "lrelease_bake_seconds": 60})
    log = (awx.project.path.parent / "killed.log").open("w")  # a file, not a pipe nobody reads
    proc = subprocess.Popen(argv, cwd=ROOT, env=awx.environ(), stdout=log, stderr=subprocess.STDOUT)
    try:
        rid = _wait_for_switch(awx, "4260")
        # When ansible-playbook is killed with SIGKILL
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()

    # Then the row is not left running (interrupted) and the lock is free
    row = awx.wait_ended(rid)
    assert (row["status"], row["exit_code"]) == ("interrupted", 130)
    # and the next run takes the lock and goes on
    again = awx.play("deploy.yml", awx.extravars("1.3.0", awx_job_id=4261))
    assert again.returncode == 0, again.stdout[-3000:]
    assert {n: awx.project.current(n) for n in awx.hosts} == {n: "1.3.0" for n in awx.hosts}


def _wait_for_switch(awx: Awx, job: str, seconds: float = 90) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with awx.store() as st:
            rows = [r for r in st.history("production") if r.via.get("job_id") == job]
            if rows and "switched" in st.host_phases(rows[0].id).values():
                return rows[0].id
        time.sleep(0.5)
    raise AssertionError(f"AWX job {job} never switched a host within {seconds} s")


def test_a_plain_run_checks_the_release_policies_of_the_store_and_of_the_projects_file(awx):
    # Given production's release captain is carol
    with awx.store() as st:
        st.set_captain("production", "carol", set_by="carol")
    try:
        # When AWX user alice runs deploy.yml with plain ansible-playbook
        refused = awx.play("deploy.yml", awx.extravars("1.2.0", awx_job_id=4250))
        # Then it is refused naming the captain, before any host changed, and recorded as refused
        assert refused.returncode != 0
        assert "production's release captain is carol; alice is not" in refused.stdout
        assert "lrelease.release.lrelease_stage : staged" not in refused.stdout
        [row] = [r for r in awx.history() if r["plan"].get("via", {}).get("job_id") == "4250"]
        assert (row["status"], row["exit_code"], row["actor"]) == ("refused", 4, "alice")
        assert row["policy"]["refused"]["policy"] == "captain"
    finally:
        with awx.store() as st:
            st.clear_captain("production", cleared_by="carol")
    # When a run names the project's lrelease.yml but an environment the file does not have
    wrong = awx.play("deploy.yml", awx.extravars("1.2.0", lrelease_env="prod", lrelease_config=str(awx.project.path)))
    # Then it is refused in one line naming the file's environments (its policies cannot be skipped)
    assert wrong.returncode != 0
    assert "lrelease_env: 'prod' is not an environment of" in wrong.stdout and "production" in wrong.stdout
    assert {n: awx.project.current(n) for n in awx.hosts} == {n: BASE for n in awx.hosts}
    with awx.store() as st:
        assert st.lock_holder("prod") is None and st.lock_holder("production") is None


def test_a_plain_run_whose_window_closes_stops_at_the_next_wave_boundary_paused(fleet, tmp_path):
    # Given production's deploy window open now (UTC, from an hour ago to two hours on), a plain
    # run that names the project's lrelease.yml, and a controller hook after the canary's gate
    # that moves the wave-boundary check's clock past the close (the test-only clock file:
    # ansible-playbook is another process)
    now = datetime.now(timezone.utc)
    rule = f"daily {(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=2)):%H:%M}"
    clock_file = tmp_path / "boundary-now"
    hook = {"shell": f"echo 2099-01-01T00:00:00+00:00 > {clock_file}", "run_on": "controller"}
    awx = Awx(Project(fleet, tmp_path, waves=[1, "100%"], bake_seconds=0, gate_timeout_seconds=4,
                      window={"timezone": "UTC", "weekly": [rule]}, hooks={"after_gate": [hook]}))
    canary, rest = awx.hosts[0], awx.hosts[1:]

    # When AWX runs deploy.yml with plain ansible-playbook
    argv = awx.argv("deploy.yml", awx.extravars("1.4.0", awx_job_id=4270, lrelease_config=str(awx.project.path)))
    run = subprocess.run(argv, cwd=ROOT, env=awx.environ(**{policystep.TEST_NOW_FILE: str(clock_file)}),
                         capture_output=True, text=True, timeout=300)

    # Then it stopped at the boundary after the canary's wave: recorded paused (exit 5), nothing
    # rolled back, the canary on the new build and the others on theirs, each serving its build
    assert run.returncode != 0 and clock_file.exists(), run.stdout[-3000:]
    assert "window closed: the deploy window of production closed at" in run.stdout
    [row] = [r for r in awx.history() if r["plan"].get("via", {}).get("job_id") == "4270"]
    row = awx.wait_ended(row["id"])
    assert (row["status"], row["exit_code"]) == ("paused", 5)
    assert row["plan"]["window_closes_at"] == statedb.iso((now + timedelta(hours=2)).replace(second=0, microsecond=0))
    with awx.store() as st:
        assert st.host_phases(row["id"]) == {canary: "gate_passed"} | {h: "staged" for h in rest}
    assert {n: awx.project.current(n) for n in awx.hosts} == {canary: "1.4.0"} | {h: BASE for h in rest}
    assert {n: awx.project.serving(n) for n in awx.hosts} == {n: awx.project.current(n) for n in awx.hosts}

    # When `lrelease resume` runs inside the window (the real clock: it is open)
    resumed = awx.project.cli("resume", "--env", "production", "--yes")
    # Then the roll-out is finished on every host
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert {n: awx.project.serving(n) for n in awx.hosts} == {n: "1.4.0" for n in awx.hosts}


@pytest.mark.parametrize("waves", [[1, 1, 1], [1, "100%"]], ids=["alone-in-its-wave", "beside-another-host"])
def test_an_awx_run_that_loses_a_host_records_it_unreachable_and_ends_halted_not_interrupted(fleet, tmp_path, waves):
    # Given three hosts, and a controller hook after the canary's gate that stops the second host's
    # sshd (its SSH sessions ended: for Ansible the node is gone), once
    canary, lost, last = [n.name for n in fleet.config.all_nodes()][:HOSTS]
    marker = tmp_path / "lost"
    stop = f"{ROOT / '.venv' / 'bin' / 'lrelease'} sandbox fault {lost} sshd-stop --state-dir {fleet.state_dir}"
    hook = {"shell": f"[ -e {marker} ] || {{ {stop} && touch {marker}; }}", "run_on": "controller"}
    awx = Awx(Project(fleet, tmp_path, waves=waves, bake_seconds=0, gate_timeout_seconds=4,
                      hooks={"after_gate": [hook]}))
    assert awx.hosts == [canary, lost, last]
    try:
        # When AWX runs deploy.yml with plain ansible-playbook: the lost host is in the next wave
        # (alone: the play stops there, its guardian ends the run; or beside the last host, which
        # finishes: the playbook's end step ends it)
        run = awx.play("deploy.yml", awx.extravars("1.6.0", awx_job_id=4280, lrelease_waves=waves))
        assert marker.exists(), run.stdout[-3000:]
    finally:
        fleet.fault(lost, "clear")  # sshd back; the halted run leaves the lost host drained in HAProxy
        services.haproxy_command(fleet.config, f"set server be_{fleet.config.app}/{lost} state ready")

    # Then the run is halted (exit 5: the hosts that moved wait for a human or the rollback job),
    # not interrupted, with the lost host recorded unreachable and its SSH error
    assert run.returncode != 0 and "UNREACHABLE" in run.stdout, run.stdout[-3000:]
    [row] = [r for r in awx.history() if r["plan"].get("via", {}).get("job_id") == "4280"]
    row = awx.wait_ended(row["id"])
    assert (row["status"], row["exit_code"]) == ("halted", 5)
    moved = [canary] if waves == [1, 1, 1] else [canary, last]
    with awx.store() as st:
        assert st.host_phases(row["id"]) == ({h: "gate_passed" for h in moved} | {lost: "unreachable"}
                                             | {h: "staged" for h in awx.hosts if h not in moved + [lost]})
        [said] = [e.detail["msg"] for e in st.host_events(row["id"]) if e.phase == "unreachable"]
        assert said.startswith("unreachable: ") and "ssh" in said.lower() and len(said) <= 500
        assert st.to_undo("production").id == row["id"]
    if waves == [1, 1, 1]:
        assert row["plan"]["ended_by"]["failed_hosts"] == [lost]
    # And history and show name the unreachable host
    assert f"halted ({lost} unreachable)" in awx.project.cli("history", "--env", "production").stdout
    shown = " ".join(awx.project.cli("show", row["id"]).stdout.split())
    assert f"unreachable: {lost}" in shown
    # And every host is on a complete build that it serves: the moved ones on 1.6.0, the others on theirs
    assert_hosts_complete(awx.project, {h: "1.6.0" if h in moved else BASE for h in awx.hosts})
