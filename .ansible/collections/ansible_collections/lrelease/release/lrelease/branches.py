"""Release branches and hot-fixes on real git (``lrelease branch cut``, ``hotfix pick``, ``hotfix
revert``), and the ``git:`` section of lrelease.yml that names them.

The practice modelled (README, "Release branches and builds"): a release branch is cut from the
integration branch and its release point tagged (annotated); a fix for a release is cherry-picked
into its branch with ``-x``, so the branch says where each fix came from; a bad change is reverted
on the integration branch (``-m 1`` for a merge commit) and the revert cherry-picked into the
release branch. A conflict aborts the pick: the branch and every work tree as they were. Nothing
is pushed unless asked. Library code: it raises, the CLI chooses exit codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrelease.config import BUILD_RE
from lrelease.errors import ConfigError
from lrelease.gitrepo import GitError, Repo
from lrelease.killpoint import kill_point
from lrelease.schema import Checker, join, plain_text, show

_REF_RE = re.compile(r"(?!.*(?:\.\.|//|@\{|\.lock/|/\.))[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}(?<![./])\Z")
_REMOTE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
REF_EXPECTED = "letters, digits and '. _ / + -' (a git ref name)"


@dataclass(frozen=True)
class GitSettings:
    """``git:`` in lrelease.yml; see lrelease.example.yml for each key and its default."""

    repository: Path  # absolute; default: the directory of lrelease.yml
    integration_branch: str = "main"
    release_branch: str = "release/{version}"
    tag: str = "v{version}"
    remote: str = "origin"
    build_command: tuple[str, ...] = ()  # argv; {version} and {app} replaced; () : `lrelease build` refused
    build_artifact: str = "dist/{app}-{version}.tar.gz"  # in the build's work tree
    build_timeout_seconds: float = 1800
    feature_version: str = "0.0.0-{branch}.{short}"

    def release_branch_for(self, version: str) -> str:
        return self.release_branch.replace("{version}", version)

    def tag_for(self, version: str) -> str:
        return self.tag.replace("{version}", version)

    def release_version(self, branch: str) -> str | None:
        """The version a release branch is for (``release/1.4.0`` -> ``1.4.0``), or None."""
        head, _, tail = self.release_branch.partition("{version}")
        if branch.startswith(head) and branch.endswith(tail) and len(branch) > len(head) + len(tail):
            version = branch[len(head):len(branch) - len(tail)]
            return version if BUILD_RE.fullmatch(version) else None
        return None


def parse_git(check: Checker, value: Any, root: Path) -> GitSettings:
    key = "git"
    check.mapping(value, key, optional=("repository", "integration_branch", "release_branch", "tag", "remote",
                                       "build_command", "build_artifact", "build_timeout_seconds",
                                       "feature_version"),
                  example="{integration_branch: main, build_command: [make, dist]}")
    repo = check.string(value.get("repository", "."), join(key, "repository"), test=plain_text,
                        describe="a path (relative to lrelease.yml or absolute) without control characters")
    out: dict[str, Any] = {"repository": (root / repo).resolve()}
    for name, test, expected in (("integration_branch", _ref_ok, REF_EXPECTED),
                                 ("release_branch", _template_ok, f"{REF_EXPECTED} holding {{version}}"),
                                 ("tag", _template_ok, f"{REF_EXPECTED} holding {{version}}"),
                                 ("remote", lambda v: bool(_REMOTE_RE.fullmatch(v)), "a git remote name")):
        if name in value:
            out[name] = check.string(value[name], join(key, name), test=test, describe=expected)
    if "build_command" in value:
        command = value["build_command"]
        if not isinstance(command, list) or not command or not all(isinstance(a, str) and plain_text(a)
                                                                    for a in command):
            check.fail(join(key, "build_command"), f"an argv list such as [make, dist, \"VERSION={{version}}\"] "
                                                   f"(no shell), got {show(command)}")
        out["build_command"] = tuple(command)
    if "build_artifact" in value:
        out["build_artifact"] = check.string(
            value["build_artifact"], join(key, "build_artifact"), test=_artifact_ok,
            describe="a relative path inside the build's work tree ({app} and {version} replaced), no '..'")
    if "build_timeout_seconds" in value:
        out["build_timeout_seconds"] = check.number(value["build_timeout_seconds"], join(key, "build_timeout_seconds"),
                                                    exclusive=True)
    if "feature_version" in value:
        out["feature_version"] = check.string(
            value["feature_version"], join(key, "feature_version"), test=_feature_ok,
            describe="a build id template holding {short} (and optionally {branch}), e.g. 0.0.0-{branch}.{short}")
    return GitSettings(**out)


def _ref_ok(value: str) -> bool:
    return bool(_REF_RE.fullmatch(value))


def _template_ok(value: str) -> bool:
    return value.count("{version}") == 1 and _ref_ok(value.replace("{version}", "1.0.0"))


def _artifact_ok(value: str) -> bool:
    filled = value.replace("{app}", "app").replace("{version}", "1.0.0")
    return (plain_text(filled) and "{" not in filled and not filled.startswith("/")
            and ".." not in Path(filled).parts)


def _feature_ok(value: str) -> bool:
    return "{short}" in value and bool(BUILD_RE.fullmatch(value.replace("{branch}", "x").replace("{short}", "abc")))


# -- the operations ------------------------------------------------------------------------
@dataclass(frozen=True)
class Cut:
    branch: str
    tag: str
    commit: str
    pushed: bool


@dataclass(frozen=True)
class Applied:
    """What a pick or a revert did: the release branch, its new head, each new commit and what it
    came from; for a revert, the revert commit on the integration branch."""

    branch: str
    head: str
    picked: tuple[tuple[str, str], ...]  # (new commit on the release branch, the commit it was picked from)
    revert: str | None = None  # the revert commit made on the integration branch
    pushed: bool = False


def check_version(version: str, what: str = "VERSION") -> str:
    if not isinstance(version, str) or not BUILD_RE.fullmatch(version):
        raise ConfigError(what, "version", f"a build id (letters, digits, '.', '_', '+', '-'), got {version!r}")
    return version


def cut(settings: GitSettings, version: str, *, source: str | None = None, push: bool = False) -> Cut:
    """Create the release branch of ``version`` at the head of ``source`` (default the
    integration branch) and an annotated tag at that commit. Refused when either exists."""
    check_version(version)
    repo = Repo(settings.repository)
    source = source or settings.integration_branch
    commit = repo.resolve(source)
    branch, tag = settings.release_branch_for(version), settings.tag_for(version)
    if repo.has_branch(branch):
        raise GitError(f"branch cut: {branch} exists already (at {repo.resolve(branch)[:12]}); pick fixes into it "
                       "with `lrelease hotfix pick`, or cut another version")
    if repo.call("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}").returncode == 0:
        raise GitError(f"branch cut: tag {tag} exists already; cut another version")
    repo.run("branch", branch, commit)
    try:
        repo.run("tag", "-a", "-m", f"release {version}: cut from {source}", tag, commit)
    except GitError:
        repo.call("branch", "-D", branch)
        raise
    if push:
        repo.run("push", settings.remote, f"refs/heads/{branch}", f"refs/tags/{tag}")
    return Cut(branch, tag, commit, push)


def release_branch(settings: GitSettings, version: str | None = None, repo: Repo | None = None) -> str:
    """The release branch of ``version``, or (None) the newest one: the highest version among the
    branches the ``release_branch`` pattern matches. GitError when there is none."""
    repo = repo or Repo(settings.repository)
    if version is not None:
        branch = settings.release_branch_for(check_version(version, "--release"))
        if not repo.has_branch(branch):
            raise GitError(f"--release {version}: no branch {branch} in {repo.path} (`lrelease branch cut {version}`)")
        return branch
    prefix = settings.release_branch.split("{version}", 1)[0]
    found = [(settings.release_version(b), b) for b in repo.branches(prefix.rsplit("/", 1)[0] if "/" in prefix
                                                                       else "")]
    found = [(v, b) for v, b in found if v is not None]
    if not found:
        raise GitError(f"no release branch ({settings.release_branch}) in {repo.path}: cut one with "
                       "`lrelease branch cut VERSION`")
    return max(found, key=lambda vb: version_key(vb[0]))[1]


def version_key(version: str) -> tuple:
    """Sorts 1.10.0 after 1.9.0: numbers as numbers, words after numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.+_-]", version))


