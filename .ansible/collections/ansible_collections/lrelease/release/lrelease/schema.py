"""Loading and checking the YAML files users write (``lrelease.yml``, the fleet file).

Every failure is a :class:`~lrelease.errors.ConfigError` whose one line names the file, the
dotted key path (``environments.production.waves[2]``) and what was expected, plus what was
found when that helps. Values found under keys that look like secrets are never echoed.

What every file must be, before any key is looked at: a regular UTF-8 file of at most 16 MiB,
YAML without aliases (``*name``: an alias bomb expands exponentially), nested at most 32
levels deep, every integer within 64 bits, every float finite (no ``.nan``, ``.inf``), every
date a real date. Patterns are matched against the whole string (``re.fullmatch``), so a
trailing newline never gets through.
"""

from __future__ import annotations

import gc
import math
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import yaml

from lrelease.errors import ConfigError

# Environment names become Ansible group names, so: no '-', no upper case.
ENV_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
ENV_NAME_EXPECTED = "lower-case letters, digits and '_' (an Ansible group name; e.g. production, next, dev)"
# A path on the hosts (deploy_root, service.command, the HAProxy socket): absolute, letters,
# digits and ". _ + @ -" between the slashes. No whitespace, no shell metacharacters
# (; & | $ ` ( ) < > * ? ! quotes \\), no Jinja delimiters ({{ }} {% %}), no newline.
SAFE_PATH_RE = re.compile(r"(/[A-Za-z0-9._+@-]+)+/?\Z")
SAFE_PATH_EXPECTED = "an absolute path of letters, digits, '.', '_', '+', '@', '-' and '/'"
JINJA_DELIMITERS = ("{{", "}}", "{%", "%}", "{#", "#}")
MAX_SECONDS = 86400.0  # every duration in these files: at most a day
MAX_FILE_BYTES = 16 << 20  # a 10,000-node fleet with vars of its own fits; /dev/zero does not
MAX_DEPTH = 32
_INT_LIMIT = 2**63

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
    """``join("a", "b") == "a.b"``, ``join("a", 2) == "a[2]"``, ``join("", "b") == "b"``. A key
    that is not a plain printable word is shown quoted (``'canary\\n'``): messages stay one line."""
    if isinstance(child, int):
        return f"{parent}[{child}]"
    if not (child.isprintable() and child.strip() == child and child):
        child = repr(child)
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
    if isinstance(value, int) and abs(value) >= _INT_LIMIT:
        return "a number too large"
    text = repr(value) if isinstance(value, str) else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def safe_path(text: str) -> bool:
    """An absolute path on a host that no shell, Jinja or ``argv`` split can misread."""
    return SAFE_PATH_RE.fullmatch(text) is not None


def plain_text(text: str) -> bool:
    """No control characters (newline, tab, NUL...) and no Jinja delimiters."""
    return text.isprintable() and not any(d in text for d in JINJA_DELIMITERS)


