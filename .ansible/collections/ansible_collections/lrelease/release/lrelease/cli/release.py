"""``lrelease plan|deploy|rollback|resume|status|history|show|inventory``: the release commands."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Self

import click
from rich.console import Console

from lrelease import policies, secrets
from lrelease.cli import outcome as outcome_view
from lrelease.cli import planview, report
from lrelease.cli.helptext import epilog, read_epilog
from lrelease.cli.progress import ProgressView
from lrelease.cli.tables import print_table, table, when
from lrelease.config import BUILD_RE, ProjectConfig, load_config
from lrelease.errors import ConfigError, ExitCode, LreleaseError
from lrelease.fleet import write_inventories
from lrelease.rollout import FleetStatus, Outcome, Releaser, check_to
from lrelease.runner import StopRequest

console = Console(stderr=True)
lines = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)  # plain lines for a log
out = Console()

config_option = click.option("--config", "-c", "config_path", type=click.Path(path_type=Path), envvar="LRELEASE_CONFIG",
                             default="lrelease.yml", show_default=True, help="The project config file.")
env_option = click.option("--env", "-e", "env", required=True, help="Environment (e.g. next, production, dev).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
reason_option = click.option("--reason", default="", help="Why (recorded with the roll-out).")
actor_option = click.option("--actor", default=None, help="Who (default: $LRELEASE_ACTOR or the login name).")
yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (cron, CI).")
force_option = click.option("--force", is_flag=True,
                             help="Start it although you are not the environment's release captain (needs --reason; "
                                  "recorded).")
skip_next_option = click.option("--skip-next", is_flag=True,
                                help="Deploy a build not proven on the environment this one requires first "
                                     "(requires: in lrelease.yml; needs --reason; recorded).")
hotfix_option = click.option("--hotfix", is_flag=True,
                              help="Start it outside the environment's deploy window (window: in lrelease.yml); only "
                                   "its release captain may; needs --reason; recorded.")
verbose_option = click.option("--verbose", "-v", "verbosity", count=True,
                              help="Ansible's verbosity (-v to -vvvv): its output goes to stderr.")


def _project(path: Path) -> ProjectConfig:
    if not path.exists():
        raise LreleaseError(f"{str(path)!r}: no such config file (use --config or $LRELEASE_CONFIG)")
    return load_config(path)


def _overrides(reason: str, force: bool = False, skip_next: bool = False, hotfix: bool = False) -> dict[str, str]:
    """The release policies' overrides asked for (lrelease/policies.py), each with its reason;
    an override without a reason is bad input (exit 2, nothing changed)."""
    asked = [flag for flag, on in (("--force", force), ("--skip-next", skip_next), ("--hotfix", hotfix)) if on]
    if asked and not reason.strip():
        raise ConfigError(asked[0], "--reason", 'a reason, recorded with the roll-out (e.g. --reason "INC-42 hotfix, '
                                                'captain away")')
    return {"force_reason": reason.strip() if force else "", "skip_next_reason": reason.strip() if skip_next else "",
            "hotfix_reason": reason.strip() if hotfix else ""}


def _emit(kind: str, data: dict[str, Any]) -> None:
    out.print_json(secrets.scrub(json.dumps({"schema": f"lrelease.{kind}/v1", **data}, default=str)), indent=2)


class _Interrupt:
    """Ctrl-C and SIGTERM (cron's and systemd's stop signal) alike, in steps: the first stops at
    the next safe point (the hosts in flight finish and are back in the load balancer, no new
    host starts: exit 130, `resume` continues), the second cancels at once (ansible-runner kills
    the playbook), a third gives up waiting for the playbook to die. A rollback has no safe point
    before its end (rollback.yml does not read the stop request): the first signal lets it finish."""

    def __init__(self, action: str = "deploy") -> None:
        self.request = StopRequest()
        self.first = ("the rollback finishes first (no host is left half-way)" if action == "rollback"
                      else "stopping after the hosts in flight")

    def __enter__(self) -> Self:
        # Signal handlers belong to the main thread (a caller may run us in a worker thread).
        main = threading.current_thread() is threading.main_thread()
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        level = self.request.escalate()
        if level == StopRequest.STOP:
            console.print(f"[yellow]{name}: {self.first}; press Ctrl-C again to cancel at once[/]", highlight=False)
        elif level == StopRequest.CANCEL:
            console.print(f"[red]{name}: cancelling at once; a host in flight may stay drained "
                          "(`lrelease status`, then `lrelease resume` or `lrelease rollback`)[/]", highlight=False)
        else:  # the playbook has not died yet: stop waiting for it
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def _run(ctx: click.Context, as_json: bool, verbosity: int, project: ProjectConfig, actor: str | None,
         hosts: tuple[str, ...], action: str, call, overrides: dict[str, str] | None = None) -> None:
    """Progress goes to stderr: a live table on a terminal, else (and always with --json, whose
    stdout is the outcome alone) one plain line per event, never wrapped, its text as it is (a
    ``[...]`` in a message is no markup); with -v, Ansible's own output too."""
    live = sys.stderr.isatty() and not as_json
    view = ProgressView(hosts, live=live, console=console if live else lines)
    with _Interrupt(action) as interrupt:
        releaser = Releaser(project, actor=actor, on_event=view.update, cancel=interrupt.request,
                            verbosity=verbosity, on_output=_ansible_output if verbosity else None, **(overrides or {}))
        with view:
            outcome: Outcome = call(releaser)
    if as_json:
        _emit("outcome", outcome_view.to_json(outcome))
    else:
        outcome_view.print_end(console, action, outcome)
    ctx.exit(int(outcome.exit_code))


