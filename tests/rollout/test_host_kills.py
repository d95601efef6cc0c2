"""A host's switch killed after each of its steps, on the sandbox through the real roles: the
module dies (as if SIGKILLed) right after the step named in the host's one-shot
``.lrelease/test-kill-after``; the run that follows finishes or undoes the switch, every host ends
on a complete build, and each ledger records every switch exactly once."""

from __future__ import annotations

from tests.rollout.conftest import Project

BASE = "1.0.0"
# One host per step, all in the same run: node1 dies after writing its intent, node2 after
# .lrelease/previous, node3 after moving `current`, node4 after the ledger line.
KILLS = {"node1": "intent", "node2": "previous", "node3": "current", "node4": "ledger"}


def plant(project: Project) -> None:
    for node, step in KILLS.items():
        path = project.cfg.node_root(project.cfg.find_node(node)) / ".lrelease" / "test-kill-after"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(step + "\n")


def events(project: Project, node: str) -> list[tuple[str, str | None, str]]:
    return [(e["event"], e["from"], e["to"]) for e in project.ledger(node)]


def test_a_deploy_whose_switch_dies_after_each_step_ends_on_complete_builds_with_exact_ledgers(project: Project):
    # Given one wave of every host, and node1-4 set to die after each step of their switch
    one_wave = Project(project.sandbox, project.path.parent, waves=["100%"], bake_seconds=1, gate_timeout_seconds=10)
    one_wave.build("2.3.0")
    plant(one_wave)
    # When the build is deployed
    out = one_wave.json("deploy", "--env", "production", "--build", "2.3.0", "--yes")
    # Then the roll-out fails and is rolled back cleanly: every host serves the baseline again
    assert out["exit_code"] == 1, out["message"]
    assert {n: one_wave.serving(n) for n in one_wave.nodes} == {n: BASE for n in one_wave.nodes}
    assert {n: one_wave.current(n) for n in one_wave.nodes} == {n: BASE for n in one_wave.nodes}
    # And each ledger holds the switch exactly once, and exactly one way back
    for n in one_wave.nodes:
        lines = events(one_wave, n)
        assert lines.count(("switch", BASE, "2.3.0")) == 1, (n, lines)
        assert len(lines) == 2 and lines[1][1:] == ("2.3.0", BASE), (n, lines)
    # And no half-done switch is left on any host, and a second deploy goes through
    for n in one_wave.nodes:
        assert not (one_wave.cfg.node_root(one_wave.cfg.find_node(n)) / ".lrelease" / "pending").exists(), n
    again = one_wave.json("deploy", "--env", "production", "--build", "2.3.0", "--yes")
    assert again["exit_code"] == 0, again["message"]
    assert {n: one_wave.serving(n) for n in one_wave.nodes} == {n: "2.3.0" for n in one_wave.nodes}


def test_a_rollback_whose_switch_dies_after_each_step_is_finished_by_running_it_again(project: Project):
    # Given 2.4.0 live everywhere, and node1-4 set to die after each step of their way back (all
    # hosts in one group, so each of them gets to its step in the first run)
    project = Project(project.sandbox, project.path.parent, bake_seconds=1, gate_timeout_seconds=10,
                      rollback={"min_in_service": 0})
    project.build("2.4.0")
    assert project.json("deploy", "--env", "production", "--build", "2.4.0", "--yes")["exit_code"] == 0
    plant(project)
    # When the environment is rolled back: those hosts die half-way, a human is needed (exit 3)
    first = project.json("rollback", "--env", "production", "--yes")
    assert first["exit_code"] == 3, first["message"]
    assert sorted(first["failed"]) == sorted(KILLS), first["message"]
    # And the rollback is run again
    again = project.json("rollback", "--env", "production", "--yes")
    # Then it completes: every host serves the baseline, each with exactly one rollback line
    assert again["exit_code"] == 0, again["message"]
    assert {n: project.serving(n) for n in project.nodes} == {n: BASE for n in project.nodes}
    for n in project.nodes:
        lines = events(project, n)
        assert lines == [("switch", BASE, "2.4.0"), ("rollback", "2.4.0", BASE)], (n, lines)
        assert not (project.cfg.node_root(project.cfg.find_node(n)) / ".lrelease" / "pending").exists(), n
