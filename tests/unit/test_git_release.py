"""Release branches, hot-fixes and builds with provenance on real git, in temporary directories:
`branch cut` (a branch and an annotated tag, nothing pushed unless --push), `hotfix pick` (a
conflict: one line naming the file, the pick aborted, the tree clean, exit 2), `hotfix revert` (a
merge commit with -m 1, the revert cherry-picked into the release branch), `build` (the artifact
and its sha256 in the store, the provenance recorded), `builds`, a deploy of a build whose
artifact changed (refused, exit 2) and feature branches (only to a development environment: exit
4 elsewhere). Every deploy here is refused before any host is reached: the fleet's addresses are
never dialled (tests/rollout/test_feature_branch.py deploys a feature branch to the sandbox)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lrelease import builds, killpoint, policies
from lrelease.cli.main import cli
from lrelease.config import load_config
from lrelease.state import StateStore

BUILD_SCRIPT = """\
import pathlib, sys, tarfile
version = sys.argv[1]
if pathlib.Path("FAIL").exists():
    sys.exit("the build broke: FAIL is there")
pathlib.Path("dist").mkdir(exist_ok=True)
with tarfile.open(f"dist/demoapp-{version}.tar.gz", "w:gz") as out:
    out.add("app.txt")
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, message: str, **files: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The app's repository: main with one commit (app.txt, build.py), and a bare remote origin."""
    path = tmp_path / "app"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    for key, value in (("user.name", "Dev"), ("user.email", "dev@example.com"), ("commit.gpgsign", "false")):
        git(path, "config", key, value)
    commit(path, "initial", **{"app.txt": "one\ntwo\nthree\n", "build.py": BUILD_SCRIPT})
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    git(path, "remote", "add", "origin", str(tmp_path / "origin.git"))
    return path


@pytest.fixture
def project(tmp_path: Path, repo: Path) -> Path:
    """lrelease.yml: production (kind release, node2) and dev (kind development, node1), git: the
    repository above, built by build.py; no host is ever reached."""
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump({"nodes": {
        "node1": {"environment": "dev", "address": "192.0.2.1"},
        "node2": {"environment": "production", "address": "192.0.2.2"}}}))
    def service(**more) -> dict:
        return {"deploy_root": "/srv/demoapp", "service": {"systemd": "demoapp"}, "waves": ["100%"], **more}

    config = {"version": 1, "app": "demoapp", "fleet": "fleet.yml", "state_dir": "state",
              "git": {"repository": "app", "build_command": [sys.executable, "build.py", "{version}"]},
              "environments": {"production": service(), "dev": service(kind="development")}}
    path = tmp_path / "lrelease.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run(project: Path, *args: str, actor: str = "alice"):
    return CliRunner(env={"LRELEASE_ACTOR": actor}).invoke(cli, [*args, "--config", str(project)])


def one_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def store(project: Path) -> StateStore:
    return StateStore(project.parent / "state" / "lrelease.db")


# -- branch cut ------------------------------------------------------------------------------
def test_cut_makes_the_release_branch_and_an_annotated_tag_and_pushes_only_when_asked(project, repo, tmp_path):
    head = git(repo, "rev-parse", "main")
    # When 1.0.0 is cut without --push
    cut = run(project, "branch", "cut", "1.0.0")
    # Then release/1.0.0 and an annotated v1.0.0 are at main's head, and the remote has nothing
    assert cut.exit_code == 0, cut.output
    assert git(repo, "rev-parse", "release/1.0.0") == head
    assert git(repo, "cat-file", "-t", "v1.0.0") == "tag"
    assert git(repo, "rev-parse", "v1.0.0^{commit}") == head
    assert git(tmp_path / "origin.git", "for-each-ref") == ""
    # And the caller's checkout is left alone
    assert git(repo, "branch", "--show-current") == "main"
    # When 1.1.0 is cut with --push
    assert run(project, "branch", "cut", "1.1.0", "--push").exit_code == 0
    # Then the remote has that branch and its tag
    refs = git(tmp_path / "origin.git", "for-each-ref", "--format=%(refname)").splitlines()
    assert sorted(refs) == ["refs/heads/release/1.1.0", "refs/tags/v1.1.0"]
    # And cutting a version again is one line, exit 2, nothing changed
    again = run(project, "branch", "cut", "1.0.0")
    assert again.exit_code == 2 and "release/1.0.0 exists already" in one_line(again)


