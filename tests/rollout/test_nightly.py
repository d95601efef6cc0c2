"""`lrelease nightly` end to end on the sandbox, through the CLI over real SSH, with an injected
clock (the state store's: the windows, the soak, every timestamp; see tests/rollout/test_windows.py).

next is node1; production is node2 and node3 (waves [1, 100%]), requiring next (soak 30m), with a
window daily 22:00-06:00 in Amsterdam; both have `nightly: true`; the other nodes sit in an
environment of their own, left alone. The project has its own artifacts store (1.6.0), so the
sandbox's other builds are not "the newest".

One test, a night and the next: nightly puts 1.6.0 on next; after the soak it starts production
at 05:55, the window closes after the first wave (paused, exit 5: the first host's gate moves the
playbook's wave-boundary clock past 06:00); a run while it is closed skips
production; a run in the next window resumes and finishes it. (Which build is the newest, and production
waiting for a newer build's soak: tests/unit/test_nightly.py, without hosts.)"""

from __future__ import annotations

import copy
import json
from datetime import datetime

import pytest
import yaml

from lrelease import policystep, statedb
from lrelease.sandbox.demoapp.build import build_artifact
from lrelease.sandbox.fleet import project_config
from tests.rollout.conftest import Project, fleet_file
from tests.rollout.test_windows import CET, Clock, closing_hook

BASE = "1.0.0"
NEXT, PROD = ("node1",), ("node2", "node3")
WINDOW = {"timezone": "Europe/Amsterdam", "weekly": ["daily 22:00-06:00"]}


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.delenv("LRELEASE_USER", raising=False)  # nightly runs as `nightly`
    c = Clock(datetime(2026, 12, 1, 4, 0, tzinfo=CET))
    monkeypatch.setattr(statedb, "utc_now", c)
    return c


@pytest.fixture
def two_envs(fleet, tmp_path, monkeypatch) -> Project:
    hook, clock_file = closing_hook(tmp_path)
    monkeypatch.setenv(policystep.TEST_NOW_FILE, clock_file)
    project = Project(fleet, tmp_path)
    fleet_file(fleet, tmp_path / "fleet.yml", {"next": NEXT, "production": PROD})
    config = project_config(fleet.config, waves=[1, "100%"], bake_seconds=1, gate_timeout_seconds=10)
    base = config["environments"]["production"]
    config["environments"] = {
        # production's first gate moves the playbook's wave-boundary clock past any close (once)
        "production": {**copy.deepcopy(base), "nightly": True, "window": WINDOW,
                       "requires": {"env": "next", "soak": "30m"}, "hooks": {"after_gate": [hook]}},
        "next": {**copy.deepcopy(base), "waves": ["100%"], "nightly": True},
        "spare": copy.deepcopy(base)}
    config.update(fleet=str(tmp_path / "fleet.yml"), state_dir=str(tmp_path / "state"),
                  artifacts={"source": "dir", "path": str(tmp_path / "artifacts")})
    project.path.write_text(yaml.safe_dump(config, sort_keys=False))
    return project


def nightly(project: Project) -> tuple[int, dict[str, dict]]:
    """One nightly run: its exit code and summary (stdout) per environment; its logs are JSON lines."""
    result = project.cli("nightly")
    assert all(json.loads(line)["event"] for line in result.stderr.splitlines()), result.stderr
    out = json.loads(result.stdout)
    assert out["exit_code"] == result.exit_code, out
    return result.exit_code, {e["env"]: e for e in out["environments"]}


def on(project: Project) -> dict[str, str]:
    """What next's and production's nodes serve (a complete build: `current` names it too)."""
    out = {}
    for node in NEXT + PROD:
        serving = project.serving(node)
        assert serving == project.current(node), (node, serving, project.current(node))
        out[node] = serving
    return out


def test_nightly_moves_builds_through_next_and_finishes_what_a_window_paused(two_envs: Project, clock):
    project = two_envs
    build_artifact("1.6.0", project.path.parent / "artifacts")

    # Given Tuesday 04:00 in Amsterdam: nightly puts the newest build on next; production has nothing proven
    code, envs = nightly(project)
    assert code == 0, envs
    assert (envs["next"]["action"], envs["next"]["build"], envs["next"]["status"]) == ("deploy", "1.6.0", "succeeded")
    assert (envs["production"]["action"], envs["production"]["reason"]) == ("none", "not_proven")
    assert "soaking on next: 0 of 30 minutes" in envs["production"]["detail"]
    assert envs["spare"]["reason"] == "automation_off"
    assert on(project) == {"node1": "1.6.0", "node2": BASE, "node3": BASE}

    # When nightly runs at 05:55 (1.6.0 soaked), and the playbook's clock passes 06:00 once production's
    # first host has passed its gate
    first = project.json("plan", "--env", "production")["waves"][0]["hosts"][0]
    clock.at(datetime(2026, 12, 1, 5, 55, tzinfo=CET))
    code, envs = nightly(project)
    # Then production's roll-out of 1.6.0 stops at the wave boundary: paused, exit 5 (the run's worst)
    assert code == 5, envs
    assert (envs["production"]["action"], envs["production"]["reason"], envs["production"]["status"]) == (
        "deploy", "proven", "paused"), envs["production"]
    assert envs["next"]["reason"] == "up_to_date"
    assert on(project) == {"node1": "1.6.0", **{n: "1.6.0" if n == first else BASE for n in PROD}}
    paused = envs["production"]["rollout_id"]
    clock.at(datetime(2026, 12, 1, 6, 0, 30, tzinfo=CET))
    (project.path.parent / "boundary-now").unlink()

    # When nightly runs while the window is closed: production is skipped (exit 0), nothing moves
    code, envs = nightly(project)
    assert code == 0 and envs["production"]["reason"] == "window_closed", envs
    assert "it next opens Tue 2026-12-01 22:00 Europe/Amsterdam" in envs["production"]["detail"]
    assert on(project) == {"node1": "1.6.0", **{n: "1.6.0" if n == first else BASE for n in PROD}}

    # When nightly runs in the next window: it resumes the paused roll-out and finishes it
    clock.at(datetime(2026, 12, 1, 22, 5, tzinfo=CET))
    code, envs = nightly(project)
    assert code == 0, envs
    assert (envs["production"]["action"], envs["production"]["resumes"], envs["production"]["status"]) == (
        "resume", paused, "succeeded")
    assert on(project) == {n: "1.6.0" for n in NEXT + PROD}

    rows = project.json("history", "--env", "production")["rollouts"]
    assert [(r["action"], r["build"], r["status"], r["actor"]) for r in rows] == [
        ("resume", "1.6.0", "succeeded", "nightly"), ("deploy", "1.6.0", "paused", "nightly")]
    assert rows[0]["reason"] == f"nightly resume of {paused}"
