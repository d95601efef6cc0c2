"""Builds with provenance (``lrelease build``, ``lrelease builds``, ``deploy --branch``).

A build runs the configured command (``git.build_command``, an argv list, no shell) at one commit,
in a clean temporary ``git worktree`` (nothing of the caller's checkout gets in), copies the
artifact it made into the artifacts store (``artifacts.path``: ``<app>-<version>.<format>`` and its
``.sha256``) and registers it in the state store with where it came from: repository, branch,
commit, tags, the branch point (where it left the integration branch), the commits cherry-picked
(``-x`` trailers) and reverted ("This reverts commit X.") on the branch since, who built it and
when. :func:`provenance` gives that record as a dict (the HTML report shows it).

A deploy of a recorded build whose artifact no longer has the recorded sha256 is refused (exit 2:
the artifact is not the build it claims to be, as with a wrong ``.sha256``; rollout.Releaser.artifact).
A build of a feature branch goes only to an environment of ``kind: development`` (exit 4 elsewhere).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrelease import branches, secrets
from lrelease.branches import GitSettings
from lrelease.config import EnvironmentConfig, ProjectConfig
from lrelease.errors import ConfigError, ExitCode, LreleaseError
from lrelease.gitrepo import Repo
from lrelease.killpoint import kill_point
from lrelease.policies import PolicyRefused
from lrelease.proclife import process_alive
from lrelease.statebuilds import BuildRecord

if TYPE_CHECKING:
    from lrelease.state import StateStore

FEATURE = "feature"
_OUTPUT_LINES = 5  # of a failed build command, in its one-line error


class BuildFailed(LreleaseError):
    """The build command failed, or made no artifact; nothing was registered (exit 2)."""

    exit_code = ExitCode.USAGE


def settings(project: ProjectConfig) -> GitSettings:
    """The project's ``git:`` section (its defaults when the config was made without one)."""
    return project.git if project.git is not None else GitSettings(repository=project.root)


def provenance(store: StateStore, build: str) -> dict[str, Any] | None:
    """Where ``build`` came from, as recorded by ``lrelease build``: version, sha256, artifact,
    repository, branch, commit, kind, tags, branch_point, picks ([{commit, from, subject}]),
    reverts ([{commit, reverts, subject}]), built_by, built_at. None: no build record (an
    artifact made elsewhere)."""
    record = store.build_record(build)
    return record.to_dict() if record is not None else None


def lineage(picks: list[dict[str, str]], reverts: list[dict[str, str]]) -> list[str]:
    """A build's cherry-picks and reverts (a record's ``picks``/``reverts``), one line each, for a
    person (``lrelease show``, the HTML report)."""
    return ([f"cherry-picked {p['commit'][:12]} from {p['from'][:12]}: {p['subject']}" for p in picks]
            + [f"reverted {r['reverts'][:12]} by {r['commit'][:12]}: {r['subject']}" for r in reverts])


def feature_version(settings: GitSettings, branch: str, commit: str) -> str:
    """The build id of a feature branch's commit: ``git.feature_version`` with ``{branch}`` (the
    branch name, every run of characters a build id cannot hold made one '-') and ``{short}``."""
    name = re.sub(r"[^A-Za-z0-9.]+", "-", branch).strip("-.") or "branch"
    version = settings.feature_version.replace("{short}", commit[:8])
    room = 64 - len(version.replace("{branch}", ""))
    return version.replace("{branch}", name[:max(room, 1)].rstrip("-."))


def release_version(repo: Repo, settings: GitSettings, branch: str, commit: str) -> str:
    """The default build id on a release branch: its version (``release/1.4.0`` -> ``1.4.0``) at
    the release point, ``1.4.0+N`` N commits (picks, reverts) after it."""
    version = settings.release_version(branch)
    if version is None:
        raise ConfigError("--version", "version", f"a build id: {branch} is no release branch "
                                                  f"({settings.release_branch}), so give --version")
    since = len(repo.log(repo.merge_base(settings.integration_branch, commit), commit))
    return version if since == 0 else f"{version}+{since}"


def check_deploy_target(env: EnvironmentConfig, record: BuildRecord | None, *, branch: str | None = None) -> None:
    """A feature branch (``branch``, or a build recorded as one) goes only to an environment of
    kind development: elsewhere PolicyRefused (exit 4)."""
    feature = branch or (record.branch if record is not None and record.kind == FEATURE else None)
    if feature is None or env.kind == "development":
        return
    what = f"build {record.version} of feature branch {feature}" if record is not None and not branch \
        else f"feature branch {feature}"
    raise PolicyRefused(f"{env.name} is an environment of kind {env.kind}: it takes release builds only, not "
                        f"{what}; deploy it to an environment of kind: development", "feature_branch")


