"""The lrelease_release module killed after every step of a switch (deploy, rollback, undo, revert),
then run again as Ansible would: the re-run finishes the switch and the ledger records it once.

Each run is the module in its own process with its arguments in a JSON file (as Ansible runs it
on a host), on a real deploy root in a temporary directory; the kill is the module's test-only
hook LRELEASE_TEST_KILL_AFTER=<step> (os._exit(137) right after that step, like a SIGKILL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.unit.test_release_module import LIVE, MODULE, rel, stage


@dataclass
class Case:
    """A host's history (set up in-process), the switch asked of the module, and where it must end."""

    history: Callable[[Path, Path], None]
    args: dict
    target: str
    previous: str | None  # .lrelease/previous once the switch is done (None: no file)
    line: dict  # fields of the one ledger line the switch writes
    settled_rerun_fails: str = ""  # a "back to previous" is not idempotent: once settled it has no target


def settled(root: Path) -> None:
    """What the role does once the service runs the build (restart + verify): remove the marker."""
    (root / ".lrelease" / "pending").unlink()


def first_install(root: Path, tmp: Path) -> None:
    stage(root, tmp, "1.0.0")


def on_1_0_0_after_0_9_0(root: Path, tmp: Path) -> None:
    for build in ("0.9.0", "1.0.0", "1.1.0"):
        stage(root, tmp, build, build.encode())
    for build, rollout in (("0.9.0", "r00"), ("1.0.0", "r0")):
        rel.switch(LIVE, str(root), build, None, {"event": "switch", "rollout_id": rollout}, None)
        settled(root)


def on_1_1_0_settled(root: Path, tmp: Path) -> None:
    on_1_0_0_after_0_9_0(root, tmp)
    rel.switch(LIVE, str(root), "1.1.0", None, {"event": "switch", "rollout_id": "r1"}, None)
    settled(root)


def on_1_1_0_not_restarted(root: Path, tmp: Path) -> None:
    """The switch role's rescue runs before the marker is settled."""
    on_1_0_0_after_0_9_0(root, tmp)
    rel.switch(LIVE, str(root), "1.1.0", None, {"event": "switch", "rollout_id": "r1"}, None)


def previous_recorded_no_current(root: Path, tmp: Path) -> None:
    stage(root, tmp, "1.0.0")
    (root / ".lrelease").mkdir()
    (root / ".lrelease" / "previous").write_text("1.0.0\n")


CASES = {
    "deploy-first-install": Case(
        first_install, {"build": "1.0.0", "ledger": {"event": "switch", "rollout_id": "r1"}},
        "1.0.0", None, {"event": "switch", "build": "1.0.0", "from": None, "to": "1.0.0", "previous": None}),
    "deploy-over-current": Case(
        on_1_0_0_after_0_9_0, {"build": "1.1.0", "ledger": {"event": "switch", "rollout_id": "r1"}},
        "1.1.0", "1.0.0", {"event": "switch", "build": "1.1.0", "from": "1.0.0", "to": "1.1.0", "previous": "0.9.0"}),
    "rollback-of-the-failed-build": Case(
        on_1_1_0_settled, {"only_if_current": "1.1.0", "ledger": {"event": "rollback", "rollout_id": "rb"}},
        "1.0.0", "1.1.0", {"event": "rollback", "build": "1.1.0", "from": "1.1.0", "to": "1.0.0", "previous": "1.0.0"}),
    "rollback-to-previous-without-current": Case(
        previous_recorded_no_current, {"ledger": {"event": "rollback", "rollout_id": "rb"}},
        "1.0.0", None, {"event": "rollback", "build": None, "from": None, "to": "1.0.0", "previous": "1.0.0"},
        settled_rerun_fails="no previous build is recorded"),
    "undo-a-roll-out": Case(
        on_1_1_0_settled, {"undo": ["r1"], "ledger": {"rollout_id": "rb", "who": "ann"}},
        "1.0.0", "0.9.0",
        {"event": "rollback", "build": "1.1.0", "from": "1.1.0", "to": "1.0.0", "undoes": "r1", "who": "ann"}),
    "revert-a-failed-switch": Case(
        on_1_1_0_not_restarted,
        {"build": "1.0.0", "previous": "0.9.0", "ledger": {"event": "switch-reverted", "build": "1.1.0"}},
        "1.0.0", "0.9.0", {"event": "switch-reverted", "build": "1.1.0", "from": "1.1.0", "to": "1.0.0"}),
}


@pytest.fixture
def host(tmp_path):
    root = tmp_path / "srv"
    (root / "releases").mkdir(parents=True)
    log = tmp_path / "service.log"
    service = tmp_path / "app-service"
    service.write_text(f'#!/bin/sh\necho "$1 $(readlink {root}/current)" >> {log}\n')
    service.chmod(0o755)
    return root, log, [str(service), "restart"]


