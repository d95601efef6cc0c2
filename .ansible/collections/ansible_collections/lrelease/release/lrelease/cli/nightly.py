"""``lrelease nightly``: the automation a cron job or a systemd timer runs (lrelease/nightly.py
decides; docs/nightly.md). Structured logs on stderr (one JSON object per line), a JSON summary
on stdout, and the worst exit code of the environments'."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from lrelease import nightly as automation
from lrelease import policies, secrets, statedb
from lrelease.cli.helptext import epilog
from lrelease.cli.release import _emit, _Interrupt, _project, config_option
from lrelease.config import EnvironmentConfig, ProjectConfig
from lrelease.errors import ExitCode, LreleaseError
from lrelease.rollout import Outcome, Releaser
from lrelease.runner import ProgressEvent

# The README lists the exit codes in this order; the summary's code is the one of the
# environments' that comes last in it (130 > 70 > 5 > 4 > 3 > 2 > 1 > 0). A skip is 0.
SEVERITY = tuple(ExitCode)


def worst(codes: list[int]) -> ExitCode:
    return max((ExitCode(c) for c in codes), key=SEVERITY.index, default=ExitCode.OK)


class JsonLines(logging.Formatter):
    """One JSON object per record: time (the state store's clock, UTC), level, env, event, detail
    (and the record's extra fields); secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"time": statedb.iso(statedb.utc_now()), "level": record.levelname.lower(),
                                "env": getattr(record, "env", None), "event": getattr(record, "event", record.msg),
                                "detail": record.getMessage() if hasattr(record, "event") else ""}
        data.update(getattr(record, "fields", {}))
        return secrets.scrub(json.dumps(data, default=str))


class _Log:
    """The nightly run's logger: ``lrelease.nightly``, its own handler on stderr, not propagated."""

    def __init__(self, debug: bool) -> None:
        self.logger = logging.getLogger("lrelease.nightly")
        self.handler = logging.StreamHandler(sys.stderr)
        self.handler.setFormatter(JsonLines())
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.DEBUG if debug else logging.INFO)
        self.logger.propagate = False

    def __call__(self, level: int, env: str | None, event: str, detail: str = "", **fields: Any) -> None:
        self.logger.log(level, "%s", detail, extra={"env": env, "event": event, "fields": fields})

    def close(self) -> None:
        self.logger.removeHandler(self.handler)


@click.command(epilog=epilog([
    "lrelease nightly --dry-run                        # what it would do now, changing nothing",
    "lrelease nightly --env next --env production      # only these (required ones first)",
    "LRELEASE_USER=alice lrelease nightly 2>>/var/log/lrelease-nightly.jsonl   # as the release captain",
    "*/30 22-23,0-5 * * *  cd /srv/release && LRELEASE_USER=nightly .venv/bin/lrelease nightly   # crontab; "
    "systemd: docs/nightly.md",
], OK="success: every environment done, up to date or skipped (paused, window closed, automation off)"))
@click.option("--env", "-e", "envs", multiple=True, help="Only this environment (repeatable) [default: all].")
@click.option("--dry-run", is_flag=True, help="Decide and report (would-be refusals included); change nothing.")
@config_option
@click.pass_context
def nightly(ctx: click.Context, envs: tuple[str, ...], dry_run: bool, config_path: Path) -> None:
    """For cron and systemd timers: on each environment with `nightly: true` in lrelease.yml, not
    paused, its deploy window open, in dependency order (an environment another requires goes
    first): resume a roll-out its window paused; else deploy the newest build not yet tried there
    (an environment another requires, e.g. next) or the newest build proven on the environment it
    requires and not yet tried there (e.g. production). Newest: version order of the build names
    (PEP 440) when they all parse, else the artifacts' modification time. docs/nightly.md.

    Runs as $LRELEASE_USER, else `nightly`: where a release captain is set, set it to the
    captain's name (or make `nightly` the captain), or its roll-outs are refused (exit 4).
    Structured logs on stderr (one JSON object per line), a JSON summary on stdout; the exit code
    is the environments' worst, in the README's order (130, 70, 5, 4, 3, 2, 1, 0); a skip is 0."""
    project = _project(config_path)
    environments = automation.order(project, envs)
    log = _Log(bool(ctx.find_root().params.get("debug")))
    actor = automation.actor()
    results: list[dict[str, Any]] = []
    try:
        log(logging.INFO, None, "start", f"nightly as {actor}" + (" (dry run)" if dry_run else ""),
            environments=[e.name for e in environments], dry_run=dry_run, actor=actor)
        with _Interrupt() as interrupt:
            for env in environments:
                if interrupt.request.level:
                    results.append(_skipped(env.name, "interrupted", "not started: nightly was interrupted"))
                    log(logging.WARNING, env.name, "skip", results[-1]["detail"], reason="interrupted")
                    continue
                releaser = Releaser(project, actor=actor, cancel=interrupt.request,
                                    on_event=lambda e, name=env.name: _progress(log, name, e))
                try:
                    results.append(_one(project, env, releaser, dry_run, log))
                finally:
                    releaser.store.close()
        code = worst([r["exit_code"] for r in results])
        log(logging.INFO if code == ExitCode.OK else logging.WARNING, None, "end", f"exit {int(code)}",
            exit_code=int(code))
    finally:
        log.close()
    _emit("nightly", {"actor": actor, "dry_run": dry_run, "at": statedb.iso(statedb.utc_now()),
                      "exit_code": int(code), "environments": results})
    ctx.exit(int(code))