def test_the_branch_and_tag_names_come_from_lrelease_yml(project, repo):
    # Given other names for release branches, tags and the integration branch
    git(repo, "branch", "-m", "main", "trunk")
    config = yaml.safe_load(project.read_text())
    config["git"].update(integration_branch="trunk", release_branch="rel-{version}", tag="release-{version}")
    project.write_text(yaml.safe_dump(config))
    # When a release is cut and a fix picked
    assert run(project, "branch", "cut", "2.0.0").exit_code == 0
    fix = commit(repo, "fix", **{"fix.txt": "fixed\n"})
    picked = run(project, "hotfix", "pick", fix)
    # Then they follow those names
    assert picked.exit_code == 0, picked.output
    assert git(repo, "cat-file", "-t", "release-2.0.0") == "tag"
    assert git(repo, "show", "rel-2.0.0:fix.txt") == "fixed"


# -- hotfix pick -----------------------------------------------------------------------------
def test_a_cherry_pick_conflict_is_one_line_naming_the_file_aborted_with_a_clean_tree_exit_2(project, repo):
    # Given release/1.0.0 with its own change to app.txt, checked out in the repository's work tree
    assert run(project, "branch", "cut", "1.0.0").exit_code == 0
    git(repo, "switch", "-q", "release/1.0.0")
    release_head = commit(repo, "release wording", **{"app.txt": "one\nTWO (release)\nthree\n"})
    # And a commit on main changing the same line, and one that would apply cleanly
    git(repo, "switch", "-q", "main")
    clean = commit(repo, "docs", **{"README": "read me\n"})
    clash = commit(repo, "main wording", **{"app.txt": "one\nTWO (main)\nthree\n"})
    git(repo, "switch", "-q", "release/1.0.0")
    # When both are picked into the release branch
    result = run(project, "hotfix", "pick", clean, clash)
    # Then one line names the conflicting file and says it was aborted; exit 2
    line = one_line(result)
    assert result.exit_code == 2, result.output
    assert "conflict in app.txt" in line and "aborted" in line and "release/1.0.0" in line, line
    # And nothing was picked (not even the clean one), the tree is clean, no pick is under way
    assert git(repo, "rev-parse", "release/1.0.0") == release_head
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".git" / "CHERRY_PICK_HEAD").exists() and not (repo / ".git" / "sequencer").exists()
    assert (repo / "app.txt").read_text() == "one\nTWO (release)\nthree\n"


def test_a_pick_goes_to_the_newest_release_branch_with_its_origin_recorded(project, repo):
    # Given release branches 1.9.0 and 1.10.0 (newer, though it sorts first as text)
    assert run(project, "branch", "cut", "1.9.0").exit_code == 0
    assert run(project, "branch", "cut", "1.10.0").exit_code == 0
    fix = commit(repo, "fix the login", **{"login.txt": "ok\n"})
    # When the fix is picked without --release
    result = run(project, "hotfix", "pick", fix, "--json")
    # Then it lands on release/1.10.0 with a -x trailer naming the fix; 1.9.0 is untouched
    assert result.exit_code == 0, result.output
    picked = json.loads(result.output)
    assert picked["branch"] == "release/1.10.0" and picked["picked"][0]["from"] == fix
    assert f"(cherry picked from commit {fix})" in git(repo, "log", "-1", "--format=%B", "release/1.10.0")
    assert git(repo, "rev-parse", "release/1.9.0") == git(repo, "rev-parse", "v1.9.0^{commit}")
    # And --release picks into that one
    assert run(project, "hotfix", "pick", fix, "--release", "1.9.0").exit_code == 0
    assert git(repo, "show", "release/1.9.0:login.txt") == "ok"


def test_picking_a_fix_the_release_has_already_is_one_line_exit_2(project, repo):
    assert run(project, "branch", "cut", "1.0.0").exit_code == 0
    fix = commit(repo, "fix", **{"fix.txt": "fixed\n"})
    assert run(project, "hotfix", "pick", fix).exit_code == 0
    head = git(repo, "rev-parse", "release/1.0.0")
    # When it is picked again
    again = run(project, "hotfix", "pick", fix)
    # Then one line says it is there already; nothing changed, no work tree left behind
    assert again.exit_code == 2 and "there already" in one_line(again)
    assert git(repo, "rev-parse", "release/1.0.0") == head
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_without_a_release_branch_a_pick_is_one_line_exit_2(project, repo):
    result = run(project, "hotfix", "pick", git(repo, "rev-parse", "HEAD"))
    assert result.exit_code == 2 and "no release branch" in one_line(result) and "branch cut" in result.output


