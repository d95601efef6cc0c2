"""What ``lrelease.yml`` adds around each release on a host: shared paths and hooks.

``environments.<env>.shared`` (docs/design.md, "Files on a host")::

    shared:
      dirs: [log, uploads]    # kept in <deploy_root>/shared/<path>, linked into each release
      files: [.env]           #   before the switch; missing ones created (files empty, 0640)

``environments.<env>.hooks`` (docs/design.md, "Hooks"): at each point, a list of commands::

    hooks:
      before_switch:
        - command: [bin/migrate, --to, latest]   # argv (no shell), or a path; or shell: "..."
          run_once: true                         # default false: on every host
          run_on: host                           # default; controller: once, on the controller
          timeout_seconds: 300                   # default 300
          env: [DATABASE_URL]                    # default []: controller variables handed on

The key ``run_on`` was ``on`` once: YAML 1.1 (PyYAML) reads a bare ``on:`` as the boolean true, so a
hook that still says ``on:`` (either way) is refused by :func:`renamed_keys` before anything else.

Both become extra vars (``lrelease_shared_dirs``, ``lrelease_shared_files``, ``lrelease_hooks``)
in the same shape, read by the roles. Parsing only: errors are the Checker's one-line ConfigError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

from lrelease import secrets
from lrelease.errors import ConfigError
from lrelease.schema import JINJA_DELIMITERS, Checker, join, show

POINTS = ("before_stage", "after_stage", "before_switch", "after_switch", "before_restart", "after_restart",
          "after_gate", "on_rollback")
DEFAULT_TIMEOUT = 300

# -- shared paths -------------------------------------------------------------------------------
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._+@-]{1,255}\Z")
_MAX_SHARED = 64
SHARED_EXPECTED = ("a path relative to the release (e.g. log, var/uploads, .env): segments of letters, digits "
                   "and . _ + @ - separated by /, no leading /, no . or .. segment")
_RESERVED = {".lrelease-manifest.json"}  # the release's own manifest


def shared_path_ok(path: str) -> bool:
    parts = path.rstrip("/").split("/")
    return (not path.startswith("/") and all(_SEGMENT_RE.fullmatch(p) and p not in (".", "..") for p in parts)
            and parts[0] not in _RESERVED and len(path) <= 1024)


def parse_shared(check: Checker, value: Any, key: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``shared: {dirs, files}`` -> (dirs, files), each a tuple of normalised relative paths (a
    trailing / dropped). Refused: unsafe paths, a path given twice, a path inside another."""
    check.mapping(value, key, optional=("dirs", "files"), example="{dirs: [log, uploads], files: [.env]}")
    out: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for kind in ("dirs", "files"):
        items = value.get(kind, [])
        where = join(key, kind)
        if not isinstance(items, list) or len(items) > _MAX_SHARED:
            check.fail(where, f"a list of at most {_MAX_SHARED} paths such as [log, uploads], got {show(items)}")
        out[kind] = []
        for i, item in enumerate(items):
            path = check.string(item, join(where, i), test=shared_path_ok, describe=SHARED_EXPECTED).rstrip("/")
            for other, other_key in seen.items():
                if path == other or path.startswith(other + "/") or other.startswith(path + "/"):
                    check.fail(join(where, i), f"a path not given elsewhere and not inside another shared path; "
                                               f"{path!r} overlaps {other!r} ({other_key})")
            seen[path] = join(where, i)
            out[kind].append(path)
    return tuple(out["dirs"]), tuple(out["files"])


# -- hooks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hook:
    """One command at one point; exactly one of ``command`` (argv) and ``shell`` is set."""

    point: str
    command: tuple[str, ...] | None
    shell: str | None
    run_once: bool = False
    run_on: str = "host"  # host | controller
    timeout_seconds: float = DEFAULT_TIMEOUT
    env: tuple[str, ...] = ()
    chdir: str | None = None  # controller hooks: the directory they run in (lrelease.yml's)

    def to_var(self) -> dict[str, Any]:
        """This hook as an entry of the extra var ``lrelease_hooks`` (docs/design.md)."""
        out: dict[str, Any] = {"command": list(self.command)} if self.command else {"shell": self.shell}
        out.update(run_once=self.run_once, run_on=self.run_on, timeout_seconds=self.timeout_seconds, env=list(self.env))
        if self.chdir:
            out["chdir"] = self.chdir
        return out


def hooks_var(hooks: tuple[Hook, ...]) -> dict[str, list[dict[str, Any]]]:
    """``lrelease_hooks``: {point: [hook, ...]} in the order written, points without hooks left out."""
    out: dict[str, list[dict[str, Any]]] = {}
    for hook in hooks:
        out.setdefault(hook.point, []).append(hook.to_var())
    return out


_PROGRAM_RE = re.compile(r"[A-Za-z0-9._+@/-]{1,1024}\Z")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_MAX_HOOKS, _MAX_ARGS, _MAX_ARG, _MAX_SHELL = 32, 64, 4096, 16384
_PROGRAM_EXPECTED = ("the program: a path (absolute, or relative to the release directory such as bin/migrate) or a "
                     "name on PATH, of letters, digits and . _ + @ / -")
