"""``lrelease captain set|show|clear`` and ``lrelease pause|unpause``: the release policies' records
(lrelease/policies.py decides from them; docs/design.md, "Release policies")."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from lrelease.cli.helptext import read_epilog
from lrelease.cli.release import _emit, _project, actor_option, config_option, env_option, json_option, out
from lrelease.cli.tables import print_table, table, when
from lrelease.config import DURATION_EXPECTED, ProjectConfig, parse_duration
from lrelease.errors import ConfigError
from lrelease.rollout import Releaser, default_actor
from lrelease.state import StateStore

def _store(project: ProjectConfig, env: str | None) -> StateStore:
    if env is not None:
        project.environment(env)  # an unknown environment: one line, exit 2, nothing written
    return Releaser(project).store


def _text(value: str, option: str, what: str) -> str:
    text = value.strip()
    if not text or not text.isprintable() or len(text) > 200:
        raise ConfigError(option, what, f"one line of printable text (at most 200 characters), got {value!r}")
    return text


def parse_until(value: str, now: datetime) -> datetime:
    """``--until``: an ISO 8601 time (without a zone: UTC) or a duration from now (``8h``), in the future."""
    seconds = parse_duration(value.strip())
    if seconds is not None:
        moment = now + timedelta(seconds=seconds)
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError("--until", "until", f"an ISO 8601 time (e.g. 2026-12-01T06:00Z; no zone: UTC) or "
                                                  f"{DURATION_EXPECTED}, got {value!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    if moment <= now:
        raise ConfigError("--until", "until", f"a time in the future, got {value!r} (now {when(now.isoformat())})")
    return moment


@click.group()
def captain() -> None:
    """The release captain of an environment: only the captain starts its roll-outs (anyone
    else: --force --reason, recorded)."""


@captain.command("set", epilog=read_epilog([
    "lrelease captain set alice --env production --until 8h --reason \"release 1.6\"",
    "lrelease captain set bob --env production --until 2026-12-01T06:00Z",
]))
@click.argument("name")
@env_option
@click.option("--until", "until", default=None, help="ISO 8601 time (no zone: UTC) or a duration (8h, 90m): "
                                                     "the captaincy ends then by itself [default: until cleared].")
@click.option("--reason", default="", help="Why (recorded).")
@actor_option
@json_option
@config_option
def captain_set(name: str, env: str, until: str | None, reason: str, actor: str | None, as_json: bool,
                config_path: Path) -> None:
    """Make NAME the release captain of ENV (NAME is compared with the roll-out's actor as
    recorded: $LRELEASE_ACTOR, --actor, or the login name). Replaces the captain before."""
    name = _text(name, "NAME", "captain")
    reason = reason.strip()
    project = _project(config_path)
    if project.environment(env).kind == "development":
        raise ConfigError("--env", "environment", f"one of kind release: {env} is of kind development, which has "
                                                  "no release captain (it takes feature branches' builds from anyone)")
    store = _store(project, env)
    end = parse_until(until, store.clock()) if until is not None else None
    done = store.set_captain(env, name, set_by=actor or default_actor(), until=end, reason=reason)
    if as_json:
        _emit("captain", {"env": env, "captain": done.to_dict()})
        return
    out.print(f"{env}'s release captain is {done.name}" + (f" until {when(done.until)}" if done.until else
                                                             " until cleared"), highlight=False, soft_wrap=True)


@captain.command("clear", epilog=read_epilog(["lrelease captain clear --env production"]))
@env_option
@actor_option
@json_option
@config_option
def captain_clear(env: str, actor: str | None, as_json: bool, config_path: Path) -> None:
    """ENV has no release captain any more (with `captain: required`, no roll-out starts there
    until one is set)."""
    store = _store(_project(config_path), env)
    ended = store.clear_captain(env, cleared_by=actor or default_actor())
    if as_json:
        _emit("captain", {"env": env, "captain": None, "cleared": ended.to_dict() if ended else None})
        return
    out.print(f"{env} had no release captain" if ended is None else f"{ended.name} is no longer {env}'s release captain",
              highlight=False, soft_wrap=True)


@captain.command("show", epilog=read_epilog(["lrelease captain show", "lrelease captain show --env production --json"]))
@click.option("--env", "-e", "env", default=None, help="Only this environment.")
@json_option
@config_option
def captain_show(env: str | None, as_json: bool, config_path: Path) -> None:
    """Each environment's release captain (expired captaincies are none) and pause, if any."""
    project = _project(config_path)
    store = _store(project, env)
    names = [env] if env else list(project.environment_names)
    rows = []
    for name in names:
        cap, pause = store.captain(name), store.env_pause(name)
        rows.append({"env": name, "captain": cap.to_dict() if cap else None,
                     "captain_mode": project.environment(name).captain, "env_paused": pause.to_dict() if pause else None})
    if as_json:
        _emit("captains", {"environments": rows})
        return
    t = table("release captains", ("env", "captain", "until", "reason", "set by", "environment paused"))
    for r in rows:
        cap, pause = r["captain"], r["env_paused"]
        who = cap["name"] if cap else ("none (required!)" if r["captain_mode"] == "required" else "none")
        paused = f"by {pause['paused_by']} since {when(pause['paused_at'])}: {pause['reason']}" if pause else "no"
        t.add_row(r["env"], who, when(cap["until"]) if cap and cap["until"] else "-", cap["reason"] if cap else "",
                  f"{cap['set_by']} at {when(cap['set_at'])}" if cap else "", paused)
    print_table(out, t)


@click.command(epilog=read_epilog(["lrelease pause --env production --reason \"incident INC-42: hands off\""]))
@env_option
@click.option("--reason", required=True, help="Why (required; shown to whoever is refused).")
@actor_option
@json_option
@config_option
def pause(env: str, reason: str, actor: str | None, as_json: bool, config_path: Path) -> None:
    """Pause ENV: no new roll-out (deploy, resume) and no automation starts there, whoever asks
    (exit 4, naming who paused it, when and why), until `lrelease unpause`. A rollback still may.
    Not the pause of a roll-out: a running roll-out goes on (stop it with Ctrl-C or SIGTERM)."""
    reason = _text(reason, "--reason", "reason")
    store = _store(_project(config_path), env)
    done = store.pause_env(env, paused_by=actor or default_actor(), reason=reason)
    if as_json:
        _emit("env_pause", {"env": env, "env_paused": done.to_dict()})
        return
    out.print(f"environment {env} is paused by {done.paused_by} since {when(done.paused_at)}: {done.reason}",
              highlight=False, soft_wrap=True)


@click.command(epilog=read_epilog(["lrelease unpause --env production"]))
@env_option
@actor_option
@json_option
@config_option
def unpause(env: str, actor: str | None, as_json: bool, config_path: Path) -> None:
    """Lift ENV's pause: roll-outs and automation may start there again."""
    store = _store(_project(config_path), env)
    lifted = store.unpause_env(env, unpaused_by=actor or default_actor())
    if as_json:
        _emit("env_pause", {"env": env, "env_paused": None, "lifted": lifted.to_dict() if lifted else None})
        return
    out.print(f"environment {env} was not paused" if lifted is None else f"environment {env} is no longer paused "
              f"(paused by {lifted.paused_by} since {when(lifted.paused_at)})", highlight=False, soft_wrap=True)


COMMANDS = (captain, pause, unpause)