# -- hotfix revert ---------------------------------------------------------------------------
def test_reverting_a_merge_commit_uses_its_mainline_and_the_revert_is_picked_into_the_release(project, repo):
    # Given a feature merged into main with a merge commit, then release/1.0.0 cut
    git(repo, "switch", "-q", "-c", "feature/bad")
    commit(repo, "bad feature", **{"bad.txt": "bad\n"})
    git(repo, "switch", "-q", "main")
    commit(repo, "meanwhile on main", **{"other.txt": "other\n"})
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge feature/bad", "feature/bad")
    merge = git(repo, "rev-parse", "HEAD")
    assert len(git(repo, "show", "-s", "--format=%P", merge).split()) == 2
    assert run(project, "branch", "cut", "1.0.0").exit_code == 0
    # When the merge is reverted
    result = run(project, "hotfix", "revert", merge, "--json")
    # Then main has a revert of the merge against its first parent: bad.txt gone, other.txt kept
    assert result.exit_code == 0, result.output
    done = json.loads(result.output)
    revert = done["revert"]
    assert git(repo, "rev-parse", "main") == revert
    assert f"This reverts commit {merge}" in git(repo, "log", "-1", "--format=%B", revert)
    assert "bad.txt" not in git(repo, "ls-tree", "--name-only", "main") and (repo / "other.txt").exists()
    # And the release branch got the revert, cherry-picked with -x
    body = git(repo, "log", "-1", "--format=%B", "release/1.0.0")
    assert f"(cherry picked from commit {revert})" in body
    assert "bad.txt" not in git(repo, "ls-tree", "--name-only", "release/1.0.0")
    assert done["picked"] == [{"commit": git(repo, "rev-parse", "release/1.0.0"), "from": revert}]


