"""Loading and checking the YAML files users write (``lrelease.yml``, the fleet file).

Every failure is a :class:`~lrelease.errors.ConfigError` whose one line names the file, the
dotted key path (``environments.production.waves[2]``) and what was expected, plus what was
found when that helps. Values found under keys that look like secrets are never echoed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml

from lrelease.errors import ConfigError

# Environment names become Ansible group names, so: no '-', no upper case.
ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ENV_NAME_EXPECTED = "lower-case letters, digits and '_' (an Ansible group name; e.g. production, next, dev)"

# Key names that hold a secret's *value*. A key naming where a secret lives is fine:
# ``api_key_env: DEMOAPP_APM_KEY`` (an environment variable), ``..._file``/``..._path`` (a
# file such as ``ansible_ssh_private_key_file``).
_SECRET_RE = re.compile(
    r"(password|passwd|passphrase|secret|token|api_?key|private_?key|webhook|credential"
    r"|(^|_)pass$|(^|_)pwd$|(^|_)auth$)"
)
_SECRET_OK_SUFFIXES = ("_env", "_file", "_path")
# The gate's evidence: the statistics of its Pass test, not passwords.
_NOT_SECRETS = frozenset({"p_pass", "dispersion_pass", "canary_share_above_pass"})


def looks_secret(key: str) -> bool:
    """True for key names like ``api_key``, ``token``, ``ansible_become_pass``, ``webhook_url``."""
    low = key.lower()
    return low not in _NOT_SECRETS and not low.endswith(_SECRET_OK_SUFFIXES) and bool(_SECRET_RE.search(low))


def join(parent: str, child: str | int) -> str:
    """``join("a", "b") == "a.b"``, ``join("a", 2) == "a[2]"``, ``join("", "b") == "b"``."""
    if isinstance(child, int):
        return f"{parent}[{child}]"
    return f"{parent}.{child}" if parent else child


def show(value: Any) -> str:
    """A found value, short and on one line, for the end of a message."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    text = repr(value) if isinstance(value, str) else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key; let PyYAML report it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_mapping(path: Path, what: str) -> dict:
    """Read ``path`` (a YAML mapping); ``what`` names the kind of file in errors."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(where, "(file)", f"an existing {what}; no such file") from None
    except IsADirectoryError:
        raise ConfigError(where, "(file)", f"a {what}, got a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(where, "(file)", f"a readable UTF-8 {what} ({exc.__class__.__name__})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = " ".join(str(exc.problem or exc.context or "invalid").split())
        raise ConfigError(where, line, f"valid YAML ({problem})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(where, "(file)", f"valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(where, "(top level)", f"a mapping of keys to values, got {show(data)}")
    return data


class Checker:
    """Field checks for one file; each raises a ConfigError naming the file and the key."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, expected: str) -> NoReturn:
        raise ConfigError(self.where, key, expected)

    def no_secrets(self, value: Any, key: str, hint: str) -> None:
        """Refuse any mapping key, at any depth, that looks like it holds a secret value.
        ``hint`` may use ``{key}`` and ``{KEY}`` (the key found, upper-cased)."""
        if isinstance(value, dict):
            for k, v in value.items():
                sub = join(key, str(k))
                if isinstance(k, str) and looks_secret(k):
                    self.fail(sub, "no secrets in this file; " + hint.format(key=k, KEY=k.upper()))
                self.no_secrets(v, sub, hint)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.no_secrets(item, join(key, i), hint)

    def mapping(self, value: Any, key: str, *, required: Iterable[str] = (),
                optional: Iterable[str] = (), example: str = "") -> dict:
        """A mapping with string keys; with ``required``/``optional`` given, only those keys."""
        label = key or "(top level)"
        if not isinstance(value, dict):
            self.fail(label, f"a mapping{' such as ' + example if example else ''}, got {show(value)}")
        for k in value:
            if not isinstance(k, str):
                self.fail(label, f"string keys (quote them), got {show(k)}")
        required, optional = tuple(required), tuple(optional)
        allowed = required + optional
        if allowed:
            for k in value:
                if k not in allowed:
                    self.fail(join(key, k), f"unknown key; expected one of {', '.join(sorted(allowed))}")
            for k in required:
                if k not in value:
                    self.fail(join(key, k), f"a value (required){'; e.g. ' + example if example else ''}")
        return value

    def integer(self, value: Any, key: str, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and minimum is not None and value < minimum:
            ok = False
        if ok and maximum is not None and value > maximum:
            ok = False
        if not ok:
            bounds = _bounds(minimum, maximum)
            self.fail(key, f"an integer{bounds}, got {show(value)}")
        return value

    def number(self, value: Any, key: str, *, minimum: float = 0.0, exclusive: bool = False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and (value <= minimum if exclusive else value < minimum):
            ok = False
        if not ok:
            self.fail(key, f"a number {'>' if exclusive else '>='} {minimum:g} (seconds), got {show(value)}")
        return float(value) if isinstance(value, float) else value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"true or false, got {show(value)}")
        return value

    def string(self, value: Any, key: str, *, pattern: re.Pattern | None = None,
               describe: str = "a string", test: Callable[[str], bool] | None = None) -> str:
        ok = isinstance(value, str) and value != ""
        if ok and pattern is not None and not pattern.match(value):
            ok = False
        if ok and test is not None and not test(value):
            ok = False
        if not ok:
            self.fail(key, f"{describe}, got {show(value)}")
        return value


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
