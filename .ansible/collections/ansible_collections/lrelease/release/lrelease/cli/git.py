"""``lrelease branch cut``, ``hotfix pick|revert``, ``build`` and ``builds``: release branches,
hot-fixes and builds with provenance on real git (lrelease/branches.py, lrelease/builds.py)."""

from __future__ import annotations

from pathlib import Path

import click

from lrelease import branches, builds
from lrelease.cli.helptext import read_epilog
from lrelease.cli.release import _emit, _project, actor_option, config_option, json_option, out
from lrelease.cli.tables import print_table, table, when
from lrelease.rollout import Releaser
from lrelease.statebuilds import BuildRecord

push_option = click.option("--push", is_flag=True, help="Push what changed to git.remote (default: nothing is pushed).")
release_option = click.option("--release", "version", default=None, metavar="VERSION",
                              help="The release branch of VERSION [default: the newest release branch].")


@click.group()
def branch() -> None:
    """Release branches (git: in lrelease.yml names them)."""


@branch.command("cut", epilog=read_epilog([
    "lrelease branch cut 1.4.0                 # release/1.4.0 and the tag v1.4.0 at main's head",
    "lrelease branch cut 1.4.1 --from 3f2a9c1 --push",
]))
@click.argument("version")
@click.option("--from", "source", default=None, metavar="REF",
              help="Where to cut it [default: git.integration_branch, main].")
@push_option
@json_option
@config_option
def branch_cut(version: str, source: str | None, push: bool, as_json: bool, config_path: Path) -> None:
    """Create the release branch of VERSION (git.release_branch, release/{version}) at the head of
    the integration branch (or --from REF) and an annotated tag (git.tag, v{version}) at that
    commit. Refused (exit 2) when the branch or the tag exists."""
    done = branches.cut(builds.settings(_project(config_path)), version, source=source, push=push)
    if as_json:
        _emit("branch", done.__dict__)
        return
    out.print(f"{done.branch} and tag {done.tag} at {done.commit[:12]}{' (pushed)' if push else ''}",
              highlight=False)


@click.group()
def hotfix() -> None:
    """Fixes for a release: cherry-picks into its branch, reverts on the integration branch."""


@hotfix.command("pick", epilog=read_epilog([
    "lrelease hotfix pick 3f2a9c1                   # into the newest release branch",
    "lrelease hotfix pick 3f2a9c1 8be01d4 --release 1.4.0 --push",
]))
@click.argument("shas", nargs=-1, required=True)
@release_option
@push_option
@json_option
@config_option
def hotfix_pick(shas: tuple[str, ...], version: str | None, push: bool, as_json: bool, config_path: Path) -> None:
    """Cherry-pick SHAS (git cherry-pick -x, in the order given) into the release branch. All or
    nothing: on a conflict one line names the conflicting files, the pick is aborted and the
    branch and its work tree are as they were (exit 2)."""
    done = branches.pick(builds.settings(_project(config_path)), list(shas), version=version, push=push)
    _print_applied(done, as_json)


@hotfix.command("revert", epilog=read_epilog([
    "lrelease hotfix revert 3f2a9c1                 # revert on main, then pick the revert",
    "lrelease hotfix revert 3f2a9c1 --release 1.4.0 --push",
]))
@click.argument("sha")
@release_option
@push_option
@json_option
@config_option
def hotfix_revert(sha: str, version: str | None, push: bool, as_json: bool, config_path: Path) -> None:
    """Revert SHA on the integration branch (git revert; a merge commit with -m 1) and cherry-pick
    the revert (-x) into the release branch. A conflict aborts that step (exit 2)."""
    done = branches.revert(builds.settings(_project(config_path)), sha, version=version, push=push)
    _print_applied(done, as_json)


def _print_applied(done: branches.Applied, as_json: bool) -> None:
    if as_json:
        _emit("hotfix", {"branch": done.branch, "head": done.head, "revert": done.revert, "pushed": done.pushed,
                         "picked": [{"commit": new, "from": old} for new, old in done.picked]})
        return
    if done.revert:
        out.print(f"reverted on the integration branch: {done.revert[:12]}", highlight=False)
    for new, old in done.picked:
        out.print(f"{done.branch}: {new[:12]} (cherry picked from {old[:12]})", highlight=False)
    out.print(f"{done.branch} is at {done.head[:12]}{' (pushed)' if done.pushed else ''}", highlight=False)


@click.command(epilog=read_epilog([
    "lrelease build                           # the newest release branch's head",
    "lrelease build --ref release/1.4.0 --version 1.4.0-rc1 --json | jq .build.picks",
]))
@click.option("--ref", default=None, help="Branch, tag or commit to build [default: the newest release branch].")
@click.option("--version", "version", default=None,
              help="The build id [default: the release branch's version, +N after N picks or reverts].")
@actor_option
@json_option
@config_option
def build(ref: str | None, version: str | None, actor: str | None, as_json: bool, config_path: Path) -> None:
    """Run git.build_command at REF in a clean temporary git worktree, put the artifact and its
    sha256 into the artifacts store, and record the build with its provenance: repository,
    branch, commit, tags, the commits cherry-picked and reverted since the branch point, who
    built it and when. A failing build command registers nothing (exit 2)."""
    project = _project(config_path)
    releaser = Releaser(project, actor=actor)
    record = builds.make(project, releaser.store, actor=releaser.actor, ref=ref, version=version)
    if as_json:
        _emit("build", {"build": record.to_dict()})
        return
    for line in describe(record):
        out.print(line, highlight=False, soft_wrap=True)


def describe(record: BuildRecord) -> list[str]:
    """A build's provenance, a few lines for a person."""
    lines = [f"build {record.version}: {record.artifact} sha256 {record.sha256}",
             f"  from {record.branch or '(no branch)'} at {record.commit[:12]} in {record.repository}"
             + (f", tags {', '.join(record.tags)}" if record.tags else ""),
             f"  built by {record.built_by} at {when(record.built_at)}"]
    if record.branch_point:
        lines.append(f"  branch point {record.branch_point[:12]}")
    return lines + [f"  {line}" for line in builds.lineage(record.picks, record.reverts)]


@click.command(epilog=read_epilog(["lrelease builds", "lrelease builds --json | jq '.builds[0].commit'"]))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@json_option
@config_option
def builds_list(limit: int, as_json: bool, config_path: Path) -> None:
    """The builds `lrelease build` recorded, newest first: version, branch, commit, picks and
    reverts since the branch point, who built it and when."""
    rows = Releaser(_project(config_path)).store.build_records(limit)
    if as_json:
        _emit("builds", {"builds": [r.to_dict() for r in rows]})
        return
    shown = table("builds", ("build", "branch", "commit", "picks", "reverts", "sha256", "who", "when"))
    cut = 12 if out.is_terminal else None
    for r in rows:
        shown.add_row(r.version, r.branch or "-", r.commit[:12], str(len(r.picks)), str(len(r.reverts)),
                      r.sha256[:cut], r.built_by, when(r.built_at))
    print_table(out, shown)


builds_list.name = "builds"
COMMANDS = (branch, hotfix, build, builds_list)
