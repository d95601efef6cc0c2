"""The bad day on the sandbox: a rollback after a halt or an interrupted deploy undoes what is on
the hosts; a crash exits 70 and says so; an interrupted automatic rollback is finished by `resume`,
never deployed again. Every test ends with each host on a complete build and the history true."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.rollout.conftest import Project
from tests.statedbs import raw

BASE = "1.0.0"
LRELEASE = str(Path(sys.executable).parent / "lrelease")


def closed_port() -> int:
    """A loopback port nobody listens on (an APM provider that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines_of(project: Project, node: str, rollout_id: str) -> list[tuple[str, str | None, str]]:
    return [(e["event"], e["from"], e["to"]) for e in project.ledger(node) if e.get("rollout_id") == rollout_id]


def spawn(project: Project, *args: str, **env: str) -> subprocess.Popen:
    """The CLI as its own process (to be killed), its output in files beside the project."""
    environ = {**os.environ, "LRELEASE_CONFIG": str(project.path), **env}
    log = project.path.parent / f"{args[0]}.log"
    with open(log, "w") as out:
        return subprocess.Popen([LRELEASE, *args, "--yes", "--json"], env=environ, stdout=out, stderr=subprocess.STDOUT)


def wait_for(project: Project, proc: subprocess.Popen, condition, seconds: float = 180) -> None:
    """Wait until ``condition``; fail with the process's output if it ended first or time ran out."""
    deadline = time.monotonic() + seconds
    while not condition():
        log = next(project.path.parent.glob("*.log")).read_text()
        assert proc.poll() is None, f"the process ended first (rc {proc.returncode}):\n{log[-3000:]}"
        assert time.monotonic() < deadline, f"timed out:\n{log[-3000:]}"
        time.sleep(0.2)


def test_rollback_after_a_halt_undoes_the_halted_rollout_not_the_last_success(project: Project):
    # Given 1.1.0 live everywhere
    project.build("1.1.0")
    good = project.json("deploy", "--env", "production", "--build", "1.1.0", "--yes")
    assert good["exit_code"] == 0, good["message"]
    # And 2.2.0 halted on the canary (its APM provider is down: the gate cannot decide)
    halting = Project(project.sandbox, project.path.parent, waves=[1, 1, "100%"], bake_seconds=1,
                      gate={"provider": {"kind": "prometheus", "url": f"http://127.0.0.1:{closed_port()}"},
                            "bake_seconds": 1, "interval_seconds": 1, "max_bake_seconds": 2, "policy": "halt"})
    halting.build("2.2.0")
    halted = halting.json("deploy", "--env", "production", "--build", "2.2.0", "--yes")
    assert (halted["exit_code"], halted["status"], halted["switched"]) == (5, "halted", ["node1"]), halted["message"]
    # When the operator first asks what a rollback would do
    dry = project.json("rollback", "--env", "production", "--dry-run")
    # Then it names the halted roll-out and each host's current build and target, and changes nothing
    assert dry["undoes"]["id"] == halted["rollout_id"]
    assert {h["host"]: (h["current"], h["target"]) for h in dry["hosts"]} == {
        "node1": ("2.2.0", "1.1.0"), **{n: ("1.1.0", None) for n in project.nodes[1:]}}
    assert project.current("node1") == "2.2.0"
    # When the environment is rolled back
    out = project.json("rollback", "--env", "production", "--yes")
    # Then only the canary moved, back to 1.1.0 (the build it ran before the halted roll-out)
    assert out["exit_code"] == 0, out["message"]
    assert out["rolled_back"] == ["node1"]
    assert {n: project.serving(n) for n in project.nodes} == {n: "1.1.0" for n in project.nodes}
    assert lines_of(project, "node1", out["rollout_id"]) == [("rollback", "2.2.0", "1.1.0")]
    for n in project.nodes[1:]:
        assert lines_of(project, n, out["rollout_id"]) == [], n
    # And its recorded previous build is what it was before 2.2.0, never the bad build
    prev = (project.cfg.node_root(project.cfg.find_node("node1")) / ".lrelease" / "previous").read_text().strip()
    assert prev == BASE
    # And the history says what was undone, and the halted roll-out can no longer be resumed
    hist = project.json("history", "--env", "production")["rollouts"]
    assert (hist[0]["action"], hist[0]["undoes"], hist[0]["status"]) == ("rollback", halted["rollout_id"], "succeeded")
    refused = project.cli("resume", "--env", "production", "--yes")
    assert refused.exit_code == 2
    assert f"roll-out {halted['rollout_id']} of 2.2.0 was undone by rollback {out['rollout_id']}" in refused.output
    # And a second rollback goes one build further back: every host to the baseline
    again = project.json("rollback", "--env", "production", "--yes")
    assert again["exit_code"] == 0, again["message"]
    assert {n: project.serving(n) for n in project.nodes} == {n: BASE for n in project.nodes}
    assert sorted(again["rolled_back"]) == sorted(project.nodes)


def test_rollback_after_an_interrupted_deploy_moves_only_the_hosts_it_switched(project: Project):
    # Given a roll-out one host at a time, SIGKILLed once two hosts are on the new build
    slow = Project(project.sandbox, project.path.parent, waves=[1], bake_seconds=2, gate_timeout_seconds=10)
    slow.build("1.4.0")
    proc = spawn(slow, "deploy", "--env", "production", "--build", "1.4.0")
    wait_for(slow, proc, lambda: sum(slow.current(n) == "1.4.0" for n in slow.nodes) >= 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)  # ansible-playbook gets SIGTERM from the kernel when its parent dies
    moved = [n for n in slow.nodes if slow.current(n) == "1.4.0"]
    assert 2 <= len(moved) < len(slow.nodes)
    # When the environment is rolled back (no successful roll-out is recorded at all)
    out = slow.json("rollback", "--env", "production", "--yes")
    # Then exactly the hosts it had switched went back to the baseline; the others were not touched
    assert out["exit_code"] == 0, out["message"]
    assert out["rolled_back"] == sorted(moved)
    assert {n: slow.serving(n) for n in slow.nodes} == {n: BASE for n in slow.nodes}
    for n in slow.nodes:
        assert lines_of(slow, n, out["rollout_id"]) == ([("rollback", "1.4.0", BASE)] if n in moved else []), n
    # And the interrupted roll-out is closed: status no longer offers `resume`, resume refuses
    assert slow.json("status", "--env", "production")["interrupted"] == []
    assert slow.cli("resume", "--env", "production", "--yes").exit_code == 2


def test_a_crash_in_the_wrapper_exits_70_records_crashed_and_resume_finishes(project: Project, monkeypatch):
    # Given a wrapper that crashes right after its deploy playbook ended
    project.build("1.5.0")
    monkeypatch.setenv("LRELEASE_TEST_CRASH_AT", "after-deploy-playbook")
    # When it deploys
    result = project.cli("deploy", "--env", "production", "--build", "1.5.0", "--yes")
    # Then it exits 70, never 0 or 1, with one line that sends the operator to `status`
    assert result.exit_code == 70, result.output
    [line] = [ln for ln in result.output.splitlines() if ln.startswith("lrelease:")]
    assert "internal error" in line and "recorded as crashed" in line and "lrelease status --env production" in line
    assert "Traceback" not in result.output
    # And the roll-out is recorded as crashed, with exit code 70
    [row] = project.json("history", "--env", "production")["rollouts"][:1]
    assert (row["status"], row["exit_code"]) == ("crashed", 70)
    # And resume finishes it (every host had passed its gate: nothing to redeploy)
    monkeypatch.delenv("LRELEASE_TEST_CRASH_AT")
    out = project.json("resume", "--env", "production", "--yes")
    assert out["exit_code"] == 0, out["message"]
    assert {n: project.serving(n) for n in project.nodes} == {n: "1.5.0" for n in project.nodes}


def test_an_interrupted_automatic_rollback_is_finished_by_resume_never_redeployed(project: Project):
    # Given a bad build whose canary fails its gate, and the wrapper SIGKILLed as soon as its
    # automatic rollback has begun
    project.build("1.6.0-bad", health_fail=True)
    proc = spawn(project, "deploy", "--env", "production", "--build", "1.6.0-bad")
    db = project.path.parent / "state" / "lrelease.db"

    def rolling_back() -> bool:
        if not db.exists():
            return False
        try:
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT 1 FROM rollouts WHERE rollback_started_at IS NOT NULL").fetchone() is not None
        except sqlite3.OperationalError:  # the file exists, its tables not yet (the migrations are running)
            return False
    wait_for(project, proc, rolling_back)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)
    [deploy] = project.json("history", "--env", "production")["rollouts"]
    # When the operator resumes
    out = project.json("resume", "--env", "production", "--yes")
    # Then the rollback is finished (exit 1: failed and rolled back cleanly), the bad build is not deployed again
    assert out["exit_code"] == 1, out["message"]
    assert out["status"] == "rolled_back" and "continuing the automatic rollback" in out["message"]
    assert {n: project.serving(n) for n in project.nodes} == {n: BASE for n in project.nodes}
    for n in project.nodes:
        assert [e for e in lines_of(project, n, out["rollout_id"]) if e[0] == "switch"] == [], n
    switched = [e for e in project.ledger("node1") if e["event"] == "switch" and e["to"] == "1.6.0-bad"]
    assert len(switched) == 1
    # And the history tells it: the deploy interrupted, the resume rolled back
    hist = project.json("history", "--env", "production")["rollouts"]
    assert [(r["id"], r["status"]) for r in hist] == [(out["rollout_id"], "rolled_back"), (deploy["id"], "interrupted")]
    assert project.json("status", "--env", "production")["consistent"] is True


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (ansible-playbook, its workers, ssh)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def test_a_paused_holder_whose_lock_was_taken_over_touches_no_further_host_and_exits_4(project: Project, tmp_path):
    # Given a roll-out one host at a time whose lock lives 5 s without a heartbeat
    slow = Project(project.sandbox, project.path.parent, waves=[1], bake_seconds=3, gate_timeout_seconds=10)
    slow.build("1.7.0")
    first = spawn(slow, "deploy", "--env", "production", "--build", "1.7.0", LRELEASE_LOCK_TTL="5")
    wait_for(slow, first, lambda: slow.current("node1") == "1.7.0")
    # When it is paused (the whole process tree, as a suspended VM would be) past its TTL
    tree = [first.pid, *descendants(first.pid)]
    signal_all(tree, signal.SIGSTOP)
    try:
        # the project's SQLite file, or the shared database the environment names (LRELEASE_STATE_URL)
        db = os.environ.get("LRELEASE_STATE_URL") or slow.path.parent / "state" / "lrelease.db"
        [(first_id,)] = raw(db, "SELECT id FROM rollouts WHERE status = 'running'")
        before = {n for n in slow.nodes if lines_of(slow, n, first_id)}
        time.sleep(7)
        # And a process on another machine (its own hostname; its own ssh control sockets) takes
        # the lock over by resuming the roll-out, and finishes it
        env = {**os.environ, "LRELEASE_CONFIG": str(slow.path), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp")}
        second = subprocess.run(["unshare", "--uts", "sh", "-c", 'hostname lrelease-bastion-2 && exec "$0" "$@"',
                                 LRELEASE, "resume", "--env", "production", "--yes", "--json"],
                                env=env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-3000:]
    finally:
        signal_all(tree, signal.SIGCONT)
    # Then the first, continued, stops before touching another host and exits 4 naming the new holder
    assert first.wait(timeout=300) == 4, (slow.path.parent / "deploy.log").read_text()[-3000:]
    hist = {r["id"]: r for r in slow.json("history", "--env", "production")["rollouts"]}
    [second_id] = [i for i, r in hist.items() if r["action"] == "resume"]
    log = (slow.path.parent / "deploy.log").read_text()
    assert f"lost the lock of environment production; roll-out {second_id} (pid " in log
    assert "on lrelease-bastion-2) took it over at" in log
    after = {n for n in slow.nodes if lines_of(slow, n, first_id)}
    assert after == before == {"node1"}, (before, after)
    # And the history shows both: the first closed, the second that took the lock over from it
    assert hist[first_id]["status"] in ("interrupted", "lock_lost")
    assert hist[second_id]["took_over"]["rollout_id"] == first_id
    assert hist[second_id]["took_over"]["hostname"] != "lrelease-bastion-2"
    assert (hist[second_id]["status"], hist[second_id]["lock_token"] > hist[first_id]["lock_token"]) == ("succeeded", True)
    # And every node serves the build the second finished, each switched exactly once
    assert {n: slow.serving(n) for n in slow.nodes} == {n: "1.7.0" for n in slow.nodes}
    for n in slow.nodes:
        assert len([e for e in slow.ledger(n) if e["event"] == "switch" and e["to"] == "1.7.0"]) == 1, n


def test_a_first_install_whose_gate_fails_is_stopped_and_kept_out_of_the_load_balancer(project: Project):
    from lrelease.ansible.action.lrelease_haproxy import _module as haproxy_module
    from lrelease.sandbox import provision, services

    # Given node1 as a new host: its app stopped, no release, no `current`, no ledger
    cfg = project.cfg
    node1 = cfg.find_node("node1")
    provision.service(cfg, node1, "stop", check=False)
    root = cfg.node_root(node1)
    for name in ("current", "releases", ".lrelease"):
        path = root / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            import shutil
            shutil.rmtree(path)
    project.build("1.8.0-bad", health_fail=True)
    # When a build whose health fails is deployed (node1 is the canary)
    out = project.json("deploy", "--env", "production", "--build", "1.8.0-bad", "--yes")
    # Then the roll-out stops with exit 1, saying there was nothing to roll back to on node1
    assert out["exit_code"] == 1, out["message"]
    assert out["app_stopped"] == ["node1"] and out["rolled_back"] == []
    assert "node1: first install, nothing to roll back to" in out["message"]
    # And node1's app is stopped and it stays drained in HAProxy; no other host was touched
    read = haproxy_module().read_state
    state = read(str(services.haproxy_socket(cfg)), f"be_{cfg.app}", "node1", 5)["state"]
    assert state == "drain"
    import requests
    try:
        requests.get(f"http://{node1.address}:{node1.app_port}/version", timeout=2)
        answered = True
    except requests.RequestException:
        answered = False
    assert not answered
    for n in project.nodes[1:]:
        assert lines_of(project, n, out["rollout_id"]) == [] and project.serving(n) == BASE, n
