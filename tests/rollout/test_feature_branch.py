"""A feature branch to a development environment, on the session's sandbox fleet: `deploy --env dev
--branch feature/x` builds the branch's head in a clean worktree (the demo app's own build), records
the build with its provenance, and rolls it out with no window, no captain and no Next; `status`
and `show` name each host's build with its commit. (The refusals, for production, are unit tests:
tests/unit/test_git_release.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from lrelease.sandbox.fleet import project_config
from tests.rollout.conftest import Project, fleet_file

# The demo app's artifact for {version}, made in the build's work tree (no shell: an argv list).
BUILD = [sys.executable, "-c", "import sys, pathlib; from lrelease.sandbox.demoapp.build import build_artifact; "
                               "build_artifact(sys.argv[1], pathlib.Path('dist'))", "{version}"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def dev_project(fleet, root: Path) -> Project:
    """The sandbox's nodes as a development environment `dev` (its own fleet file), built from a
    git repository with main and feature/login."""
    repo = root / "app"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for key, value in (("user.name", "Dev"), ("user.email", "dev@example.com"), ("commit.gpgsign", "false")):
        git(repo, "config", key, value)
    (repo / "README").write_text("demo app\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    git(repo, "switch", "-q", "-c", "feature/login")
    (repo / "login.txt").write_text("login\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "login")
    git(repo, "switch", "-q", "main")
    fleet_file(fleet, root / "fleet.yml", {}, rest="dev")
    project = Project(fleet, root)
    data = project_config(fleet.config, waves=["100%"], bake_seconds=1, gate_timeout_seconds=10)
    data.update(fleet=str(root / "fleet.yml"), state_dir=str(root / "state"),
                artifacts={"source": "dir", "path": str(root / "artifacts")},
                git={"repository": str(repo), "build_command": BUILD})
    data["environments"] = {"dev": {**data["environments"]["production"], "kind": "development"}}
    project.path.write_text(yaml.safe_dump(data, sort_keys=False))
    return project


def test_a_feature_branch_is_built_and_deployed_to_dev_with_its_commit_shown(fleet, tmp_path):
    # Given the sandbox's nodes as a development environment and a feature branch
    project = dev_project(fleet, tmp_path)
    head = git(tmp_path / "app", "rev-parse", "feature/login")
    version = f"0.0.0-feature-login.{head[:8]}"
    # When it is deployed with --branch
    outcome = project.json("deploy", "--env", "dev", "--branch", "feature/login", "--yes")
    # Then it was built, recorded as a feature build of that commit, and is live on every node
    assert outcome["exit_code"] == 0, outcome
    assert outcome["build"] == version and outcome["status"] == "succeeded"
    assert {project.serving(n) for n in project.nodes} == {version}
    [build] = project.json("builds")["builds"]
    assert (build["version"], build["kind"], build["branch"], build["commit"]) == \
        (version, "feature", "feature/login", head)
    # And status names each host's build with its commit
    status = project.json("status", "--env", "dev")
    assert status["exit_code"] == 0
    assert {(h["build"], h["commit"]) for h in status["hosts"]} == {(version, head)}
    # And show gives the roll-out's build with its provenance
    shown = project.json("show", outcome["rollout_id"])
    assert shown["builds"][version]["commit"] == head
    assert f"commit {head[:12]} of feature/login" in project.cli("show", outcome["rollout_id"]).output