def killed_at(project: Path, point: str, *args: str) -> subprocess.CompletedProcess:
    """`lrelease ARGS` in a process of its own that SIGKILLs itself at the test-only kill ``point``."""
    env = {**os.environ, "LRELEASE_ACTOR": "alice", killpoint.TEST_KILL_AT: point}
    return subprocess.run([sys.executable, "-m", "lrelease", *args, "--config", str(project)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_revert_killed_before_its_pick_is_finished_by_the_next_revert_without_reverting_twice(project, repo):
    # Given a bad change on main, release 1.0.0 cut after it
    bad = commit(repo, "bad change", **{"bad.txt": "bad\n"})
    assert run(project, "branch", "cut", "1.0.0").exit_code == 0
    release_head = git(repo, "rev-parse", "release/1.0.0")
    # When `hotfix revert` is SIGKILLed right after reverting on main, before the pick
    killed = killed_at(project, "hotfix-reverted", "hotfix", "revert", bad)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    revert = git(repo, "rev-parse", "main")
    assert f"This reverts commit {bad}" in git(repo, "log", "-1", "--format=%B", revert)
    assert git(repo, "rev-parse", "release/1.0.0") == release_head
    # And it is run again
    again = run(project, "hotfix", "revert", bad, "--json")
    # Then main keeps its one revert (not reverted twice, so bad.txt does not come back) and the
    # release branch gets that revert, picked with -x
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["revert"] == revert
    assert git(repo, "rev-parse", "main") == revert
    assert f"(cherry picked from commit {revert})" in git(repo, "log", "-1", "--format=%B", "release/1.0.0")
    assert "bad.txt" not in git(repo, "ls-tree", "--name-only", "release/1.0.0")
    # And a third run changes nothing: one line, exit 2
    third = run(project, "hotfix", "revert", bad)
    assert third.exit_code == 2 and "there already" in one_line(third)
    assert git(repo, "rev-parse", "main") == revert


def test_a_change_reverted_and_landed_again_is_reverted_anew(project, repo):
    # Given a change reverted on main, then the revert reverted (the change landed again)
    bad = commit(repo, "flaky change", **{"flaky.txt": "x\n"})
    git(repo, "revert", "--no-edit", bad)
    git(repo, "revert", "--no-edit", "HEAD")
    assert (repo / "flaky.txt").exists()
    assert run(project, "branch", "cut", "1.0.0").exit_code == 0
    relanded = git(repo, "rev-parse", "main")
    # When it is reverted with lrelease
    done = run(project, "hotfix", "revert", bad, "--json")
    # Then a new revert is made on main (the old one is no longer standing) and picked
    assert done.exit_code == 0, done.output
    assert git(repo, "rev-parse", "main^") == relanded
    assert "flaky.txt" not in git(repo, "ls-tree", "--name-only", "release/1.0.0")


# -- builds ------------------------------------------------------------------------------------
def test_provenance_after_a_cut_a_pick_and_a_revert(project, repo):
    # Given a bad change on main, release 1.0.0 cut after it, and its first build
    bad = commit(repo, "bad change", **{"bad.txt": "bad\n"})
    assert run(project, "branch", "cut", "1.0.0").exit_code == 0
    cut_point = git(repo, "rev-parse", "v1.0.0^{commit}")
    first = run(project, "build", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["build"]["version"] == "1.0.0"
    assert json.loads(first.output)["build"]["tags"] == ["v1.0.0"]
    # And a fix on main picked into the release, and the bad change reverted
    fix = commit(repo, "fix the login", **{"login.txt": "ok\n"})
    assert run(project, "hotfix", "pick", fix).exit_code == 0
    assert run(project, "hotfix", "revert", bad).exit_code == 0
    revert = git(repo, "rev-parse", "main")
    # When the release branch is built again, by bob
    second = run(project, "build", actor="bob")
    assert second.exit_code == 0, second.output
    # Then its provenance names the branch, its head, the branch point, the pick and the revert
    with store(project) as db:
        got = builds.provenance(db, "1.0.0+2")
    head = git(repo, "rev-parse", "release/1.0.0")
    assert got is not None
    assert (got["branch"], got["commit"], got["branch_point"], got["repository"]) == \
        ("release/1.0.0", head, cut_point, str(repo))
    assert [p["from"] for p in got["picks"]] == [fix, revert]
    assert [r["reverts"] for r in got["reverts"]] == [bad]
    assert got["reverts"][0]["commit"] == head and got["tags"] == [] and got["built_by"] == "bob"
    # And the artifact and its sha256 are in the store, as recorded
    artifact = project.parent / "artifacts" / "demoapp-1.0.0+2.tar.gz"
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert got["sha256"] == digest and got["artifact"] == artifact.name
    assert (project.parent / "artifacts" / "demoapp-1.0.0+2.tar.gz.sha256").read_text().split()[0] == digest
    # And the text output says so too
    assert f"reverted {bad[:12]}" in second.output and f"from {fix[:12]}" in second.output
    # And a build not made by lrelease has no provenance
    with store(project) as db:
        assert builds.provenance(db, "9.9.9") is None


def test_a_build_killed_between_storing_and_recording_is_built_again_by_the_next_build(project, repo):
    assert run(project, "branch", "cut", "1.0.0").exit_code == 0
    artifact = project.parent / "artifacts" / "demoapp-1.0.0.tar.gz"
    # When `lrelease build` is SIGKILLed after the artifact is in the store, before it is recorded
    killed = killed_at(project, "build-stored", "build")
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    # Then the artifact is there with its mark, and no build is recorded
    assert artifact.exists() and artifact.with_name(artifact.name + ".building").exists()
    with store(project) as db:
        assert db.build_records() == []
    # When it is built again
    again = run(project, "build", "--json")
    # Then the same build id is made and recorded, the artifact's sha256 as recorded, the mark gone
    assert again.exit_code == 0, again.output
    built = json.loads(again.output)["build"]
    assert built["version"] == "1.0.0"
    assert built["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert not artifact.with_name(artifact.name + ".building").exists()
    # And an artifact with no mark (made without `lrelease build`) is still refused, untouched
    other = project.parent / "artifacts" / "demoapp-2.0.0.tar.gz"
    other.write_bytes(b"made by hand")
    refused = run(project, "build", "--version", "2.0.0")
    assert refused.exit_code == 2 and "without `lrelease build`" in one_line(refused)
    assert other.read_bytes() == b"made by hand"


def test_a_build_another_lrelease_build_is_making_is_refused_and_left_alone(project, repo):
    assert run(project, "branch", "cut", "1.0.0").exit_code == 0
    # Given a build of 1.0.0 in progress in another live process (its mark names that pid)
    artifact = project.parent / "artifacts" / "demoapp-1.0.0.tar.gz"
    artifact.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mark = artifact.with_name(artifact.name + ".building")
        mark.write_text(f"lrelease build in progress (pid {holder.pid})\n")
        # When the same build is started
        refused = run(project, "build")
        # Then one line names the other process, exit 2, and its mark stays
        assert refused.exit_code == 2 and f"pid {holder.pid}" in one_line(refused)
        assert mark.exists()
    finally:
        holder.kill()
        holder.wait()


def test_builds_lists_the_builds_newest_first(project, repo):
    # Given two builds of release 1.0.0
    assert run(project, "branch", "cut", "1.0.0").exit_code == 0
    assert run(project, "build").exit_code == 0
    fix = commit(repo, "fix", **{"fix.txt": "fixed\n"})
    assert run(project, "hotfix", "pick", fix).exit_code == 0
    assert run(project, "build", "--version", "1.0.1").exit_code == 0
    # When they are listed
    listed = run(project, "builds", "--json")
    text = run(project, "builds")
    # Then the newest comes first, each with its branch and commit and who built it
    assert listed.exit_code == 0 and text.exit_code == 0
    rows = json.loads(listed.output)["builds"]
    assert [(r["version"], r["branch"], len(r["picks"]), r["built_by"]) for r in rows] == \
        [("1.0.1", "release/1.0.0", 1, "alice"), ("1.0.0", "release/1.0.0", 0, "alice")]
    assert rows[0]["commit"] == git(repo, "rev-parse", "release/1.0.0")
    assert "1.0.1" in text.output and rows[1]["commit"][:12] in text.output


def test_the_same_build_id_twice_and_a_failing_build_register_nothing(project, repo):
    assert run(project, "branch", "cut", "1.0.0").exit_code == 0
    assert run(project, "build").exit_code == 0
    # When the same build id is asked for again
    again = run(project, "build", "--version", "1.0.0")
    # Then one line, exit 2
    assert again.exit_code == 2 and "recorded already" in one_line(again)
    # When the build command fails
    fix = commit(repo, "break the build", FAIL="x\n")
    assert run(project, "hotfix", "pick", fix).exit_code == 0
    broken = run(project, "build")
    # Then one line with its own words, exit 2, and no artifact nor record
    assert broken.exit_code == 2, broken.output
    assert "exited 1" in one_line(broken) and "the build broke" in broken.output
    assert not (project.parent / "artifacts" / "demoapp-1.0.0+1.tar.gz").exists()
    with store(project) as db:
        assert [b.version for b in db.build_records()] == ["1.0.0"]
    # And the build's temporary work tree is gone
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_a_deploy_of_a_build_whose_artifact_changed_is_refused_exit_2(project, repo):
    # Given build 1.0.0, then its artifact and .sha256 replaced by another (consistent) pair
    assert run(project, "branch", "cut", "1.0.0").exit_code == 0
    assert run(project, "build").exit_code == 0
    with store(project) as db:
        recorded = db.build_record("1.0.0").sha256
    artifact = project.parent / "artifacts" / "demoapp-1.0.0.tar.gz"
    artifact.write_bytes(b"something else")
    other = hashlib.sha256(b"something else").hexdigest()
    artifact.with_name(artifact.name + ".sha256").write_text(other)
    # When it is deployed
    result = run(project, "deploy", "--env", "production", "--build", "1.0.0", "--yes")
    # Then refused before anything: one line naming both checksums, exit 2, nothing recorded
    line = one_line(result)
    assert result.exit_code == 2, result.output
    assert other in line and f"recorded with {recorded}" in line and "before any host changed" in line
    with store(project) as db:
        assert db.history() == []


# -- feature branches --------------------------------------------------------------------------
def test_a_feature_branch_is_refused_for_production_exit_4_and_nothing_is_built(project, repo):
    git(repo, "switch", "-q", "-c", "feature/login")
    commit(repo, "login", **{"login.txt": "new\n"})
    # When it is deployed to production
    result = run(project, "deploy", "--env", "production", "--branch", "feature/login", "--yes")
    # Then refused: one line, exit 4, and nothing was built
    assert result.exit_code == 4, result.output
    line = one_line(result)
    assert "production" in line and "feature branch feature/login" in line and "kind: development" in line
    assert not (project.parent / "artifacts").exists()


def test_a_feature_branch_build_given_by_its_id_is_refused_for_production_and_recorded(project, repo):
    # Given a build of a feature branch (as `deploy --env dev --branch` makes it)
    git(repo, "switch", "-q", "-c", "feature/login")
    head = commit(repo, "login", **{"login.txt": "new\n"})
    cfg = load_config(project)
    with store(project) as db:
        record = builds.make(cfg, db, actor="alice", ref="feature/login", feature=True)
        # (the same commit again: the same build, not a second one)
        assert builds.make(cfg, db, actor="alice", ref="feature/login", feature=True) == record
    assert record.version == f"0.0.0-feature-login.{head[:8]}" and record.kind == "feature"
    # When that build id is deployed to production
    result = run(project, "deploy", "--env", "production", "--build", record.version, "--yes")
    # Then refused under the lock (exit 4) and the refusal is in the history
    assert result.exit_code == 4, result.output
    assert "feature branch feature/login" in result.output
    with store(project) as db:
        [row] = db.history()
    assert (row.status, row.build, row.policy["refused"]["policy"]) == ("refused", record.version, "feature_branch")


def test_deploy_takes_one_of_build_or_branch(project):
    for args in ([], ["--build", "1.0.0", "--branch", "feature/x"]):
        result = run(project, "deploy", "--env", "dev", "--yes", *args)
        assert result.exit_code == 2 and "one of --build BUILD or --branch BRANCH" in one_line(result)


@pytest.mark.parametrize(("edit", "key", "expected"), [
    ({"environments": {"dev": {"kind": "staging"}}}, "environments.dev.kind", "release or development"),
    ({"environments": {"dev": {"window": {"timezone": "UTC"}}}}, "environments.dev.window",
     "nothing with kind: development"),
    ({"git": {"build_command": "make dist"}}, "git.build_command", "an argv list"),
    ({"git": {"release_branch": "release"}}, "git.release_branch", "holding {version}"),
    ({"git": {"feature_version": "0.0.0-{branch}"}}, "git.feature_version", "holding {short}"),
    ({"git": {"build_artifact": "../out.tar.gz"}}, "git.build_artifact", "no '..'"),
])
def test_bad_git_and_kind_settings_are_one_line_naming_the_key(project, edit, key, expected):
    config = yaml.safe_load(project.read_text())
    for section, value in edit.items():
        for name, more in value.items():
            if isinstance(config[section].get(name), dict) and isinstance(more, dict):
                config[section][name].update(more)
            else:
                config[section][name] = more
    project.write_text(yaml.safe_dump(config))
    result = run(project, "builds")
    assert result.exit_code == 2, result.output
    assert f"{key}: " in result.output and expected in result.output, result.output


@pytest.mark.parametrize("command", [["branch", "cut"], ["hotfix", "pick"], ["hotfix", "revert"], ["build"],
                                     ["builds"]])
def test_the_git_commands_show_examples_and_their_exit_codes(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "Exit codes:" in result.output


def test_the_schema_defaults_of_git_and_kind_are_the_codes_defaults(tmp_path):
    from lrelease.schema_doc import schema_keys

    # Given a config without git: and without kind
    path = tmp_path / "lrelease.yml"
    path.write_text("version: 1\napp: demoapp\nenvironments:\n  dev:\n    deploy_root: /srv/demoapp\n"
                    "    service: {systemd: demoapp}\n")
    cfg = load_config(path)
    nodes = {key.path: key.node for key in schema_keys("lrelease")}
    # Then what the loader fills in is what the schema (and so docs/reference.md) says
    assert cfg.environment("dev").kind == nodes["environments.<name>.kind"]["default"]
    assert cfg.git is not None and cfg.git.repository == tmp_path
    for name in ("integration_branch", "release_branch", "tag", "remote", "build_artifact", "build_timeout_seconds",
                 "feature_version"):
        assert getattr(cfg.git, name) == nodes[f"git.{name}"]["default"], name
    assert cfg.git.build_command == () and "default" not in nodes["git.build_command"]


def test_a_development_environment_has_no_release_captain(project):
    # When a captain is set for dev (kind development)
    refused = run(project, "captain", "set", "bob", "--env", "dev")
    # Then one line says dev has none, exit 2, and nothing is recorded
    assert refused.exit_code == 2 and "kind development" in one_line(refused)
    with store(project) as db:
        assert db.captain("dev") is None
        # And one set in the store before that rule does not stop anyone else deploying there,
        # while production's captain still does
        db.set_captain("dev", "bob", set_by="carol", until=None, reason="")
        db.set_captain("production", "bob", set_by="carol", until=None, reason="")
        config = load_config(project)
        dev = policies.decide(db, "dev", actor="alice", action="deploy", environment=config.environment("dev"))
        prod = policies.decide(db, "production", actor="alice", action="deploy",
                               environment=config.environment("production"))
    assert dev.refused is None
    assert prod.refused is not None and "captain is bob" in prod.refused
