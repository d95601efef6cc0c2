"""Deploy windows and pause/promote/abort on the sandbox, through the CLI over real SSH, with an
injected clock (the state store's: policies, the window's close, every timestamp).

Production is node1..node3 (the other nodes sit in an environment of their own, left alone),
window daily 22:00-06:00 in Amsterdam, bake 2 s:

- a window closing mid-roll-out: the clock jumps past 06:00 once the first wave's host has switched;
  the roll-out stops at the next wave boundary (paused, exit 5, hosts on complete builds, nothing
  rolled back); `resume` is refused while the window is closed and finishes inside the next one;
- waves [1, pause, 100%]: awaiting promotion (exit 5) with the canary judged; `promote` finishes;
  then the captain's hot-fix outside the window (recorded) stops at the pause again, `promote` is
  refused outside the window, and `abort` (never refused by a window) rolls the canary back."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from lrelease import statedb
from lrelease.sandbox.fleet import project_config
from tests.rollout.conftest import Project, fleet_file

BASE = "1.0.0"
PROD = ("node1", "node2", "node3")
WINDOW = {"timezone": "Europe/Amsterdam", "weekly": ["daily 22:00-06:00"]}
CET = timezone(timedelta(hours=1))  # Amsterdam in December


class Clock:
    """The store's clock: ``start`` plus the real time elapsed since; ``at`` moves it, ``once``
    moves it when a condition first holds (read whenever lrelease asks the time: about once a
    second while a playbook runs, and at every write)."""

    def __init__(self, start: datetime) -> None:
        self.real = statedb.utc_now
        self._lock = threading.Lock()
        self.at(start)
        self.condition: Callable[[], bool] | None = None
        self.then = start

    def at(self, moment: datetime) -> None:
        self.start, self.real0 = moment, self.real()

    def once(self, condition: Callable[[], bool], moment: datetime) -> None:
        self.condition, self.then = condition, moment

    def __call__(self) -> datetime:
        with self._lock:
            if self.condition is not None and self.condition():
                self.condition = None
                self.at(self.then)
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


def test_a_window_closing_mid_roll_out_pauses_it_and_resume_finishes_in_the_next_window(fleet, tmp_path, clock):
    # (a 4 s bake: the wrapper polls its stop request about once a second, so the window's close
    # is seen before the next wave's boundary also on a loaded machine)
    project = production(fleet, tmp_path, waves=[1, "100%"], bake_seconds=4)
    project.build("1.6.0")
    first, second = waves(project)
    # Given Tuesday 05:58 in Amsterdam (window open until 06:00), and the clock jumping to 06:00:30
    # once the first wave's host has switched
    clock.once(lambda: project.current(first[0]) == "1.6.0", datetime(2026, 12, 1, 6, 0, 30, tzinfo=CET))

    # When 1.6.0 is deployed
    paused = project.json("deploy", "--env", "production", "--build", "1.6.0", "--yes")
    # Then it stops at the wave boundary: paused, exit 5, the first wave on 1.6.0, the rest untouched
    assert (paused["exit_code"], paused["status"]) == (5, "paused"), paused
    assert paused["message"].startswith("paused: production's deploy window closed at Tue 2026-12-01 06:00 "
                                        "Europe/Amsterdam; 1 of 3 host(s) switched in 1 wave(s), every host on a "
                                        "complete build, nothing rolled back"), paused["message"]
    assert paused["rolled_back"] == [] and [g["verdict"] for g in paused["gates"]] == ["pass"]
    assert builds(project) == {n: "1.6.0" if n in first else BASE for n in PROD}

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