_HOOK_EXAMPLE = "{command: [bin/migrate, --to, latest], run_once: true} or {shell: \"./warm-cache.sh\"}"


def _arg_ok(text: str) -> bool:
    return text.isprintable() and len(text) <= _MAX_ARG and not any(d in text for d in JINJA_DELIMITERS)


def _shell_ok(text: str) -> bool:
    return (len(text) <= _MAX_SHELL and all(c.isprintable() or c in "\n\t" for c in text)
            and not any(d in text for d in JINJA_DELIMITERS))


def _program_ok(text: str) -> bool:
    return _PROGRAM_RE.fullmatch(text) is not None and ".." not in text.split("/")


RENAMED = "renamed to run_on (host or controller, default host): write run_on: instead of on:"


def renamed_keys(data: Any, where: str) -> list[ConfigError]:
    """A hook of any environment that still says ``on:`` (read by YAML 1.1 as the key true, or
    quoted as "on"): one error each, naming the file, the key and its new name. The loader raises
    them before the schema check (which would call a key true "not a string")."""
    found: list[ConfigError] = []
    envs = data.get("environments") if isinstance(data, dict) else None
    for env_name, env in envs.items() if isinstance(envs, dict) else ():
        points = env.get("hooks") if isinstance(env, dict) else None
        for point, hooks in points.items() if isinstance(points, dict) else ():
            for i, hook in enumerate(hooks) if isinstance(hooks, list) else ():
                if isinstance(hook, dict) and (True in hook or "on" in hook):
                    key = reduce(join, ("environments", str(env_name), "hooks", str(point), i, "on"), "")
                    found.append(ConfigError(where, key, RENAMED))
    return found


def parse_hooks(check: Checker, value: Any, key: str, root: Path) -> tuple[Hook, ...]:
    """``hooks: {point: [hook, ...]}`` -> hooks in point order, then the order written. Controller
    hooks run in ``root`` (the directory of lrelease.yml)."""
    check.mapping(value, key, optional=POINTS, example="{before_switch: [" + _HOOK_EXAMPLE + "]}")
    hooks: list[Hook] = []
    for point in POINTS:
        if point not in value:
            continue
        items = value[point]
        where = join(key, point)
        if not isinstance(items, list) or not items or len(items) > _MAX_HOOKS:
            check.fail(where, f"a list of 1 to {_MAX_HOOKS} hooks such as [{_HOOK_EXAMPLE}], got {show(items)}")
        hooks += [_hook(check, item, join(where, i), point, root) for i, item in enumerate(items)]
    return tuple(hooks)


def _hook(check: Checker, value: Any, key: str, point: str, root: Path) -> Hook:
    check.mapping(value, key, optional=("command", "shell", "run_once", "run_on", "timeout_seconds", "env"),
                  example=_HOOK_EXAMPLE)
    if ("command" in value) == ("shell" in value):
        check.fail(key, f"exactly one of command (an argv list or a path) or shell (a string), e.g. {_HOOK_EXAMPLE}")
    command = shell = None
    if "command" in value:
        command = _argv(check, value["command"], join(key, "command"))
    else:
        shell = check.string(value["shell"], join(key, "shell"), test=_shell_ok,
                             describe=f"a shell command line of at most {_MAX_SHELL} characters, no control "
                                      "characters other than newline and tab, no {{ }}, {% %} or {# #}")
    run_once = check.boolean(value.get("run_once", False), join(key, "run_once"))
    run_on = value.get("run_on", "host")
    if run_on not in ("host", "controller"):
        check.fail(join(key, "run_on"),
                   f"host (each host, default) or controller (once, on the controller), got {show(run_on)}")
    timeout = check.number(value.get("timeout_seconds", DEFAULT_TIMEOUT), join(key, "timeout_seconds"), exclusive=True)
    names = value.get("env", [])
    if not isinstance(names, list) or len(names) > _MAX_ARGS:
        check.fail(join(key, "env"), f"a list of environment variable names such as [DATABASE_URL], got {show(names)}")
    env = tuple(check.string(n, join(join(key, "env"), i), pattern=_ENV_NAME_RE,
                             describe="an environment variable name (letters, digits, _; not starting with a digit)")
                for i, n in enumerate(names))
    for name in env:  # the hook reads it on the controller; its value is scrubbed from everything recorded
        secrets.register_env(name)
    return Hook(point=point, command=command, shell=shell, run_once=run_once, run_on=run_on,
                timeout_seconds=timeout, env=env, chdir=str(root) if run_on == "controller" else None)


def _argv(check: Checker, value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (check.string(value, key, test=_program_ok, describe=_PROGRAM_EXPECTED),)
    if not isinstance(value, list) or not value or len(value) > _MAX_ARGS:
        check.fail(key, f"an argv list (the program, then its arguments; no shell) of at most {_MAX_ARGS} items, "
                        f"or a path, got {show(value)}")
    check.string(value[0], join(key, 0), test=_program_ok, describe=_PROGRAM_EXPECTED)
    for i, arg in enumerate(value[1:], start=1):
        check.string(arg, join(key, i), test=_arg_ok,
                     describe=f"one argument: a string (quote numbers) of at most {_MAX_ARG} printable characters, "
                              "no {{ }}, {% %} or {# #}")
    return tuple(value)
