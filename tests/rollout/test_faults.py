"""The fault suite on the sandbox: a node's link or sshd lost mid-roll-out, a full deploy root while
staging, a rollback that cannot reach a host, a concurrent roll-out, a corrupt artifact. Each test
ends with every host on a complete build that its app serves, and with the database telling what
the hosts' own ledgers and `current` say."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import tarfile
from collections.abc import Iterator

import pytest

from lrelease.sandbox import services
from tests.rollout.conftest import Project
from tests.rollout.test_failure_paths import lines_of, spawn, wait_for
from tests.rollout.test_stop import lb_states

BASE = "1.0.0"
MANIFEST = ".lrelease-manifest.json"


class Faults:
    """Faults injected through the sandbox's own hooks; every one is cleared at the end of the test,
    whatever happened (the `fleet` fixture only resets before the next test)."""

    def __init__(self, sandbox) -> None:
        self.sandbox, self.nodes = sandbox, set()

    def __call__(self, node: str, kind: str) -> None:
        self.nodes.add(node)
        self.sandbox.fault(node, kind)

    def clear(self) -> None:
        for node in sorted(self.nodes):
            self.sandbox.fault(node, "clear")


@pytest.fixture
def faults(fleet) -> Iterator[Faults]:
    for node in fleet.config.all_nodes():  # reset() leaves HAProxy alone: start with every node in it
        services.haproxy_command(fleet.config, f"set server be_{fleet.config.app}/{node.name} state ready")
    injected = Faults(fleet)
    try:
        yield injected
    finally:
        injected.clear()


def quick(project: Project, waves: list) -> Project:
    """The same project with short waves and a 1 s bake."""
    return Project(project.sandbox, project.path.parent, waves=waves, bake_seconds=1, gate_timeout_seconds=10)


def outcome_of(project: Project, proc) -> dict:
    """The JSON outcome a spawned CLI wrote (stderr lines may come before it)."""
    log = (project.path.parent / "deploy.log").read_text()
    start = re.search(r"^\{", log, re.M)
    assert start is not None, f"no JSON outcome (rc {proc.returncode}):\n{log[-3000:]}"
    return {"exit_code": proc.returncode, **json.JSONDecoder().raw_decode(log[start.start():])[0]}


def assert_hosts_complete(project: Project, builds: dict[str, str]) -> None:
    """Each host's `current` is a complete release (every file of the build's artifact there; the
    manifest lrelease writes once staging is done, for the builds it staged; no partial left), the
    app there serves that build, and the host's ledger ends on it."""
    for n, build in builds.items():
        root = project.cfg.node_root(project.cfg.find_node(n))
        target = (root / "current").resolve()
        assert (target.parent, target.name) == ((root / "releases").resolve(), build), n
        with tarfile.open(project.cfg.artifacts_dir / f"{project.cfg.app}-{build}.tar.gz") as tar:
            files = [m.name for m in tar.getmembers() if m.isfile()]
        assert files and not [f for f in files if not (target / f).is_file()], f"{n}: releases/{build} is incomplete"
        if build != BASE:  # the sandbox installs the baseline itself, without a manifest
            assert (target / MANIFEST).is_file(), f"{n}: releases/{build} has no manifest"
        assert not list((root / "releases").glob(".*.partial")), f"{n}: a partial release is left"
        assert project.serving(n) == build, n
        ledger = project.ledger(n)
        assert (ledger[-1]["to"] if ledger else BASE) == build, (n, ledger[-1:])


