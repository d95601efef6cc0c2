"""Deploy windows and pause/promote/abort on the sandbox, through the CLI over real SSH, with an
injected clock (the state store's: policies, the window's close, every timestamp).

Production is node1..node3 (the other nodes sit in an environment of their own, left alone),
window daily 22:00-06:00 in Amsterdam, bake 2 s:

- a window closing mid-roll-out: the playbook's clock passes 06:00 once the first wave's host has
  passed its gate, with the wrapper's stop file never written (as if it read the run too late);
  the roll-out stops at the next wave boundary (paused, exit 5, hosts on complete builds, nothing
  rolled back); `resume` is refused while the window is closed and finishes inside the next one;
- waves [1, pause, 100%]: awaiting promotion (exit 5) with the canary judged; `promote` finishes;
  then the captain's hot-fix outside the window (recorded) stops at the pause again, `promote` is
  refused outside the window, and `abort` (never refused by a window) rolls the canary back;
- the pause holds however late the wrapper reads the run: with the wrapper's stop file never
  written (as on a machine too loaded to read the canary's wave before its gate ends), the
  playbook still ends before the hosts after the pause, also when the window closes during the
  canary's wave (awaiting promotion, not paused)."""

from __future__ import annotations

import copy
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from lrelease import policystep, runner, statedb
from lrelease.sandbox.fleet import project_config
from tests.rollout.conftest import Project, fleet_file

BASE = "1.0.0"
PROD = ("node1", "node2", "node3")
WINDOW = {"timezone": "Europe/Amsterdam", "weekly": ["daily 22:00-06:00"]}
CET = timezone(timedelta(hours=1))  # Amsterdam in December


class Clock:
    """The store's clock: ``start`` plus the real time elapsed since; ``at`` moves it. (The
    playbook's check before each wave reads the controller's clock, which keeps the same offset
    from the real time: lrelease hands it the window's close on that clock; the clock file of
    :func:`closing_hook` moves it on.)"""

    def __init__(self, start: datetime) -> None:
        self.real = statedb.utc_now
        self._lock = threading.Lock()
        self.at(start)

    def at(self, moment: datetime) -> None:
        with self._lock:
            self.start, self.real0 = moment, self.real()

    def __call__(self) -> datetime:
        with self._lock:
            return self.start + (self.real() - self.real0)


@pytest.fixture
def clock(monkeypatch):
    c = Clock(datetime(2026, 12, 1, 5, 58, tzinfo=CET))
    monkeypatch.setattr(statedb, "utc_now", c)
    return c


def production(fleet, tmp_path, **env) -> Project:
    """node1..node3 in production (with ``env``), the rest in spare."""
    project = Project(fleet, tmp_path)
    fleet_file(fleet, tmp_path / "fleet.yml", {"production": PROD})
    config = project_config(fleet.config, **{"bake_seconds": 2, "gate_timeout_seconds": 10, "window": WINDOW, **env})
    config["environments"]["spare"] = copy.deepcopy(config["environments"]["production"])
    config.update(fleet=str(tmp_path / "fleet.yml"), state_dir=str(tmp_path / "state"))
    project.path.write_text(yaml.safe_dump(config, sort_keys=False))
    return project


def builds(project: Project) -> dict[str, str]:
    """Each production node's build: what it serves, which is what its `current` link names (a complete build)."""
    out = {}
    for node in PROD:
        serving = project.serving(node)
        assert serving == project.current(node), (node, serving, project.current(node))
        out[node] = serving
    return out


def waves(project: Project) -> list[list[str]]:
    return [w["hosts"] for w in project.json("plan", "--env", "production")["waves"]]


def closing_hook(tmp_path) -> tuple[dict, str]:
    """A controller hook after a host's gate that moves the playbook's wave-boundary clock (the
    test-only clock file: ansible-playbook is another process) past any close, once: the first
    host's gate moves the prepared file into place, later ones find nothing to move. Returns
    (hook, the clock file)."""
    clock_file, later = tmp_path / "boundary-now", tmp_path / "boundary-later"
    later.write_text("2099-01-01T00:00:00+00:00\n")
    return {"shell": f"mv -f {later} {clock_file} 2>/dev/null || true", "run_on": "controller"}, str(clock_file)