def _ansible_output(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)  # above the live table, if any


@click.command(epilog=read_epilog(["lrelease plan --env production",
                                   "lrelease plan --env production --build 1.4.0 --json | jq .waves"]))
@env_option
@click.option("--build", "-b", default=None,
              help="Build id: the title, and its evidence for `requires:` (is it proven on that environment?).")
@actor_option
@json_option
@config_option
def plan(env: str, build: str | None, actor: str | None, as_json: bool, config_path: Path) -> None:
    """Waves with host names, capacity left in service, each wave's gate, a time estimate, the
    hosts with no build recorded (first installs), and the release policies (environment pause,
    release captain, whether BUILD is proven where this environment requires it first, and
    whether a deploy by you would be refused now). Reads no host."""
    if build is not None and not BUILD_RE.fullmatch(build):
        raise ConfigError("--build", "build", f"a build id (letters, digits, '.', '_', '+', '-'), got {build!r}")
    project = _project(config_path)
    releaser = Releaser(project, actor=actor)
    p, est = releaser.plan(env)
    data = planview.plan_data(project.environment(env), releaser.readable_store(), p, est,
                              state_problem=releaser.state_problem, build=build, actor=releaser.actor)
    if as_json:
        _emit("plan", {"env": env, "build": build, **data})
    else:
        out.print(planview.render(env, data, build, project.environment(env)), highlight=False)


@click.command(epilog=epilog([
    "lrelease deploy --env production --build 1.4.0 --dry-run",
    "lrelease deploy --env production --build \"$BUILD\" --yes --json > outcome.json   # cron: progress on stderr",
    "lrelease deploy --env dev --branch feature/login --yes   # build the branch's head, deploy it to dev",
]))
@env_option
@click.option("--build", "-b", default=None, help="Build id; its artifact must exist.")
@click.option("--branch", default=None, metavar="BRANCH",
              help="Instead of --build: build BRANCH's head (git.feature_version names it) and deploy that; "
                   "only to an environment of kind: development (elsewhere exit 4).")
