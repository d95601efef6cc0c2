"""A roll-out killed mid-step, on the sandbox through the CLI over real SSH, on a slice of two
hosts (one wave each, no bake, the /health gate): staging killed while it links the shared paths
into ``releases/.<build>.partial`` (the module's test-only kill hook, step ``shared``: it dies right
after the first link, inside the module run), and lrelease itself SIGKILLed while a hook runs (no
kill hook reaches inside a hook's command: the test waits until the hook has started). Every host
stays on a complete build, and the next deploy (or ``resume``) redoes what was cut and completes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import yaml

from tests.rollout.conftest import Project
from tests.rollout.test_failure_paths import spawn, wait_for

BASE = "1.0.0"
SLICE = ["node1", "node2"]


def sliced(project: Project, tmp_path: Path) -> Project:
    """The project's production environment cut down to SLICE (a fleet file of its own)."""
    fleet = yaml.safe_load(project.cfg.fleet_path.read_text())
    fleet["nodes"] = {name: node for name, node in fleet["nodes"].items() if name in SLICE}
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump(fleet, sort_keys=False))
    data = yaml.safe_load(project.path.read_text())
    data["fleet"] = str(path)
    project.path.write_text(yaml.safe_dump(data, sort_keys=False))
    return project


def root_of(project: Project, node: str) -> Path:
    return project.cfg.node_root(project.cfg.find_node(node))


def on_complete_builds(project: Project, build: str) -> None:
    """Each host of the slice: `current` a whole release of ``build``, the app serving it."""
    for n in SLICE:
        assert project.current(n) == build, n
        assert (root_of(project, n) / "releases" / build / "VERSION").read_text().strip() == build, n
        assert project.serving(n) == build, n


def test_staging_killed_while_linking_shared_paths_changes_nothing_and_the_next_deploy_completes(fleet, tmp_path):
    # Given two hosts whose releases link log/, uploads/ and .env from shared/, and node1 set to die
    # (the module, as if SIGKILLed) right after linking the first of them in releases/.2.5.0.partial
    project = sliced(Project(fleet, tmp_path, waves=[1, "100%"], bake_seconds=0, gate_timeout_seconds=10,
                             shared={"dirs": ["log", "uploads"], "files": [".env"]}), tmp_path)
    project.build("2.5.0")
    kill = root_of(project, "node1") / ".lrelease" / "test-kill-after"
    kill.parent.mkdir(parents=True, exist_ok=True)
    kill.write_text("shared\n")
    # When the build is deployed
    out = project.json("deploy", "--env", "production", "--build", "2.5.0", "--yes")
    # Then staging failed on node1 (the module died there: its one-shot kill file is used up), nothing moved
    assert out["exit_code"] == 1 and out["switched"] == [], out["message"]
    assert out["message"].startswith("roll-out failed before any host switched (failed on node1: "), out["message"]
    assert not kill.exists()
    on_complete_builds(project, BASE)
    # And no release of 2.5.0 is in place on node1, complete or half-linked (the stage role's rescue
    # discarded the partial; one left by a controller that died too is redone by the module itself:
    # tests/unit/test_release_shared_kills.py)
    assert not (root_of(project, "node1") / "releases" / "2.5.0").exists()
    assert not (root_of(project, "node1") / "releases" / ".2.5.0.partial").exists()

    # When it is deployed again
    again = project.json("deploy", "--env", "production", "--build", "2.5.0", "--yes")
    # Then it completes: both hosts serve 2.5.0, each release with every shared path linked
    assert again["exit_code"] == 0, again["message"]
    on_complete_builds(project, "2.5.0")
    for n in SLICE:
        release = root_of(project, n) / "releases" / "2.5.0"
        assert [(release / p).readlink().as_posix() for p in ("log", "uploads", ".env")] == [
            "../../shared/log", "../../shared/uploads", "../../shared/.env"], n


# A before_switch hook that appends to a file in the deploy root (kept across releases), and on
# node1 the first time only, sleeps (exec: nothing of it runs after the sleep) until the test kills
# the run around it. Idempotent, as docs/design.md asks of hooks: a second run only appends again.
SLEEP = "173"
HOOK = ('echo "$LRELEASE_HOST $LRELEASE_BUILD start" >> "$LRELEASE_DEPLOY_ROOT/hook.log"; '
        'if [ "$LRELEASE_HOST" = node1 ] && [ ! -e "$LRELEASE_DEPLOY_ROOT/hook.slow-once" ]; then '
        'touch "$LRELEASE_DEPLOY_ROOT/hook.slow-once"; exec sleep ' + SLEEP + '; fi; '
        'echo "$LRELEASE_HOST $LRELEASE_BUILD done" >> "$LRELEASE_DEPLOY_ROOT/hook.log"')


def hook_log(project: Project, node: str) -> list[str]:
    path = root_of(project, node) / "hook.log"
    return path.read_text().splitlines() if path.exists() else []


def kill_the_sleeping_hook() -> int:
    """SIGKILL the hook left running on node1 (its SSH session is gone); returns how many."""
    killed = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().split(b"\0")[:2] == [b"sleep", SLEEP.encode()]:
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue
    return killed


def test_a_run_killed_while_a_hook_runs_leaves_complete_builds_and_resume_reruns_the_hook(fleet, tmp_path):
    # Given two hosts, one per wave, whose before_switch hook sleeps on node1 the first time
    project = sliced(Project(fleet, tmp_path, waves=[1, "100%"], bake_seconds=0, gate_timeout_seconds=10,
                             hooks={"before_switch": [{"shell": HOOK}]}), tmp_path)
    project.build("2.6.0")
    # When lrelease is SIGKILLed while that hook runs (ansible-playbook dies with it)
    proc = spawn(project, "deploy", "--env", "production", "--build", "2.6.0")
    wait_for(project, proc, lambda: (root_of(project, "node1") / "hook.slow-once").exists())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)  # ansible-playbook gets SIGTERM from the kernel when its parent dies
    assert kill_the_sleeping_hook() == 1
    # Then every host is still on a complete build (node1 was cut before its switch)
    on_complete_builds(project, BASE)
    assert hook_log(project, "node1") == ["node1 2.6.0 start"] and hook_log(project, "node2") == []
    # When the roll-out is resumed
    out = project.json("resume", "--env", "production", "--yes")
    # Then the hook runs again on node1, to its end, then on node2, and the roll-out completes
    assert out["exit_code"] == 0, out["message"]
    assert hook_log(project, "node1") == ["node1 2.6.0 start", "node1 2.6.0 start", "node1 2.6.0 done"]
    assert hook_log(project, "node2") == ["node2 2.6.0 start", "node2 2.6.0 done"]
    on_complete_builds(project, "2.6.0")
    for n in SLICE:
        assert [(e["event"], e["to"]) for e in project.ledger(n)].count(("switch", "2.6.0")) == 1, n
