"""The git command line, through subprocess: an argv list (never a shell string), a bounded time,
and every failure one line (``GitError``, exit 2) saying which command failed and git's own words.

Small on purpose: lrelease/branches.py (release branches and hot-fixes) and lrelease/builds.py
(builds with provenance) say *what* to do; this module only runs git and reads its answers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lrelease.errors import ExitCode, LreleaseError

TIMEOUT = 300  # seconds for one git command (a push or a large checkout included)
_PICKED = re.compile(r"^\(cherry picked from commit ([0-9a-f]{7,64})\)\s*$", re.MULTILINE)
_REVERTS = re.compile(r"^This reverts commit ([0-9a-f]{7,64})[.,]", re.MULTILINE)


class GitError(LreleaseError):
    """A git command failed or its repository cannot be used as asked: one line, exit 2."""

    exit_code = ExitCode.USAGE


class Conflict(GitError):
    """A cherry-pick or revert stopped on a conflict; it was aborted (the tree is as it was)."""

    def __init__(self, message: str, files: tuple[str, ...]) -> None:
        self.files = files
        super().__init__(message)


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    body: str
    parents: tuple[str, ...]

    @property
    def short(self) -> str:
        return self.sha[:12]

    @property
    def picked_from(self) -> tuple[str, ...]:
        """The commits ``git cherry-pick -x`` says this one was picked from."""
        return tuple(_PICKED.findall(self.body))

    @property
    def reverts(self) -> tuple[str, ...]:
        """The commits ``git revert`` says this one reverts ("This reverts commit X.")."""
        return tuple(_REVERTS.findall(self.body))


class Repo:
    """One git repository (a work tree or a bare repository) at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise GitError(f"{self.path}: no such directory (git.repository in lrelease.yml)")
        self.git_dir = Path(self.run("rev-parse", "--absolute-git-dir"))

    def run(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        """``git ARGS`` in ``cwd`` (default the repository); its stdout, stripped. A failure is a
        GitError naming the command and git's last words."""
        proc = self.call(*args, cwd=cwd)
        if check and proc.returncode != 0:
            raise GitError(f"git {' '.join(args[:3])}{' ...' if len(args) > 3 else ''} failed in {cwd or self.path}: "
                           f"{_last_words(proc)}")
        return proc.stdout.strip()

    def call(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_EDITOR": "true"}
        try:
            return subprocess.run(["git", *args], cwd=cwd or self.path, env=env, capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise GitError("git: command not found (install git)") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"git {' '.join(args[:3])}: no answer within {TIMEOUT} s in {cwd or self.path}") from None

    # -- reading ---------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """The commit ``ref`` names (a branch, a tag, a sha); GitError when none."""
        if ref.startswith("-"):
            raise GitError(f"{ref!r}: not a commit or branch")
        proc = self.call("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if proc.returncode != 0:
            raise GitError(f"{ref!r}: no such commit or branch in {self.path}")
        return proc.stdout.strip()

    def has_branch(self, name: str) -> bool:
        return self.call("show-ref", "--verify", "--quiet", f"refs/heads/{name}").returncode == 0

    def branches(self, prefix: str = "") -> list[str]:
        out = self.run("for-each-ref", "--format=%(refname:short)", f"refs/heads/{prefix}")
        return [line for line in out.splitlines() if line]

    def tags_at(self, sha: str) -> list[str]:
        return sorted(line for line in self.run("tag", "--points-at", sha).splitlines() if line)

    def commit(self, ref: str) -> Commit:
        sha = self.resolve(ref)
        out = self.run("show", "-s", "--format=%H%x00%P%x00%s%x00%B", sha)
        full, parents, subject, body = out.split("\x00", 3)
        return Commit(full, subject, body, tuple(parents.split()))

    def log(self, since: str, until: str) -> list[Commit]:
        """The commits reachable from ``until`` and not from ``since``, oldest first."""
        out = self.run("log", "--reverse", "--format=%H%x00%P%x00%s%x00%B%x1e", f"{since}..{until}")
        commits = []
        for record in out.split("\x1e"):
            record = record.strip("\n")
            if record:
                full, parents, subject, body = record.split("\x00", 3)
                commits.append(Commit(full, subject, body, tuple(parents.split())))
        return commits

    def merge_base(self, a: str, b: str) -> str:
        return self.run("merge-base", a, b)

    def checked_out(self, branch: str) -> Path | None:
        """The work tree where ``branch`` is checked out (the main one or another), or None."""
        path = None
        for line in self.run("worktree", "list", "--porcelain").splitlines():
            if line.startswith("worktree "):
                path = Path(line[len("worktree "):])
            elif line == f"branch refs/heads/{branch}":
                return path
        return None

    def dirty(self, tree: Path) -> list[str]:
        """Tracked files changed in the work tree ``tree`` (untracked ones do not get in a pick's way)."""
        out = self.run("status", "--porcelain", "--untracked-files=no", cwd=tree)
        return [line[3:] for line in out.splitlines() if line]

    # -- writing ---------------------------------------------------------------------------
    @contextmanager
    def on_branch(self, branch: str) -> Iterator[Path]:
        """A work tree with ``branch`` checked out: the one it already is in (which must be clean),
        else a temporary ``git worktree``, removed afterwards. The caller's own checkout is left alone."""
        where = self.checked_out(branch)
        if where is not None:
            changed = self.dirty(where)
            if changed:
                raise GitError(f"{where}: {branch} is checked out there with uncommitted changes "
                               f"({', '.join(changed[:5])}); commit or stash them first")
            yield where
            return
        with self.worktree(branch) as tree:
            yield tree

    @contextmanager
    def worktree(self, ref: str, *, detach: bool = False) -> Iterator[Path]:
        """A clean temporary ``git worktree`` of ``ref`` (detached: a commit, for a build), removed
        afterwards whatever happened in it."""
        base = Path(tempfile.mkdtemp(prefix="lrelease-wt-"))
        tree = base / "tree"
        self.run("worktree", "add", "--quiet", *(("--detach",) if detach else ()), str(tree), ref)
        try:
            yield tree
        finally:
            self.call("worktree", "remove", "--force", str(tree))
            shutil.rmtree(base, ignore_errors=True)
            self.call("worktree", "prune")

    def apply(self, tree: Path, verb: str, *args: str, what: str) -> None:
        """``git cherry-pick``/``revert`` ARGS in ``tree``; on a conflict it is aborted (the tree
        and the branch as before) and a Conflict names the files; any other failure a GitError."""
        proc = self.call(verb, *args, cwd=tree)
        if proc.returncode == 0:
            return
        files = tuple(line for line in self.run("diff", "--name-only", "--diff-filter=U", cwd=tree).splitlines()
                      if line)
        self.call(verb, "--abort", cwd=tree)
        if files:
            raise Conflict(f"{what}: conflict in {', '.join(files)}; aborted, nothing changed", files)
        if "now empty" in f"{proc.stdout}\n{proc.stderr}":
            raise GitError(f"{what}: a change is there already (its {verb} would be empty); aborted, nothing changed")
        raise GitError(f"{what}: git {verb} failed ({_last_words(proc)}); aborted, nothing changed")


def _last_words(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (proc.stderr or proc.stdout or "").splitlines() if line.strip()]
    hints = [line for line in lines if not line.startswith("hint:")]
    return (hints or lines or [f"exit {proc.returncode}"])[-1]