def url_problem(url: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """What is wrong with ``url`` (None when nothing is): it must parse, use one of
    ``schemes``, name a host, have a port from 1 to 65535 if any, and hold no whitespace,
    control characters or Jinja delimiters."""
    if not plain_text(url) or any(c.isspace() for c in url):
        return "no whitespace, control characters, {{ }} or {% %}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "http://[::1", "http://h:99999", "http://h:x"
        return f"a URL that parses ({exc})"
    if parts.scheme not in schemes or not parts.hostname:
        return f"a {' or '.join(s + '://' for s in schemes)} URL with a host"
    if port == 0:
        return "a port from 1 to 65535"
    return None


# -- reading YAML -------------------------------------------------------------------------
class _RememberedTags:
    """Resolver.resolve remembered per scalar: a fleet says ``environment: production`` 10,000
    times, and resolving a plain scalar's tag (a regex per candidate type, in Python even with
    libyaml) was the biggest cost of reading and writing one. Same tags, each worked out once."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is not yaml.ScalarNode:
            return super().resolve(kind, value, implicit)  # type: ignore[misc]
        tags = self.__dict__.setdefault("_remembered_tags", {})
        key = (value, implicit)
        tag = tags.get(key)
        if tag is None:
            tag = tags[key] = super().resolve(kind, value, implicit)  # type: ignore[misc]
        return tag


_Dumper = type("Dumper", (_RememberedTags, getattr(yaml, "CSafeDumper", yaml.SafeDumper)), {})


def dump_yaml(data: Any, *, width: int = 1000) -> str:
    """``data`` as block YAML, keys in their order, with libyaml's emitter when PyYAML has it (a
    10,000-host inventory in a quarter of the pure-Python emitter's time; it writes characters
    beyond U+FFFF as escapes, which read back the same). Lines are folded past ``width``."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=width)


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping, each key constructed once; a key written twice is refused."""
    loader.flatten_mapping(node)
    mapping: dict = {}
    for key_node, value_node in node.value:
        key = _construct(loader, key_node, True)
        try:
            duplicate = key in mapping
        except TypeError:  # an unhashable key: PyYAML's own message
            return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        mapping[key] = _construct(loader, value_node, deep)
    return mapping


def _construct(loader: Any, node: yaml.Node, deep: bool) -> Any:
    """A plain string is its node's text (what SafeConstructor.construct_yaml_str returns, without
    its bookkeeping, which only aliases need, and they are refused); anything else as PyYAML builds it."""
    if node.tag == _STR_TAG and type(node) is yaml.ScalarNode:
        return node.value
    return loader.construct_object(node, deep=deep)


def _strict(base: type) -> type:
    """``base`` (a SafeLoader) refusing a key written twice in one mapping (PyYAML keeps the last).
    Aliases, depth and numbers are checked on the composed nodes (:func:`_check_nodes`) before
    anything is constructed."""
    loader = type(f"Strict{base.__name__}", (_RememberedTags, base), {"__doc__": _strict.__doc__})
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    return loader


# Every YAML file lrelease reads goes through load_yaml_mapping, with libyaml's parser when PyYAML
# has it (a 10,000-node fleet parses several times faster), else the pure-Python one; both strict.
STRICT_LOADERS = {"python": _strict(yaml.SafeLoader)}
if hasattr(yaml, "CSafeLoader"):
    STRICT_LOADERS["libyaml"] = _strict(yaml.CSafeLoader)
_StrictLoader = STRICT_LOADERS.get("libyaml", STRICT_LOADERS["python"])

_INT_TAG, _FLOAT_TAG, _STR_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:str"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_CHECKED_TAGS = frozenset({_INT_TAG, _FLOAT_TAG, _TIMESTAMP_TAG})


def _check_nodes(loader: Any, root: yaml.Node, where: str) -> None:
    """Walk the composed document once (iteratively, each node once): no aliases, at most
    MAX_DEPTH levels, integers within 64 bits, finite floats, valid dates. A node's key path is
    kept as links to its parent's and spelt out only for a message: a big file costs no strings."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, _Path, int]] = [(root, None, 1)]
    while stack:
        node, path, depth = stack.pop()
        if id(node) in seen:  # only an alias (or a merge of one) reaches a node twice
            raise ConfigError(where, _label(path), "no YAML aliases (*name) or merges of them; write the value out")
        seen.add(id(node))
        if depth > MAX_DEPTH:
            raise ConfigError(where, _label(path), f"at most {MAX_DEPTH} levels of nesting")
        if isinstance(node, yaml.MappingNode):
            children = []
            for k, v in node.value:
                child = (path, k.value if isinstance(k, yaml.ScalarNode) else "(key)")
                children += [(k, child, depth + 1), (v, child, depth + 1)]
            stack.extend(reversed(children))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed([(v, (path, i), depth + 1) for i, v in enumerate(node.value)]))
        elif node.tag in _CHECKED_TAGS:
            _check_scalar(loader, node, _label(path), where)


_Path = tuple | None  # (parent's path, key or index), None at the top


def _label(path: _Path) -> str:
    """The dotted key of a path (``environments.production.waves[2]``), "(top level)" for none."""
    names: list[str | int] = []
    while path is not None:
        path, name = path
        names.append(name)
    key = ""
    for name in reversed(names):
        key = join(key, name)
    return key or "(top level)"