def run(tmp_path: Path, args: dict, kill_after: str | None = None, check_mode: bool = False):
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check_mode)}))
    env = {k: v for k, v in os.environ.items() if k != rel.KILL_AFTER_ENV}
    if kill_after:
        env[rel.KILL_AFTER_ENV] = kill_after
    return subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True,
                          timeout=60, check=False, env=env)


def result_of(proc) -> dict:
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and not result.get("failed"), result
    return result


def layout(root: Path) -> tuple:
    """(current, .lrelease/previous, ledger lines): what a kill may have left."""
    link = root / "current"
    previous = root / ".lrelease" / "previous"
    ledger = root / ".lrelease" / "ledger.jsonl"
    return (os.readlink(link) if link.is_symlink() else None,
            previous.read_text().strip() if previous.exists() else None,
            [json.loads(x) for x in ledger.read_text().splitlines()] if ledger.exists() else [])


@pytest.mark.parametrize("step", rel.STEPS)
@pytest.mark.parametrize("name", list(CASES))
def test_a_switch_killed_after_any_step_is_finished_by_the_next_run(host, tmp_path, name, step):
    case = CASES[name]
    root, log, restart = host
    # Given a host with this history
    case.history(root, tmp_path)
    current_before, previous_before, ledger_before = layout(root)
    args = dict(case.args, root=str(root), state="current", restart=restart)
    # When the switch is killed right after `step`
    killed = run(tmp_path, args, kill_after=step)
    # Then the process died there, leaving exactly what that step does and nothing after it
    assert killed.returncode == 137 and killed.stdout == "", killed.stderr
    current, previous, ledger = layout(root)
    done = rel.STEPS.index(step)
    assert json.loads((root / ".lrelease" / "pending").read_text())["to"] == case.target
    assert previous == (case.previous if done >= 1 else previous_before)
    assert current == (f"releases/{case.target}" if done >= 2 else current_before)
    assert len(ledger) == len(ledger_before) + (1 if done >= 3 else 0)
    assert (log.read_text() if log.exists() else "") == (f"restart releases/{case.target}\n" if done >= 4 else "")

    # When the same switch runs again, as a resumed roll-out or rollback would run it
    again = result_of(run(tmp_path, args))
    # Then it is finished: current on the target, previous right, exactly one ledger line for it,
    # and reported changed (resumed) so the role restarts the service, which the same run did
    current, previous, ledger = layout(root)
    assert current == f"releases/{case.target}" and previous == case.previous
    assert ledger[:-1] == ledger_before
    assert {k: ledger[-1].get(k) for k in case.line} == case.line
    assert ledger[-1]["id"] == json.loads((root / ".lrelease" / "pending").read_text())["id"]
    assert again["changed"] and again["resumed"] and again["current"] == case.target
    assert again["restart"]["rc"] == 0 and log.read_text().splitlines()[-1] == f"restart releases/{case.target}"

    # When the role has settled it and the switch runs once more, nothing changes
    settled(root)
    restarts = log.read_text()
    proc = run(tmp_path, args)
    if case.settled_rerun_fails:
        assert proc.returncode == 1 and case.settled_rerun_fails in json.loads(proc.stdout)["msg"]
    else:
        last = result_of(proc)
        assert not last["changed"] and "restart" not in last
    assert log.read_text() == restarts and layout(root) == (f"releases/{case.target}", case.previous, ledger)


@pytest.mark.parametrize("first,second", [("intent", "previous"), ("intent", "current"), ("previous", "ledger"),
                                          ("current", "ledger")])
def test_a_switch_killed_again_while_being_finished_is_finished_by_the_third_run(host, tmp_path, first, second):
    # Given an undo killed after `first`, and its re-run killed after `second` while rolling forward
    root, log, restart = host
    case = CASES["undo-a-roll-out"]
    case.history(root, tmp_path)
    _, _, ledger_before = layout(root)
    args = dict(case.args, root=str(root), state="current", restart=restart)
    assert run(tmp_path, args, kill_after=first).returncode == 137
    assert run(tmp_path, args, kill_after=second).returncode == 137
    # When it runs a third time
    third = result_of(run(tmp_path, args))
    # Then the undo is complete with exactly one ledger line
    current, previous, ledger = layout(root)
    assert third["changed"] and third["resumed"] and third["target"] == "1.0.0" and third["undone"] == "r1"
    assert (current, previous) == ("releases/1.0.0", "0.9.0")
    assert ledger[:-1] == ledger_before and ledger[-1]["undoes"] == "r1"