def closing_after_the_canary(fleet, tmp_path, clock, monkeypatch, spec: list) -> tuple[Project, list, list, Path]:
    """Production with waves ``spec`` and 1.6.0 built, at Tuesday 05:55 in Amsterdam (the window
    closes at 06:00); the playbook's clock passes 06:00 once the canary has passed its gate, and the
    wrapper never asks the playbook to stop (no stop file is ever written: as if it read the run's
    output too late, on a loaded machine), so only the playbook's own check can stop the run.
    Returns the project, the first wave, the rest, and the playbook's clock file."""
    hook, clock_file = closing_hook(tmp_path)
    monkeypatch.setenv(policystep.TEST_NOW_FILE, clock_file)
    monkeypatch.setattr(runner, "_cancel_callback", lambda data_dir, extravars, cancel: (extravars, lambda: False))
    project = production(fleet, tmp_path, waves=spec, hooks={"after_gate": [hook]})
    project.build("1.6.0")
    first, rest = waves(project)
    clock.at(datetime(2026, 12, 1, 5, 55, tzinfo=CET))
    return project, first, rest, Path(clock_file)


def test_a_window_closing_mid_roll_out_pauses_it_and_resume_finishes_in_the_next_window(fleet, tmp_path, clock,
                                                                                        monkeypatch):
    # Given 05:55, the window closing at 06:00 as the first wave's host passes its gate, unseen by the wrapper
    project, first, second, clock_file = closing_after_the_canary(fleet, tmp_path, clock, monkeypatch, [1, "100%"])

    # When 1.6.0 is deployed
    paused = project.json("deploy", "--env", "production", "--build", "1.6.0", "--yes")
    # Then it stops at the wave boundary: paused, exit 5, the first wave on 1.6.0, the rest untouched
    assert (paused["exit_code"], paused["status"]) == (5, "paused"), paused
    assert paused["message"].startswith("paused: production's deploy window closed at Tue 2026-12-01 06:00 "
                                        "Europe/Amsterdam; 1 of 3 host(s) switched in 1 wave(s), every host on a "
                                        "complete build, nothing rolled back"), paused["message"]
    assert paused["rolled_back"] == [] and [g["verdict"] for g in paused["gates"]] == ["pass"]
    assert builds(project) == {n: "1.6.0" if n in first else BASE for n in PROD}
    clock.at(datetime(2026, 12, 1, 6, 0, 30, tzinfo=CET))
    clock_file.unlink()

    # When resumed while the window is closed: refused (exit 4), nothing moves
    refused = project.cli("resume", "--env", "production", "--yes")
    assert refused.exit_code == 4, refused.output
    assert "production's deploy window is closed at Tue 2026-12-01 06:0" in refused.output
    assert "it next opens Tue 2026-12-01 22:00 Europe/Amsterdam" in " ".join(refused.output.split())

    # When resumed inside the next window: it finishes, every host on 1.6.0
    clock.at(datetime(2026, 12, 1, 22, 5, tzinfo=CET))
    resumed = project.json("resume", "--env", "production", "--yes")
    assert (resumed["exit_code"], resumed["status"]) == (0, "succeeded"), resumed
    assert sorted(resumed["switched"]) == sorted(second)
    assert builds(project) == {n: "1.6.0" for n in PROD}
    rows = project.json("history", "--env", "production")["rollouts"]
    assert [(r["action"], r["status"], r["exit_code"]) for r in rows] == [
        ("resume", "succeeded", 0), ("resume", "refused", 4), ("deploy", "paused", 5)]