@click.option("--sha256", default=None, help="Expected sha256 (default: the artifact's .sha256 file).")
@reason_option
@actor_option
@force_option
@skip_next_option
@hotfix_option
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@yes_option
@json_option
@verbose_option
@config_option
@click.pass_context
def deploy(ctx: click.Context, env: str, build: str | None, branch: str | None, sha256: str | None, reason: str,
           actor: str | None,
           force: bool, skip_next: bool, hotfix: bool, dry_run: bool, yes: bool, as_json: bool, verbosity: int,
           config_path: Path) -> None:
    """Roll BUILD out to an environment in waves; roll back by itself when a wave fails.

    Refused (exit 4, nothing changed) while the environment is paused, when you are not its
    release captain (--force --reason), outside its deploy window (its captain: --hotfix
    --reason), or when BUILD is not proven on the environment it requires first (--skip-next
    --reason): docs/design.md, "Release policies". Stops at a wave boundary with exit 5 when the
    window closes (paused: `resume` in the next window) or at a pause of its waves (awaiting
    promotion: `promote` or `abort`).

    With --branch, the branch's head is built first (as `lrelease build` does, in a clean
    worktree, recorded with its provenance; a build of that commit made before is reused) and
    deployed: only to an environment of kind: development (no window, no captain, no Next)."""
    if (build is None) == (branch is None):
        raise ConfigError("deploy", "--build", "one of --build BUILD or --branch BRANCH")
    overrides = _overrides(reason, force, skip_next, hotfix)
    project = _project(config_path)
    releaser = Releaser(project, actor=actor)
    if branch is not None:
        from lrelease import builds  # only here: keeps `deploy --build` from loading git

        builds.check_deploy_target(project.environment(env), None, branch=branch)  # before building (exit 4)
        build = builds.make(project, releaser.store, actor=releaser.actor, ref=branch, feature=True).version
    assert build is not None
    releaser.artifact(build, sha256)  # unknown build or checksum mismatch: refused here
    p, est = releaser.plan(env)
    if dry_run:
        data = planview.plan_data(project.environment(env), releaser.readable_store(), p, est,
                                  state_problem=releaser.state_problem, build=build, actor=releaser.actor)
        if as_json:
            _emit("plan", {"env": env, "build": build, "dry_run": True, **data})
        else:
            out.print(planview.render(env, data, build, project.environment(env)), highlight=False)
        return
    _confirm(yes, f"Deploy {build} to {env} ({len(p.hosts)} hosts, {len(p.waves)} waves)?")
    _run(ctx, as_json, verbosity, project, actor, p.hosts, "deploy",
         lambda r: r.deploy(env, build, reason=reason, sha256=sha256), overrides)


@click.command(epilog=epilog([
    "lrelease rollback --env production --dry-run          # each host's build and its target",
    "lrelease rollback --env production --reason \"errors up\" --yes",
    "lrelease rollback --env production --to 1.3.0 -vv     # Ansible's output on stderr",
]))
@env_option
@click.option("--to", "to", default=None, help="Go to this build instead of each host's previous one.")
@reason_option
@actor_option
@force_option
@click.option("--dry-run", is_flag=True, help="Say what would happen and change nothing.")
@yes_option
@json_option
@verbose_option
@config_option
@click.pass_context
def rollback(ctx: click.Context, env: str, to: str | None, reason: str, actor: str | None, force: bool,
             dry_run: bool, yes: bool, as_json: bool, verbosity: int, config_path: Path) -> None:
    """Undo the newest roll-out: each host it moved goes back to the build it ran before (or to
    --to BUILD), in groups that keep rollback.min_in_service of the hosts serving.

    Allowed on a paused environment; where a release captain is set, only the captain (or anyone
    with --force --reason) rolls back: docs/design.md, "Release policies"."""
    check_to(to)  # before anything is read or created
    overrides = _overrides(reason, force)
    project = _project(config_path)
    hosts = project.load_fleet().hosts(project.environment(env).name)
    if dry_run:
        plan = Releaser(project).rollback_plan(env, to=to)
        if as_json:
            _emit("plan", {"action": "rollback", "dry_run": True, **plan})
        else:
            _show_rollback_plan(plan)
        return
    _confirm(yes, f"Roll back {env} ({len(hosts)} hosts)?")
    _run(ctx, as_json, verbosity, project, actor, hosts, "rollback", lambda r: r.rollback(env, to=to, reason=reason),
         overrides)


def _show_rollback_plan(plan: dict[str, Any]) -> None:
    undone = plan["undoes"]
    what = (f"undo roll-out {undone['id']} ({undone['action']} of {undone['build']}, {undone['status']})"
            if undone else f"go to {plan['to']}")
    hosts = table(f"rollback of {plan['env']}: {what}", ("host", "current", "target"))
    for h in plan["hosts"]:
        hosts.add_row(h["host"], h["current"] or "-", h["target"] or f"stays ({h['note'] or 'not moved'})")
    for host in plan["unreachable"]:
        hosts.add_row(host, "[red]unreachable[/]", "")
    print_table(out, hosts)


@click.command(epilog=epilog(["lrelease status --env production   # what is on each host first",
                              "lrelease resume --env production --yes"]))