def pick(settings: GitSettings, shas: list[str] | tuple[str, ...], *, version: str | None = None,
         push: bool = False) -> Applied:
    """``git cherry-pick -x`` of ``shas`` (in the order given) into the release branch, all or
    nothing: on a conflict the pick is aborted (a Conflict naming the files, exit 2)."""
    if not shas:
        raise ConfigError("hotfix pick", "SHA", "at least one commit to pick")
    repo = Repo(settings.repository)
    branch = release_branch(settings, version, repo)
    commits = [repo.commit(sha) for sha in shas]
    with repo.on_branch(branch) as tree:
        before = repo.resolve(branch)
        merge = ("-m", "1") if any(len(c.parents) > 1 for c in commits) else ()
        repo.apply(tree, "cherry-pick", "-x", *merge, *(c.sha for c in commits),
                   what=f"hotfix pick: cherry-picking {', '.join(c.short for c in commits)} into {branch}")
        new = repo.log(before, branch)
    if push:
        repo.run("push", settings.remote, f"refs/heads/{branch}")
    return Applied(branch, repo.resolve(branch), tuple((c.sha, c.picked_from[0] if c.picked_from else "")
                                                        for c in new), pushed=push)


def revert(settings: GitSettings, sha: str, *, version: str | None = None, push: bool = False) -> Applied:
    """Revert ``sha`` on the integration branch (a merge commit: ``-m 1``, its mainline), then
    cherry-pick the revert (``-x``) into the release branch. A conflict on either side aborts that
    step (a revert already made on the integration branch stays: the message says so). When the
    integration branch already has a standing revert of ``sha`` (a run that died, or was stopped by
    a conflict, before its pick), that revert is picked: ``sha`` is never reverted twice."""
    repo = Repo(settings.repository)
    branch = release_branch(settings, version, repo)
    target = repo.commit(sha)
    main = settings.integration_branch
    reverted = standing_revert(repo, target.sha, main)
    if reverted is None:
        with repo.on_branch(main) as tree:
            merge = ("-m", "1") if len(target.parents) > 1 else ()
            repo.apply(tree, "revert", "--no-edit", *merge, target.sha,
                       what=f"hotfix revert: reverting {target.short} on {main}")
            reverted = repo.resolve(main)
    kill_point("hotfix-reverted")
    try:
        applied = pick(settings, [reverted], version=settings.release_version(branch))
    except GitError as exc:
        raise GitError(f"{exc} (the revert {reverted[:12]} stays on {main})") from None
    if push:
        repo.run("push", settings.remote, f"refs/heads/{main}", f"refs/heads/{branch}")
    return Applied(applied.branch, applied.head, applied.picked, revert=reverted, pushed=push)


def standing_revert(repo: Repo, sha: str, branch: str) -> str | None:
    """The commit on ``branch`` after ``sha`` that reverts it and is not itself reverted since
    (None when there is none: ``sha`` is in effect on ``branch``)."""
    standing = None
    for c in repo.log(sha, branch):
        if any(sha.startswith(r) for r in c.reverts):
            standing = c.sha
        elif standing is not None and any(standing.startswith(r) for r in c.reverts):
            standing = None
    return standing