def _check_scalar(loader: Any, node: yaml.ScalarNode, key: str, where: str) -> None:
    found = "" if looks_secret(key.rsplit(".", 1)[-1]) else f", got {show(node.value)}"
    if node.tag == _INT_TAG:
        value = None
        if len(node.value) <= 40:
            try:
                value = loader.construct_yaml_int(node)
            except ValueError:
                raise ConfigError(where, key, f"an integer{found}") from None
        if value is None or abs(value) >= _INT_LIMIT:
            raise ConfigError(where, key, f"a number below 2**63 (9223372036854775807){found}")
    elif node.tag == _FLOAT_TAG:
        try:
            number = loader.construct_yaml_float(node)
        except ValueError:
            raise ConfigError(where, key, f"a number{found}") from None
        if not math.isfinite(number):
            raise ConfigError(where, key, f"a finite number (no .nan, .inf or 1e400){found}")
    elif node.tag == _TIMESTAMP_TAG:
        try:
            loader.construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            raise ConfigError(where, key, f"a real date (YYYY-MM-DD) or a quoted string{found}") from None


def _read(path: Path, what: str) -> str:
    """The text of ``path``: a regular UTF-8 file of at most MAX_FILE_BYTES (not a directory,
    a FIFO or /dev/zero)."""
    where = str(path)
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(where, "(file)", f"a {what}, got a directory")
        if not stat.S_ISREG(mode):
            raise ConfigError(where, "(file)", f"a {what} that is a regular file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(where, "(file)", f"an existing {what}; no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ConfigError(where, "(file)", f"a readable {what} ({exc.__class__.__name__})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(where, "(file)", f"a {what} of at most {MAX_FILE_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(where, "(file)", f"a readable UTF-8 {what} (UnicodeDecodeError)") from None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector off while a big file becomes objects. Reading a 10,000-node fleet
    makes some 300,000 objects that all live on; each collection the allocations set off walked
    all of them again, a third of the time. Cycles made meanwhile are collected afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_yaml_mapping(path: Path, what: str) -> dict:
    """Read ``path`` (a YAML mapping); ``what`` names the kind of file in errors."""
    where = str(path)
    text = _read(Path(path), what)
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = None
        if node is not None:
            _check_nodes(loader, node, where)
            data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = " ".join(str(exc.problem or exc.context or "invalid").split())
        raise ConfigError(where, line, f"valid YAML ({problem})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(where, "(file)", f"valid YAML ({' '.join(str(exc).split())})") from None
    except RecursionError:  # the pure-Python parser, nested hundreds of levels deep
        raise ConfigError(where, "(file)", f"at most {MAX_DEPTH} levels of nesting") from None
    except (ValueError, OverflowError, TypeError) as exc:  # a constructor PyYAML does not guard
        raise ConfigError(where, "(file)", f"valid YAML ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    finally:
        loader.dispose()
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

    def number(self, value: Any, key: str, *, minimum: float = 0.0, exclusive: bool = False,
               maximum: float = MAX_SECONDS) -> float:
        """A finite number of seconds from ``minimum`` (excluded with ``exclusive``) to ``maximum``."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not (math.isfinite(value) and abs(value) < _INT_LIMIT):
            ok = False
        if ok and (value <= minimum if exclusive else value < minimum):
            ok = False
        if ok and value > maximum:
            ok = False
        if not ok:
            self.fail(key, f"a number {'>' if exclusive else '>='} {minimum:g} and <= {maximum:g} (seconds), "
                           f"got {show(value)}")
        return float(value) if isinstance(value, float) else value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"true or false, got {show(value)}")
        return value

    def string(self, value: Any, key: str, *, pattern: re.Pattern | None = None,
               describe: str = "a string", test: Callable[[str], bool] | None = None) -> str:
        ok = isinstance(value, str) and value != ""
        if ok and pattern is not None and not pattern.fullmatch(value):
            ok = False
        if ok and test is not None and not test(value):
            ok = False
        if not ok:
            self.fail(key, f"{describe}, got {show(value)}")
        return value

    def url(self, value: Any, key: str, *, describe: str = "an http:// or https:// URL") -> str:
        """A URL that parses, with an http(s) scheme, a host and a valid port (see url_problem)."""
        text = self.string(value, key, describe=describe)
        problem = url_problem(text)
        if problem:
            self.fail(key, f"{describe}: {problem}, got {show(text)}")
        return text


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