@env_option
@reason_option
@actor_option
@force_option
@hotfix_option
@yes_option
@json_option
@verbose_option
@config_option
@click.pass_context
def resume(ctx: click.Context, env: str, reason: str, actor: str | None, force: bool, hotfix: bool, yes: bool,
           as_json: bool, verbosity: int, config_path: Path) -> None:
    """Finish an interrupted, halted or paused (its window closed) roll-out; hosts already done
    are not redeployed. One awaiting promotion goes on with `promote` (or back with `abort`).

    Refused (exit 4) while the environment is paused, when you are not its release captain
    (--force --reason), or outside its deploy window (its captain: --hotfix --reason)."""
    overrides = _overrides(reason, force, hotfix=hotfix)
    project = _project(config_path)
    hosts = project.load_fleet().hosts(project.environment(env).name)
    _confirm(yes, f"Resume the interrupted roll-out of {env}?")
    _run(ctx, as_json, verbosity, project, actor, hosts, "resume", lambda r: r.resume(env, reason=reason.strip()),
         overrides)


@click.command(epilog=epilog(["lrelease show $(lrelease history --env production --limit 1 --json | jq -r "
                              "'.rollouts[0].id')   # the gates so far",
                              "lrelease promote --env production --reason \"canary looks good\" --yes"]))
@env_option
@reason_option
@actor_option
@force_option
@hotfix_option
@yes_option
@json_option
@verbose_option
@config_option
@click.pass_context
def promote(ctx: click.Context, env: str, reason: str, actor: str | None, force: bool, hotfix: bool, yes: bool,
            as_json: bool, verbosity: int, config_path: Path) -> None:
    """Go on with the roll-out awaiting promotion (stopped at a `pause` of its waves, or by
    pause_after_canary) up to its next pause or its end; hosts already done are not redeployed.

    Checked like `resume`: refused (exit 4) while the environment is paused, when you are not its
    release captain (--force --reason), or outside its deploy window (its captain: --hotfix
    --reason). Exit 2 when no roll-out awaits promotion."""
    overrides = _overrides(reason, force, hotfix=hotfix)
    project = _project(config_path)
    hosts = project.load_fleet().hosts(project.environment(env).name)
    _confirm(yes, f"Promote the roll-out awaiting promotion on {env}?")
    _run(ctx, as_json, verbosity, project, actor, hosts, "resume",
         lambda r: r.resume(env, reason=reason.strip(), promote=True), overrides)


@click.command(epilog=epilog(["lrelease abort --env production --reason \"p99 latency up on the canary\" --yes"]))
@env_option
@reason_option
@actor_option
@force_option
@yes_option
@json_option
@verbose_option
@config_option
@click.pass_context
def abort(ctx: click.Context, env: str, reason: str, actor: str | None, force: bool, yes: bool, as_json: bool,
          verbosity: int, config_path: Path) -> None:
    """Roll back the roll-out awaiting promotion: every host it switched goes back to the build
    it ran before, in groups that keep rollback.min_in_service serving (as `rollback` does).

    Checked like `rollback`: never refused by a deploy window nor an environment pause; where a
    release captain is set, only the captain (or anyone with --force --reason). Exit 2 when no
    roll-out awaits promotion."""
    overrides = _overrides(reason, force)
    project = _project(config_path)
    hosts = project.load_fleet().hosts(project.environment(env).name)
    Releaser(project).awaiting_promotion(env)  # nothing to abort: exit 2 before asking
    _confirm(yes, f"Abort the roll-out awaiting promotion on {env} (roll back what it switched)?")
    _run(ctx, as_json, verbosity, project, actor, hosts, "rollback", lambda r: r.abort(env, reason=reason.strip()),
         overrides)


@click.command(epilog=read_epilog(
    ["lrelease status --env production", "lrelease status --env production --expected-build 1.4.0 --json"],
    (ExitCode.OK, ExitCode.USAGE, ExitCode.HALTED, ExitCode.INTERNAL, ExitCode.INTERRUPTED),
    HALTED="the fleet is not consistent, or not on --expected-build: a human should look"))
@env_option
@click.option("--expected-build", default=None, metavar="BUILD",
              help="Also require every host to be on this build (exit 5 otherwise).")
