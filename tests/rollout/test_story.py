"""The whole release story on the sandbox (what `make demo` tells), through the CLI over real SSH
and a real git repository, with the real clock: node1 is Next; node2 and node3 are production,
which requires Next (a 3 s soak), a release captain and a deploy window.

Release 1.1.0 is cut from main, built, deployed to next, soaked, and rolled out to production by
its captain inside the window. Then a defect it contains (a commit on main) is reverted with
`hotfix revert` (on main, the revert cherry-picked into release/1.1.0); build 1.1.0+1 goes to next
and, the window now closed, to production as the captain's business-hours hot-fix with a reason.
The final build's provenance and every history row (who, what, why) are asserted, and the
hot-fix's report is written to a file."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from lrelease.sandbox.fleet import project_config
from tests.rollout.conftest import Project, fleet_file

BASE = "1.0.0"
NEXT, PROD = ("node1",), ("node2", "node3")
SOAK = 3
REASON = "INC-7: checkout rounds prices down; revert of the rounding change"
# The app's build, as its repository keeps it: the demo app's artifact for the version given.
BUILD_PY = """import pathlib, sys
from lrelease.sandbox.demoapp.build import build_artifact
build_artifact(sys.argv[1], pathlib.Path("dist"))
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, name: str, text: str, message: str) -> str:
    (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def window(start: datetime, hours: int) -> dict:
    """A daily UTC window from ``start`` (whole minutes) for ``hours`` hours."""
    end = start + timedelta(hours=hours)
    return {"timezone": "UTC", "weekly": [f"daily {start:%H:%M}-{end:%H:%M}"]}


def story_project(fleet, root: Path) -> tuple[Project, Path, str]:
    """The project and the app's repository: main with the build script, a feature and the defect."""
    repo = root / "app"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for key, value in (("user.name", "Dev"), ("user.email", "dev@example.com"), ("commit.gpgsign", "false")):
        git(repo, "config", key, value)
    commit(repo, "build.py", BUILD_PY, "the demo app and its build")
    commit(repo, "search.txt", "search by name\n", "search: by name")
    defect = commit(repo, "checkout.txt", "prices rounded down\n", "checkout: round prices to whole euros")
    commit(repo, "help.txt", "help page\n", "help: a page")

    fleet_file(fleet, root / "fleet.yml", {"next": NEXT, "production": PROD})
    config = project_config(fleet.config, waves=[1, "100%"], bake_seconds=1, gate_timeout_seconds=10)
    production = config["environments"]["production"]
    now = datetime.now(timezone.utc)
    config["environments"] = {
        "next": {**copy.deepcopy(production), "waves": ["100%"]},
        "spare": copy.deepcopy(production),
        "production": {**production, "captain": "required", "requires": {"env": "next", "soak": f"{SOAK}s"},
                       "window": window(now - timedelta(hours=1), 3)},  # open now
    }
    config.update(fleet=str(root / "fleet.yml"), state_dir=str(root / "state"),
                  artifacts={"source": "dir", "path": str(root / "artifacts")},
                  git={"repository": str(repo), "build_command": [sys.executable, "build.py", "{version}"]})
    project = Project(fleet, root)
    project.path.write_text(yaml.safe_dump(config, sort_keys=False))
    return project, repo, defect


def serving(project: Project) -> dict[str, str]:
    return {n: project.serving(n) for n in NEXT + PROD}


def test_the_release_story_from_branch_cut_to_business_hours_hotfix(fleet, tmp_path):
    project, repo, defect = story_project(fleet, tmp_path)

    # Given release 1.1.0 cut from main and built by bob
    assert project.cli("branch", "cut", "1.1.0").exit_code == 0
    cut = git(repo, "rev-parse", "release/1.1.0")
    first = project.json("build", "--actor", "bob")["build"]
    assert (first["version"], first["branch"], first["commit"]) == ("1.1.0", "release/1.1.0", cut)

    # When bob deploys it to next and it soaks, and alice (the captain) rolls it out to production
    assert project.json("deploy", "--env", "next", "--build", "1.1.0", "--yes", "--actor", "bob")["exit_code"] == 0
    time.sleep(SOAK + 1)
    assert project.cli("captain", "set", "alice", "--env", "production", "--actor", "carol",
                       "--reason", "release 1.1.0").exit_code == 0
    released = project.json("deploy", "--env", "production", "--build", "1.1.0", "--yes", "--actor", "alice",
                            "--reason", "release 1.1.0")
    # Then every node of both environments serves 1.1.0
    assert released["exit_code"] == 0, released
    assert serving(project) == {n: "1.1.0" for n in NEXT + PROD}

    # When the defect the release contains is reverted (on main, the revert picked into the release)
    reverted = project.json("hotfix", "revert", defect)
    assert reverted["exit_code"] == 0, reverted
    [(pick, revert_on_main)] = [(p["commit"], p["from"]) for p in reverted["picked"]]
    assert revert_on_main == reverted["revert"] == git(repo, "rev-parse", "main")
    assert pick == git(repo, "rev-parse", "release/1.1.0")
    # And 1.1.0+1 is built, deployed to next and soaked
    final = project.json("build", "--actor", "bob")["build"]
    assert project.json("deploy", "--env", "next", "--build", "1.1.0+1", "--yes", "--actor", "bob")["exit_code"] == 0
    time.sleep(SOAK + 1)

    # Then the build's provenance names its branch, commit, the reverted commit and the picked revert
    assert (final["version"], final["branch"], final["commit"], final["branch_point"]) == \
        ("1.1.0+1", "release/1.1.0", pick, cut)
    assert final["tags"] == [] and final["built_by"] == "bob"
    assert [(r["commit"], r["reverts"]) for r in final["reverts"]] == [(pick, defect)]
    assert [(p["commit"], p["from"]) for p in final["picks"]] == [(pick, revert_on_main)]
    assert final["reverts"][0]["subject"] == 'Revert "checkout: round prices to whole euros"'

    # When it is business hours (the window rewritten to one closed now: no fake clock)
    config = yaml.safe_load(project.path.read_text())
    config["environments"]["production"]["window"] = window(datetime.now(timezone.utc) + timedelta(hours=3), 6)
    project.path.write_text(yaml.safe_dump(config, sort_keys=False))
    # Then a plain deploy is refused by the window, nothing moves
    closed = project.cli("deploy", "--env", "production", "--build", "1.1.0+1", "--yes", "--actor", "alice")
    assert closed.exit_code == 4 and "deploy window is closed" in closed.output, closed.output
    assert serving(project) == {**{n: "1.1.0+1" for n in NEXT}, **{n: "1.1.0" for n in PROD}}
    # When alice rolls it out as a hot-fix with a reason: it goes, recorded with its override
    hotfix = project.json("deploy", "--env", "production", "--build", "1.1.0+1", "--yes", "--actor", "alice",
                          "--hotfix", "--reason", REASON)
    assert hotfix["exit_code"] == 0, hotfix
    assert serving(project) == {n: "1.1.0+1" for n in NEXT + PROD}
    shown = project.json("show", hotfix["rollout_id"])
    assert shown["policy"]["hotfix"]["reason"] == REASON, shown["policy"]
    assert shown["builds"]["1.1.0+1"]["commit"] == pick

    # And history shows every step with who, what and why, newest first
    rows = project.json("history")["rollouts"]
    assert [(r["env"], r["action"], r["build"], r["status"], r["actor"], r["reason"]) for r in rows] == [
        ("production", "deploy", "1.1.0+1", "succeeded", "alice", REASON),
        ("production", "deploy", "1.1.0+1", "refused", "alice", ""),
        ("next", "deploy", "1.1.0+1", "succeeded", "bob", ""),
        ("production", "deploy", "1.1.0", "succeeded", "alice", "release 1.1.0"),
        ("next", "deploy", "1.1.0", "succeeded", "bob", ""),
    ]
    text = " ".join(project.cli("history", "--env", "production").output.split())
    assert "succeeded (--hotfix)" in text and "refused (window)" in text, text

    # And the hot-fix's report is written to the file named
    out = tmp_path / "hotfix.html"
    written = project.cli("report", hotfix["rollout_id"], "--out", str(out))
    assert written.exit_code == 0, written.output
    assert str(out) in written.output
    assert "1.1.0+1" in out.read_text() and REASON in out.read_text()
