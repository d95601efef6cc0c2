"""Shared paths and hooks from lrelease.yml, on the sandbox over real SSH, in two roll-outs: a good
build (shared paths made and linked, a run-once migration, per-host hooks around the switch, a
controller hook), then a build whose migration fails on the canary before its switch."""

from __future__ import annotations

import stat

from tests.rollout.conftest import Project

BASE, GOOD, BAD = "1.0.0", "1.1.0", "1.2.0"
# Every hook appends "<time> <what> <host> <build> <what current points at> <previous build> <its
# directory>" to log/hooks.log: run in the release directory, log/ is the shared directory, so
# each node keeps one file across releases.
LINE = ('echo "$(date +%s.%N) {what} $LRELEASE_HOST $LRELEASE_BUILD $(readlink "$LRELEASE_DEPLOY_ROOT/current")'
        ' $LRELEASE_PREVIOUS_BUILD $(pwd)"')
HOOKS = {
    # The documented migration: once per roll-out, on the first host to reach its switch.
    "before_switch": [
        {"shell": LINE.format(what="migrate") + " >> log/hooks.log", "run_once": True},
        # A per-host step that fails on the canary for the bad build, with output on stderr.
        {"shell": LINE.format(what="before_switch") + ' >> log/hooks.log; if [ "$LRELEASE_BUILD" = ' + BAD
                  + ' ]; then echo "schema 42 is newer than this build" >&2; exit 7; fi'}],
    # The documented cache warm-up, once the restarted app listens.
    "after_restart": [{"shell": LINE.format(what="after_restart") + " >> log/hooks.log"}],
    # Once per roll-out on the controller, in the directory of lrelease.yml.
    "after_gate": [{"shell": 'echo "$LRELEASE_HOST $LRELEASE_BUILD $LRELEASE_ENV" >> controller-hooks.log',
                    "run_on": "controller"}],
}


def hook_lines(project: Project, node: str) -> list[list[str]]:
    path = project.cfg.node_root(project.cfg.find_node(node)) / "shared" / "log" / "hooks.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_shared_paths_persist_and_hooks_run_at_their_points_and_a_failing_one_stops_the_canary(fleet, tmp_path):
    # Given an environment with shared log/ and .env, and hooks at four points, in two waves
    project = Project(fleet, tmp_path, bake_seconds=1, gate_timeout_seconds=10, waves=[1, "100%"],
                      shared={"dirs": ["log"], "files": [".env"]}, hooks=HOOKS)
    project.build(GOOD)
    project.build(BAD)
    nodes, canary = project.nodes, project.nodes[0]
    roots = {n: project.cfg.node_root(project.cfg.find_node(n)) for n in nodes}

    # When the good build is deployed
    good = project.json("deploy", "--env", "production", "--build", GOOD, "--yes")
    # Then it succeeds everywhere
    assert good["exit_code"] == 0, good
    assert {n: project.serving(n) for n in nodes} == {n: GOOD for n in nodes}
    # And in each release log/ and .env are links into shared/, the file created empty with mode 0640
    for n in nodes:
        release = roots[n] / "releases" / GOOD
        links = [(release / p).readlink().as_posix() for p in ("log", ".env")]
        assert links == ["../../shared/log", "../../shared/.env"], n
        env_file = roots[n] / "shared" / ".env"
        assert env_file.read_text() == "" and stat.S_IMODE(env_file.stat().st_mode) == 0o640, n
    # And the migration ran exactly once, on the canary (the first host to reach its switch)
    migrations = [(n, line) for n in nodes for line in hook_lines(project, n) if line[1] == "migrate"]
    assert [(n, line[2:4]) for n, line in migrations] == [(canary, [canary, GOOD])], migrations
    # And on every host the per-host hooks ran in order, in the new release's directory: before
    # the switch (current still the baseline), then after the restart (current the new build)
    here = f"{project.cfg.deploy_root}/releases/{GOOD}"
    for n in nodes:
        lines = [line for line in hook_lines(project, n) if line[1] != "migrate"]
        assert [line[1:] for line in lines] == [["before_switch", n, GOOD, f"releases/{BASE}", BASE, here],
                                                ["after_restart", n, GOOD, f"releases/{GOOD}", BASE, here]], n
        assert float(lines[0][0]) < float(lines[1][0]), n
    # And the controller hook ran once, in lrelease.yml's directory, for the first host through the gate
    assert (tmp_path / "controller-hooks.log").read_text().split() == [canary, GOOD, "production"]

    # Given release A (the good build, live) writes into its log/ directory
    (roots["node2"] / "releases" / GOOD / "log" / "from-a.txt").write_text("written by release A\n")

    # When the bad build, whose migration fails on the canary before its switch, is deployed
    bad = project.json("deploy", "--env", "production", "--build", BAD, "--yes")
    # Then it is a failed roll-out that changed nothing live: exit 1, every host still on the good build
    assert bad["exit_code"] == 1, bad
    assert bad["status"] == "rolled_back"
    assert {n: project.serving(n) for n in nodes} == {n: GOOD for n in nodes}
    assert {n: project.current(n) for n in nodes} == {n: GOOD for n in nodes}
    assert all([e for e in project.ledger(n) if e.get("rollout_id") == bad["rollout_id"]] == [] for n in nodes)
    # And the failure names the hook, its exit code and its output
    assert "failed on node1: hook before_switch[1] (" in bad["message"], bad["message"]
    assert "exited 7 on node1: schema 42 is newer than this build" in bad["message"], bad["message"]
    # And release B, staged and linked on every host, sees what release A wrote
    assert (roots["node2"] / "releases" / BAD / "log" / "from-a.txt").read_text() == "written by release A\n"
    # And the bad build's migration ran once (on the canary), no host got past the failing step
    bad_lines = [(n, line[1]) for n in nodes for line in hook_lines(project, n) if line[3] == BAD]
    assert bad_lines == [(canary, "migrate"), (canary, "before_switch")], bad_lines