def assert_record_agrees(project: Project, rollout_id: str) -> dict:
    """`show ID --json` and `history --json` agree with the ledgers: a host whose ledger has a
    switch and a rollback line of this roll-out is recorded rolled back, one with a switch only
    as switched and judged, one with no line as never moved. Returns the `show` record."""
    shown = project.json("show", rollout_id)
    [row] = [r for r in project.json("history", "--env", "production")["rollouts"] if r["id"] == rollout_id]
    assert (row["status"], row["exit_code"], row["hosts"]) == (shown["status"], shown["exit_code"], shown["hosts"])
    for n in project.nodes:
        events = [e[0] for e in lines_of(project, n, rollout_id)]
        phase = shown["hosts"].get(n)
        if events in (["switch", "rollback"], ["rollback"]):
            assert phase == "rolled_back", (n, events, phase)
        elif events == ["switch"]:
            assert phase in ("switched", "gate_passed"), (n, events, phase)
        else:
            assert events == [] and phase not in ("switched", "gate_passed", "rolled_back"), (n, events, phase)
    return shown


def outcome_line(output: str, start: str) -> str:
    """The CLI's closing line (from ``start`` on), its wrapping by the terminal width undone."""
    text = " ".join(output.split())
    assert start in text, output
    return text[text.rindex(start):]


def releases_of(project: Project, n: str) -> set[str]:
    root = project.cfg.node_root(project.cfg.find_node(n)) / "releases"
    return {p.name for p in root.iterdir()}