def _skipped(env: str, reason: str, detail: str) -> dict[str, Any]:
    return {"env": env, "action": "skip", "reason": reason, "detail": detail, "build": None, "rollout_id": None,
            "status": None, "exit_code": 0}


def _one(project: ProjectConfig, env: EnvironmentConfig, releaser: Releaser, dry_run: bool,
         log: _Log) -> dict[str, Any]:
    """Decide for ``env`` now (after the environments before it ran) and, unless a dry run, act."""
    store, actor = releaser.store, releaser.actor
    now = store.clock()
    try:
        step = automation.decide(project, store, env, now, automation.builds(project))
    except LreleaseError as err:
        log(logging.ERROR, env.name, "error", str(err), exit_code=int(err.exit_code))
        return {**_skipped(env.name, "error", str(err)), "action": "error", "exit_code": int(err.exit_code)}
    row: dict[str, Any] = {**step.to_dict(), "rollout_id": None, "status": None, "exit_code": 0}
    if step.action in ("skip", "none"):
        log(logging.INFO, env.name, step.action, step.detail, reason=step.reason)
        return row
    if dry_run:
        action = "deploy" if step.action == "deploy" else "resume"
        decision = policies.decide(store, env.name, actor=actor, action=action, build=step.build,
                                   environment=env, now=now)
        if decision.refused is not None:
            row.update(exit_code=int(ExitCode.REFUSED), refused={"policy": decision.policy,
                                                                 "message": decision.refused})
        log(logging.INFO, env.name, f"would_{step.action}", step.detail, build=step.build,
            refused=decision.refused)
        return row
    log(logging.INFO, env.name, step.action, step.detail, build=step.build, resumes=step.resumes)
    reason = f"nightly: {step.detail}"
    try:
        outcome: Outcome = (releaser.resume(env.name, reason=f"nightly resume of {step.resumes}")
                            if step.action == "resume" else releaser.deploy(env.name, str(step.build), reason=reason))
    except LreleaseError as err:
        refused = isinstance(err, policies.PolicyRefused)
        log(logging.ERROR, env.name, "refused" if refused else "error", str(err), exit_code=int(err.exit_code),
            policy=getattr(err, "policy", None))
        row.update(exit_code=int(err.exit_code), message=str(err),
                   rollout_id=_refused_row(store, env.name) if refused else None,
                   status="refused" if refused else "error")
        return row
    row.update(rollout_id=outcome.rollout_id, status=outcome.status, exit_code=int(outcome.exit_code),
               message=outcome.message)
    log(logging.INFO if outcome.exit_code == ExitCode.OK else logging.WARNING, env.name, "end", outcome.message,
        rollout_id=outcome.rollout_id, status=outcome.status, exit_code=int(outcome.exit_code))
    return row


def _refused_row(store, env: str) -> str | None:
    """The id of the refusal just recorded (a refused roll-out is a history row)."""
    last = store.last_rollout(env, status="refused")
    return last.id if last else None


def _progress(log: _Log, env: str, event: ProgressEvent) -> None:
    log(logging.INFO, env, "progress", str(event.kind.value),
        host=event.host, wave=event.wave)


COMMANDS = (nightly,)