@json_option
@config_option
@click.pass_context
def status(ctx: click.Context, env: str, expected_build: str | None, as_json: bool, config_path: Path) -> None:
    """Each host's build and checksum, fleet consistency, and any interrupted roll-out.

    Exit status: 0 when the fleet is consistent (every host answers and is on the same build
    with the same checksum, and on --expected-build when given); 5 when it is not: a human should
    look (`lrelease resume` or `lrelease rollback`); 2 on bad input.

    On a terminal checksums are shortened to 12 characters; elsewhere they are whole."""
    if expected_build is not None and not BUILD_RE.fullmatch(expected_build):
        raise ConfigError("--expected-build", "build", f"a build id (letters, digits, '.', '_', '+', '-'), "
                                                       f"got {expected_build!r}")
    releaser = Releaser(_project(config_path))
    st: FleetStatus = releaser.status(env)
    inconsistent, off = _inconsistencies(st), _off_build(st, expected_build)
    problems = inconsistent + off
    made = _build_records(releaser, {h.build for h in st.hosts if h.build})
    if as_json:
        data = st.to_dict()
        for h in data["hosts"]:  # the commit `lrelease build` recorded for the host's build, if any
            h["commit"] = made[h["build"]].commit if h["build"] in made else None
            h["branch"] = made[h["build"]].branch if h["build"] in made else None
        _emit("status", {**data, "consistent": not inconsistent, "expected_build": expected_build,
                         "on_expected_build": not off if expected_build else None, "problems": problems})
    else:
        title = f"{env}: {'NOT consistent' if inconsistent else 'consistent'}"
        if expected_build:
            title += f", {'NOT on' if off else 'on'} {expected_build}"
        hosts = table(title, ("host", "build", "sha256", "previous", *(("commit",) if made else ())))
        cut = 12 if out.is_terminal else None  # a log keeps the whole checksum
        for h in st.hosts:
            commit = (f"{made[h.build].commit[:12]} ({made[h.build].branch or '-'})",) if h.build in made else ("-",)
            hosts.add_row(h.host, h.build or "-", (h.sha256 or "-")[:cut], h.previous or "-", *(commit if made else ()))
        for host in st.unreachable:
            hosts.add_row(host, "[red]unreachable[/]", "", "", *(("",) if made else ()))
        print_table(out, hosts)
        if st.last:
            out.print(f"last roll-out: {st.last['id']} {st.last['action']} {st.last['build']} {st.last['status']} "
                      f"by {st.last['actor']} at {when(st.last['started_at'])}", soft_wrap=not out.is_terminal)
            if st.last["status"] == "halted":
                outcome_view.print_inconclusive(out, releaser.store.host_events(st.last["id"]))
            what_next = report.what_next(st.last["status"], env)
            if what_next:
                out.print(f"[yellow]{what_next}[/]", soft_wrap=not out.is_terminal)
        for r in st.interrupted:
            out.print(f"[yellow]interrupted roll-out {r['id']} of {r['build']} (started {when(r['started_at'])}): "
                      f"`lrelease resume --env {env}` finishes it[/]", soft_wrap=not out.is_terminal)
    if problems:
        console.print(f"lrelease: status: {'; '.join(problems)} (exit {int(ExitCode.HALTED)})", highlight=False)
        ctx.exit(int(ExitCode.HALTED))


def _build_records(releaser: Releaser, versions: set[str]) -> dict[str, Any]:
    """The build records (`lrelease build`) of ``versions`` that have one."""
    found = {v: releaser.store.build_record(v) for v in sorted(versions)}
    return {v: r for v, r in found.items() if r is not None}


def _off_build(st: FleetStatus, expected: str | None) -> list[str]:
    if not expected:
        return []
    off = [f"{h.host} on {h.build or 'no build'}" for h in st.hosts if h.build != expected]
    return [f"not every host is on {expected}: {', '.join(off)}"] if off else []


def _inconsistencies(st: FleetStatus) -> list[str]:
    """Why the fleet is not consistent, one phrase each; empty when it is (every host answered,
    all on one build with one checksum)."""
    problems = []
    if st.unreachable:
        problems.append(f"unreachable: {', '.join(st.unreachable)}")
    builds: dict[tuple[str | None, str | None], list[str]] = {}
    for h in st.hosts:
        builds.setdefault((h.build, h.sha256), []).append(h.host)
    if len(builds) > 1 or any(build is None for build, _ in builds):
        groups = "; ".join(f"{b or 'no build'}{' (sha256 ' + c[:12] + ')' if c else ''}: {', '.join(hs)}"
                           for (b, c), hs in builds.items())
        problems.append(f"the fleet is not consistent ({groups})")
    if not st.hosts and not st.unreachable:
        problems.append("no host answered")
    return problems


@click.command(epilog=read_epilog(["lrelease history --env production --limit 5",
                                   "lrelease history --json | jq '.rollouts[0]'"]))