# -- a host lost mid-roll-out ------------------------------------------------------------------
def deploy_losing(p: Project, faults: Faults, build: str, node: str, kind: str) -> dict:
    """Deploy ``build`` and lose ``node`` (fault ``kind``) once the canary, node1, has switched;
    the outcome once the CLI has ended."""
    p.build(build)
    proc = spawn(p, "deploy", "--env", "production", "--build", build)
    try:
        wait_for(p, proc, lambda: p.current("node1") == build)
        faults(node, kind)
        proc.wait(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return outcome_of(p, proc)


@pytest.mark.parametrize("kind", ["link-down", "sshd-stop"])
def test_a_host_lost_mid_rollout_stops_it_and_the_hosts_that_switched_are_rolled_back(project: Project,
                                                                                    faults: Faults, kind: str):
    # Given a roll-out one host a wave, node3 in the third wave
    p = quick(project, [1, 1, 1, "100%"])
    # When node3 is lost (its link down, or its sshd stopped) once the canary has switched
    out = deploy_losing(p, faults, "8.1.0", "node3", kind)
    # Then the roll-out stops at node3, reported unreachable; the two hosts that switched are
    # rolled back (exit 1: failed and rolled back cleanly); no host after node3 was touched
    assert (out["exit_code"], out["status"]) == (1, "rolled_back"), out["message"]
    assert out["unreachable"] == ["node3"], out
    assert (out["switched"], out["rolled_back"]) == (["node1", "node2"], ["node1", "node2"]), out
    assert "unreachable: node3" in out["message"]
    for n in ("node1", "node2"):
        assert lines_of(p, n, out["rollout_id"]) == [("switch", BASE, "8.1.0"), ("rollback", "8.1.0", BASE)], n
    # And once node3 is back, every host is on the baseline, complete and serving, in service
    faults.clear()
    assert_hosts_complete(p, {n: BASE for n in p.nodes})
    assert lb_states(p) == {n: "ready" for n in p.nodes}
    # And the database says what the hosts say: node3 unreachable, the two others rolled back
    shown = assert_record_agrees(p, out["rollout_id"])
    assert (shown["status"], shown["exit_code"], shown["hosts"]["node3"]) == ("rolled_back", 1, "unreachable")


def test_a_host_lost_in_a_wave_of_several_stops_the_roll_out_at_that_wave(project: Project, faults: Faults):
    # Given waves [1, 1, 2, 100%]: node3 and node4 in the third wave (Ansible's max_fail_percentage
    # counts failed hosts, not unreachable ones: the wave's other host finishes and, unless the
    # playbook sees the lost one, the next wave starts)
    p = quick(project, [1, 1, 2, "100%"])
    # When node4's sshd stops once the canary has switched
    out = deploy_losing(p, faults, "8.2.0", "node4", "sshd-stop")
    # Then no wave starts after node4's: node5 and node6 were never touched; node4 is reported
    # unreachable and the hosts that switched are rolled back (exit 1)
    assert (out["exit_code"], out["status"]) == (1, "rolled_back"), out["message"]
    assert out["unreachable"] == ["node4"], out
    for n in ("node5", "node6"):
        assert lines_of(p, n, out["rollout_id"]) == [], n
    assert out["switched"] == out["rolled_back"] == ["node1", "node2", "node3"], out
    # And once node4 is back, every host is on the baseline, complete and serving
    faults.clear()
    assert_hosts_complete(p, {n: BASE for n in p.nodes})
    assert_record_agrees(p, out["rollout_id"])


# -- the deploy root full while staging --------------------------------------------------------
def test_a_full_deploy_root_fails_staging_and_no_host_switches(project: Project, faults: Faults):
    # Given node3's deploy root full
    p = quick(project, [1, 1, "100%"])
    p.build("8.3.0")
    faults("node3", "disk-full")
    # When a build is deployed
    result = p.cli("deploy", "--env", "production", "--build", "8.3.0", "--yes")
    # Then staging fails on node3 and nothing switches: exit 1 (failed, nothing left to undo; not a
    # usage error), with the final line naming the host and the full disk
    assert result.exit_code == 1, result.output
    final = outcome_line(result.output, "deploy 8.3.0 on production:")
    assert "node3" in final and "No space left on device" in final, result.output
    # (the other hosts staged it, and were stopped only because node3 failed: not named as failed)
    assert not re.search(r"\bnode[1245]\b", final), final
    [row] = p.json("history", "--env", "production")["rollouts"]
    # And no host has a ledger line of it, node3 kept no partial release or incoming artifact
    for n in p.nodes:
        assert lines_of(p, n, row["id"]) == [], n
    root3 = p.cfg.node_root(p.cfg.find_node("node3"))
    assert releases_of(p, "node3") == {BASE}
    assert not list((root3 / ".lrelease").glob("incoming/*")), list((root3 / ".lrelease").glob("incoming/*"))
    # And once the disk is freed every host is on the baseline, complete and serving
    faults.clear()
    assert_hosts_complete(p, {n: BASE for n in p.nodes})
    assert lb_states(p) == {n: "ready" for n in p.nodes}
    # And the database agrees: nothing moved, node3 failed
    shown = assert_record_agrees(p, row["id"])
    assert (shown["status"], shown["exit_code"], shown["hosts"].get("node3")) == ("rolled_back", 1, "failed")


# -- the rollback itself failing ---------------------------------------------------------------
def test_a_rollback_that_cannot_reach_a_host_exits_3_naming_each_hosts_build_and_the_next_command(
        project: Project, faults: Faults):
    # Given a good build live everywhere
    p = quick(project, [1, 1, "100%"])
    p.build("8.4.0")
    deployed = p.json("deploy", "--env", "production", "--build", "8.4.0", "--yes")
    assert deployed["exit_code"] == 0, deployed["message"]
    # And node3 unreachable over SSH
    faults("node3", "sshd-stop")
    # When the environment is rolled back
    result = p.cli("rollback", "--env", "production", "--yes")
    # Then the rollback fails: exit 3, a human is needed
    assert result.exit_code == 3, result.output
    [rollback] = [r for r in p.json("history", "--env", "production")["rollouts"] if r["action"] == "rollback"]
    assert (rollback["status"], rollback["exit_code"]) == ("rollback_failed", 3)
    assert rollback["undoes"] == deployed["rollout_id"]
    # And the output names each host's build as it is now, and node3 as unreachable
    now = {n: p.current(n) for n in p.nodes}
    assert now["node3"] == "8.4.0" and now["node1"] == BASE, now
    final = outcome_line(result.output, "rollback 8.4.0 on production:")
    for n, build in now.items():
        if n != "node3":
            assert re.search(rf"\b{n}\b(?: on|:)? {re.escape(build)}\b", final), (n, build, final)
    assert re.search(r"\bnode3:? (?:on \S+ )?\(?unreachable", final), final
    # And the exact next command, which, once node3 is back, finishes the rollback
    [next_command] = set(re.findall(r"`(lrelease rollback --env production)`", final))
    faults.clear()
    again = p.json(*next_command.split()[1:], "--yes")
    assert again["exit_code"] == 0, again["message"]
    assert sorted(again["rolled_back"]) == sorted(n for n, b in now.items() if b == "8.4.0")
    assert_hosts_complete(p, {n: BASE for n in p.nodes})
    assert lb_states(p) == {n: "ready" for n in p.nodes}
    # And each host was rolled back exactly once, and both rollbacks' records agree with the ledgers
    for n in p.nodes:
        assert [e["event"] for e in p.ledger(n)] == ["switch", "rollback"], n
    assert assert_record_agrees(p, rollback["id"])["hosts"]["node3"] == "unreachable"
    assert_record_agrees(p, again["rollout_id"])


# -- a concurrent roll-out ---------------------------------------------------------------------
def test_a_second_rollout_while_one_runs_is_refused_with_exit_4_naming_the_holder(project: Project):
    # Given a roll-out one host a wave, running
    p = Project(project.sandbox, project.path.parent, waves=[1], bake_seconds=2, gate_timeout_seconds=10)
    p.build("8.5.0")
    p.build("8.5.1")
    first = spawn(p, "deploy", "--env", "production", "--build", "8.5.0")
    try:
        wait_for(p, first, lambda: p.current("node1") == "8.5.0")
        with sqlite3.connect(p.path.parent / "state" / "lrelease.db") as conn:
            [(holder,)] = conn.execute("SELECT id FROM rollouts WHERE status = 'running'").fetchall()
        # When a second deploy of another build starts
        second = p.cli("deploy", "--env", "production", "--build", "8.5.1", "--yes")
        # Then it is refused by policy (exit 4) in one line naming the holder: roll-out, pid, host
        assert second.exit_code == 4, second.output
        assert second.output.count("\n") == 1, second.output
        assert f"roll-out {holder} (pid {first.pid} on {socket.gethostname()}" in second.output
        # And it changed nothing: no host has even staged its build
        for n in p.nodes:
            assert "8.5.1" not in releases_of(p, n), n
        assert first.wait(timeout=400) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # And the first finished undisturbed: every host on its build, switched exactly once
    assert_hosts_complete(p, {n: "8.5.0" for n in p.nodes})
    for n in p.nodes:
        assert [(e["event"], e["to"]) for e in p.ledger(n)] == [("switch", "8.5.0")], n
    # And the history holds the first as succeeded and nothing of the second but a refusal
    rows = p.json("history", "--env", "production")["rollouts"]
    assert [(r["id"], r["status"]) for r in rows if r["build"] == "8.5.0"] == [(holder, "succeeded")]
    assert all(r["status"] == "refused" and r["hosts"] == {} for r in rows if r["build"] == "8.5.1"), rows
    assert_record_agrees(p, holder)


# -- a corrupt artifact ------------------------------------------------------------------------
def test_a_corrupt_artifact_is_refused_before_any_host_changes(project: Project):
    # Given an artifact whose bytes changed after its .sha256 was written
    art = project.build("8.6.0")
    data = bytearray(art.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.path.write_bytes(bytes(data))
    # When it is deployed
    result = project.cli("deploy", "--env", "production", "--build", "8.6.0", "--yes")
    # Then it is refused in one line naming the file and both checksums, exit 2
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1, result.output
    assert str(art.path) in result.output and "sha256" in result.output
    assert "refused before any host changed" in result.output
    # And no host has even staged it; every host is on the baseline, complete and serving
    for n in project.nodes:
        assert releases_of(project, n) == {BASE}, n
    assert_hosts_complete(project, {n: BASE for n in project.nodes})
    # And the database records no roll-out that moved anything
    rows = project.json("history", "--env", "production")["rollouts"]
    assert all(r["status"] == "refused" and r["hosts"] == {} for r in rows), rows