def test_pause_promote_and_a_hotfix_aborted(fleet, tmp_path, clock):
    project = production(fleet, tmp_path, waves=[1, "pause", "100%"])
    project.build("1.6.0")
    project.build("1.7.0")
    first, rest = waves(project)
    assert project.cli("captain", "set", "alice", "--env", "production", "--actor", "carol").exit_code == 0
    clock.at(datetime(2026, 12, 1, 22, 30, tzinfo=CET))

    # When alice deploys 1.6.0 in the window: it stops at the pause, the canary judged
    waiting = project.json("deploy", "--env", "production", "--build", "1.6.0", "--yes", "--actor", "alice")
    assert (waiting["exit_code"], waiting["status"]) == (5, "awaiting_promotion"), waiting
    assert waiting["message"].startswith("awaiting promotion after wave 1: 1 of 3 host(s) switched in 1 wave(s)")
    assert [(g["host"], g["verdict"]) for g in waiting["gates"]] == [(first[0], "pass")]
    assert builds(project) == {n: "1.6.0" if n in first else BASE for n in PROD}
    shown = project.json("show", waiting["rollout_id"])
    assert shown["status"] == "awaiting_promotion" and [g["verdict"] for g in shown["gates"]] == ["pass"]

    # When she promotes it: the rest of the waves run, every host on 1.6.0
    promoted = project.json("promote", "--env", "production", "--reason", "canary fine", "--yes", "--actor", "alice")
    assert (promoted["exit_code"], promoted["status"]) == (0, "succeeded"), promoted
    assert sorted(promoted["switched"]) == sorted(rest)
    assert builds(project) == {n: "1.6.0" for n in PROD}

    # When alice hot-fixes 1.7.0 at 14:00 (outside the window), with a reason: it goes, and stops at the pause
    clock.at(datetime(2026, 12, 2, 14, 0, tzinfo=CET))
    hotfix = project.json("deploy", "--env", "production", "--build", "1.7.0", "--yes", "--actor", "alice",
                          "--hotfix", "--reason", "INC-42 checkout down")
    assert (hotfix["exit_code"], hotfix["status"]) == (5, "awaiting_promotion"), hotfix
    assert builds(project) == {n: "1.7.0" if n in first else "1.6.0" for n in PROD}
    assert project.json("show", hotfix["rollout_id"])["policy"]["hotfix"]["reason"] == "INC-42 checkout down"
    # And promoting it outside the window without --hotfix is refused
    late = project.cli("promote", "--env", "production", "--yes", "--actor", "alice")
    assert late.exit_code == 4 and "deploy window is closed" in late.output, late.output

    # When she aborts it (a rollback: never refused by a window): the canary goes back to 1.6.0
    aborted = project.json("abort", "--env", "production", "--reason", "fix did not help", "--yes", "--actor", "alice")
    assert (aborted["exit_code"], aborted["action"], aborted["status"]) == (0, "rollback", "succeeded"), aborted
    assert aborted["rolled_back"] == first
    assert builds(project) == {n: "1.6.0" for n in PROD}
    rows = project.json("history", "--env", "production")["rollouts"]
    assert [(r["action"], r["build"], r["status"]) for r in rows] == [
        ("rollback", "1.7.0", "succeeded"), ("resume", "1.7.0", "refused"), ("deploy", "1.7.0", "awaiting_promotion"),
        ("resume", "1.6.0", "succeeded"), ("deploy", "1.6.0", "awaiting_promotion")]
    assert rows[0]["reason"].startswith("abort of ") and rows[3]["reason"].startswith("promotion of ")
    text = " ".join(project.cli("history", "--env", "production").output.split())
    assert "awaiting_promotion (--hotfix)" in text


def test_a_pause_holds_however_late_the_wrapper_reads_the_run_also_when_the_window_closes(fleet, tmp_path, clock,
                                                                                          monkeypatch):
    # Given 05:55, the window closing at 06:00 as the canary passes its gate, unseen by the wrapper
    project, first, rest, clock_file = closing_after_the_canary(fleet, tmp_path, clock, monkeypatch,
                                                                [1, "pause", "100%"])

    # When 1.6.0 is deployed: it stops at the pause (not `paused` by the window: a resume of that
    # would go past the pause), the canary judged, the rest untouched
    waiting = project.json("deploy", "--env", "production", "--build", "1.6.0", "--yes")
    assert (waiting["exit_code"], waiting["status"]) == (5, "awaiting_promotion"), waiting
    assert [(g["host"], g["verdict"]) for g in waiting["gates"]] == [(first[0], "pass")]
    assert builds(project) == {n: "1.6.0" if n in first else BASE for n in PROD}
    # And promoting it in the next window finishes the rest
    clock.at(datetime(2026, 12, 1, 22, 5, tzinfo=CET))
    clock_file.unlink()
    promoted = project.json("promote", "--env", "production", "--yes")
    assert (promoted["exit_code"], promoted["status"]) == (0, "succeeded"), promoted
    assert sorted(promoted["switched"]) == sorted(rest) and builds(project) == {n: "1.6.0" for n in PROD}