@click.option("--env", "-e", "env", default=None, help="Only this environment.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@json_option
@config_option
def history(env: str | None, limit: int, as_json: bool, config_path: Path) -> None:
    """Past roll-outs: who, when, what, why and how each ended. Ids are whole; outside a terminal
    each row is one line, however long."""
    project = _project(config_path)
    store = Releaser(project).store
    rows = store.history(env, limit=limit)
    if as_json:
        _emit("history", {"rollouts": [
            {**r.to_dict(), "hosts": store.host_phases(r.id), "gates": [g.__dict__ for g in store.gates(r.id)]}
            for r in rows]})
        return
    cols = ("id", "action", "build", "status", "exit", "who", "started", "reason")
    rollouts = table(f"history of {env}" if env else "history", cols if env else ("env", *cols))
    for r in rows:
        shown = r.status
        if r.status == "halted" and report.inconclusive(store.host_events(r.id)):
            shown = "halted (gate INCONCLUSIVE)"  # `lrelease show ID` gives each gate's reason
        elif r.via.get("kind") and r.status in ("halted", "rolled_back", "rollback_failed"):
            # a plain/AWX run that failed (a halted one's hosts wait): which host Ansible could not reach
            lost = [h for h, phase in store.host_phases(r.id).items() if phase == "unreachable"]
            if lost:
                shown = f"{r.status} ({', '.join(lost)} unreachable)"
            elif r.status == "halted":
                shown = "halted (a host failed)"
        note = policies.short(r.policy)
        if note:
            shown = f"{shown} ({note})" if r.status != "refused" else f"refused ({note.split(': ', 1)[1]})"
        cells = (r.id, r.action, r.build, shown, str(r.exit_code if r.exit_code is not None else "-"),
                 report.who(r), when(r.started_at), r.reason)
        rollouts.add_row(*(cells if env else (r.env, *cells)))
    print_table(out, rollouts)


@click.command(epilog=read_epilog(["lrelease show 3f2a9c", "lrelease show 3f2a9c --json | jq .gates"]))
@click.argument("rollout_id")
@click.option("--env", "-e", "env", default=None, help="Only look among this environment's roll-outs.")
@json_option
@config_option
def show(rollout_id: str, env: str | None, as_json: bool, config_path: Path) -> None:
    """One roll-out in full: who, what, why, each host's phase, and every gate's evidence.

    ROLLOUT_ID may be shortened to any prefix that names one roll-out (as `history` shows)."""
    releaser = Releaser(_project(config_path))
    store = releaser.store
    found = store.find_rollout(rollout_id, env)
    events, gates = store.host_events(found.id), store.gates(found.id)
    made = _build_records(releaser, {b for b in (found.build, found.previous_build) if b})
    if as_json:
        _emit("rollout", {**report.to_json(found, events, gates),
                          "builds": {v: r.to_dict() for v, r in made.items()}})
        return
    out.print(report.render(report.report(found, events, gates)), highlight=False)
    for version, record in made.items():  # each host's build (this one, or the one before), where it came from
        hosts = sorted(h for h, phase in store.host_phases(found.id).items()
                       if (phase in ("rolled_back", "reverted")) == (version != found.build))
        out.print(f"build {version}: commit {record.commit[:12]} of {record.branch or '-'}"
                  f"{', picks ' + ', '.join(p['from'][:12] for p in record.picks) if record.picks else ''}"
                  f"{', reverts ' + ', '.join(r['reverts'][:12] for r in record.reverts) if record.reverts else ''}"
                  f"; built by {record.built_by} at {when(record.built_at)}"
                  f"{'; hosts ' + ', '.join(hosts) if hosts else ''}", highlight=False, soft_wrap=True)


@click.group()
def inventory() -> None:
    """Ansible inventories generated from the fleet file."""


@inventory.command("generate", epilog=read_epilog(["lrelease inventory generate",
                                                    "lrelease inventory generate --out /etc/ansible/lrelease"]))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Directory to write <env>.yml into [default: inventories/generated next to lrelease.yml].")
@config_option
def inventory_generate(out_dir: Path | None, config_path: Path) -> None:
    """Write one Ansible YAML inventory per environment (canary hosts first)."""
    project = _project(config_path)
    target = out_dir or project.root / "inventories" / "generated"
    for path in write_inventories(project.load_fleet(), target):
        out.print(str(path))


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise LreleaseError("not asking on a non-interactive terminal: add --yes to go ahead")
    if not click.confirm(question, default=False, err=True):
        raise LreleaseError("not confirmed; nothing changed")


COMMANDS = (plan, deploy, rollback, resume, promote, abort, status, history, show, inventory)