def test_an_unfinished_switch_is_finished_before_another_one_and_dry_runs_see_it_finished(host, tmp_path):
    # Given a deploy of 1.1.0 killed after it moved `current`, before its ledger line
    root, _, _ = host
    on_1_0_0_after_0_9_0(root, tmp_path)
    deploy = {"root": str(root), "state": "current", "build": "1.1.0", "ledger": {"event": "switch", "rollout_id": "r1"}}
    assert run(tmp_path, deploy, kill_after="current").returncode == 137
    # When a dry run of undoing that roll-out asks the host
    dry = result_of(run(tmp_path, {"root": str(root), "state": "current", "undo": ["r1"]}, check_mode=True))
    # Then it answers as if the switch were finished (it is on 1.1.0, the target is 1.0.0), changing nothing
    assert (dry["changed"], dry["from"], dry["target"], dry["undone"]) == (True, "1.1.0", "1.0.0", "r1")
    assert layout(root)[2][-1]["rollout_id"] == "r0"
    # When the undo runs for real
    undo = result_of(run(tmp_path, {"root": str(root), "state": "current", "undo": ["r1"]}))
    # Then the deploy's switch is recorded first, then the undo: each exactly once
    current, previous, ledger = layout(root)
    assert [(e["event"], e["from"], e["to"], e.get("rollout_id")) for e in ledger[-2:]] == [
        ("switch", "1.0.0", "1.1.0", "r1"), ("rollback", "1.1.0", "1.0.0", None)]
    assert undo["changed"] and undo["completed"] and (current, previous) == ("releases/1.0.0", "0.9.0")


def test_a_rollback_killed_after_writing_previous_no_longer_fails_every_rerun(host, tmp_path):
    """The hole this fixes: `.lrelease/previous` written, `current` not moved, then every re-run
    said "previous is X, which is current already" and the real target was lost."""
    root, _, _ = host
    on_1_1_0_settled(root, tmp_path)
    rollback = {"root": str(root), "state": "current", "only_if_current": "1.1.0", "ledger": {"event": "rollback"}}
    # Given a rollback killed after it recorded 1.1.0 as previous, with current still 1.1.0
    assert run(tmp_path, rollback, kill_after="previous").returncode == 137
    assert layout(root)[:2] == ("releases/1.1.0", "1.1.0")
    # When the rollback runs again (a plain "back to previous" too)
    again = result_of(run(tmp_path, rollback))
    to_previous = result_of(run(tmp_path, {"root": str(root), "state": "current", "ledger": {"event": "rollback"}}))
    # Then the host is on 1.0.0, once in the ledger, and the second call only reports the owed restart
    assert again["changed"] and again["current"] == "1.0.0"
    assert to_previous["resumed"] and to_previous["current"] == "1.0.0"
    assert [e["event"] for e in layout(root)[2]] == ["switch", "switch", "switch", "rollback"]


def test_a_switch_killed_while_it_prunes_leaves_no_release_without_its_files_and_the_next_prune_finishes(host, tmp_path):
    root, log, restart = host
    # Given a host on 1.0.0 (after 0.9.0) with two older releases and 1.1.0 staged, oldest first
    for age, build in enumerate(("0.7.0", "0.8.0")):
        stage(root, tmp_path, build, build.encode())
        os.utime(root / "releases" / build, (1_000_000_000 + age,) * 2)
    on_1_0_0_after_0_9_0(root, tmp_path)
    # When the switch to 1.1.0 keeps 2 releases in the same run, and is killed once the first release
    # to go is out of releases/ but not yet removed
    args = {"root": str(root), "state": "current", "build": "1.1.0", "restart": restart, "keep": 2,
            "ledger": {"event": "switch", "rollout_id": "r1"}}
    killed = run(tmp_path, args, kill_after="prune")
    # Then the switch and its restart are done, and every directory left among the releases is a
    # whole release: the one being removed was renamed aside first (a leftover, not a release)
    assert killed.returncode == 137 and killed.stdout == "", killed.stderr
    assert layout(root)[0] == "releases/1.1.0"
    state = rel.info(str(root))
    assert len(state["partials"]) == 1 and state["partials"][0].startswith(".0.8.0.old-"), state
    for build in state["releases"]:
        assert (root / "releases" / build / "VERSION").read_text() == build
        assert state["releases"][build]["sha256"], build
    assert sorted(state["releases"]) == ["0.7.0", "0.9.0", "1.0.0", "1.1.0"]
    # When the switch is settled (the role, once the service runs 1.1.0) and the next prune runs
    settled(root)
    pruned = result_of(run(tmp_path, {"root": str(root), "state": "pruned", "keep": 2}))
    # Then the leftover is gone with the releases beyond the newest two, never current or previous
    assert pruned["partials"] == [] and sorted(pruned["releases"]) == ["1.0.0", "1.1.0"], pruned
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["1.0.0", "1.1.0"]