def make(project: ProjectConfig, store: StateStore, *, actor: str, ref: str | None = None,
         version: str | None = None, feature: bool = False) -> BuildRecord:
    """Build ``ref`` (default: the newest release branch's head) as ``version`` (default: from the
    release branch, or from ``git.feature_version`` with ``feature``) and register it. With
    ``feature``, a build of the same commit recorded before is returned as it is."""
    git = settings(project)
    if not git.build_command:
        raise ConfigError(str(project.path), "git.build_command", "an argv list (required for `lrelease build`), "
                                                                  "e.g. [make, dist, \"VERSION={version}\"]")
    if project.artifacts.source != "dir" or project.artifacts.path is None:
        raise ConfigError(str(project.path), "artifacts.source", "dir: `lrelease build` puts its artifacts into "
                                                                 "artifacts.path (with source url the CI does)")
    if version is not None:
        branches.check_version(version, "--version")
    repo = Repo(git.repository)
    if ref is None:
        ref = branches.release_branch(git, repo=repo)
    branch = ref if repo.has_branch(ref) else None
    commit = repo.resolve(ref)
    if version is None:
        if feature:
            version = feature_version(git, ref, commit)
        elif branch is not None:
            version = release_version(repo, git, branch, commit)
        else:
            raise ConfigError("--version", "version", f"a build id: {ref} is no branch, so give --version")
    known = store.build_record(version)
    if known is not None:
        if feature and known.commit == commit:
            return known
        raise ConfigError("--version", "version", f"a new build id: build {version} is recorded already (commit "
                                                  f"{known.commit[:12]} of {known.branch or '?'}, built by "
                                                  f"{known.built_by} at {known.built_at})")
    target = project.artifacts.path / project.artifacts.file_name(project.app, version)
    leftovers = _leftovers(target)
    mark = leftovers[-1]
    if mark.exists():
        # Put there by a `lrelease build` of this version that is running, or that died before
        # recording it (no record: checked above), whose artifact nobody deployed as this build.
        pid = _builder(mark)
        if pid and pid != os.getpid() and process_alive(pid):
            raise ConfigError("--version", "version", f"a build id no other `lrelease build` is making: pid {pid} "
                                                      f"is building {version} ({mark})")
        for path in leftovers:
            path.unlink(missing_ok=True)
    elif target.exists():
        raise ConfigError("--version", "version", f"a new build id: {target} exists already (an artifact made "
                                                  "without `lrelease build`)")
    with repo.worktree(commit, detach=True) as tree:
        made = _run(git, project.app, version, commit, tree)
        sha = _store(made, target)
    kill_point("build-stored")
    record = BuildRecord(version=version, sha256=sha, artifact=target.name, repository=str(repo.path),
                         branch=branch, commit=commit, kind=FEATURE if feature else "release",
                         tags=tuple(repo.tags_at(commit)), built_by=actor, **_lineage(repo, git, commit))
    try:
        recorded = store.record_build(record)
    except BaseException:
        for path in leftovers:
            path.unlink(missing_ok=True)
        raise
    mark.unlink(missing_ok=True)
    return recorded


def _leftovers(target: Path) -> tuple[Path, Path, Path]:
    """The artifact, its ``.sha256`` and the ``.building`` mark `_store` puts beside them first and
    `make` removes once the build is recorded (the mark last)."""
    return target, target.with_name(target.name + ".sha256"), target.with_name(target.name + ".building")


def _builder(mark: Path) -> int:
    """The pid a ``.building`` mark names (0 if unreadable)."""
    found = re.search(r"pid (\d+)", mark.read_text(encoding="ascii", errors="replace"))
    return int(found.group(1)) if found else 0


def _lineage(repo: Repo, git: GitSettings, commit: str) -> dict[str, Any]:
    """The branch point and the picks and reverts after it (nothing when the integration branch is
    unknown to this repository)."""
    if repo.call("rev-parse", "--verify", "--quiet", f"refs/heads/{git.integration_branch}").returncode != 0:
        return {}
    point = repo.merge_base(git.integration_branch, commit)
    commits = repo.log(point, commit)
    picks = tuple({"commit": c.sha, "from": c.picked_from[-1], "subject": c.subject} for c in commits
                  if c.picked_from)
    reverts = tuple({"commit": c.sha, "reverts": c.reverts[0], "subject": c.subject} for c in commits if c.reverts)
    return {"branch_point": point, "picks": picks, "reverts": reverts}


def _run(git: GitSettings, app: str, version: str, commit: str, tree: Path) -> Path:
    argv = [a.replace("{version}", version).replace("{app}", app) for a in git.build_command]
    env = {**os.environ, "LRELEASE_BUILD_VERSION": version, "LRELEASE_BUILD_COMMIT": commit}
    try:
        proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, check=False,
                              timeout=git.build_timeout_seconds, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise BuildFailed(f"build {version}: git.build_command: no such program {argv[0]!r}") from None
    except subprocess.TimeoutExpired:
        raise BuildFailed(f"build {version}: the build command took longer than git.build_timeout_seconds "
                          f"({git.build_timeout_seconds:g} s); nothing registered") from None
    if proc.returncode != 0:
        tail = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()][-_OUTPUT_LINES:]
        raise BuildFailed(secrets.scrub(f"build {version}: {' '.join(argv)} exited {proc.returncode}"
                                        f"{': ' + ' | '.join(tail) if tail else ''}; nothing registered"))
    made = tree / git.build_artifact.replace("{version}", version).replace("{app}", app)
    if not made.is_file():
        raise BuildFailed(f"build {version}: the build command made no {made.relative_to(tree)} "
                          "(git.build_artifact); nothing registered")
    return made


def _store(made: Path, target: Path) -> str:
    """Copy the artifact into the store, then its ``.sha256``; each appears whole or not at all. A
    ``.building`` mark goes first: `make` removes it once the build is recorded."""
    from lrelease.rollout import sha256_of  # rollout imports this module

    target.parent.mkdir(parents=True, exist_ok=True)
    _leftovers(target)[-1].write_text(f"lrelease build in progress (pid {os.getpid()})\n", encoding="ascii")
    sha = sha256_of(made)
    part = target.with_name(target.name + ".part")
    shutil.copyfile(made, part)
    part.replace(target)
    sums = target.with_name(target.name + ".sha256")
    part = sums.with_name(sums.name + ".part")
    part.write_text(f"{sha}  {target.name}\n", encoding="ascii")
    part.replace(sums)
    return sha
