"""The structure of ``lrelease.yml`` and the fleet file, checked against their JSON Schemas first.

The schemas (``lrelease/schemas/*.schema.json``, draft 2020-12) are the one description of every
key: editors validate and complete with them, ``docs/reference.md`` is generated from them, and
:func:`check` reports *every* structural mistake of a loaded file at once, one
:class:`~lrelease.errors.ConfigError` per key, in the order the keys appear in the file. Each
line names the file, the dotted key (``environments.production.waves[2]``) and what was expected:
the schema's ``errorMessage`` for that key (never jsonschema's own wording), then what was found.

Only when the structure is right do the semantic checks of ``config.py``/``fleet.py`` run (rules
a schema cannot say: an address that parses, a deploy root that is not ``/srv``...); they stop
at their first error, as before.

Two readings keep the reports short and to the point: a key whose *name* is wrong is reported
once (what is under it is not looked at), and a mapping with an unknown key is not also told
that it misses a key (the unknown one is most likely the misspelt one). Patterns follow
ECMA-262, as editors read them: ``$`` is the end of the text (Python's ``$`` also matches before a
final newline, which would let ``"demoapp\\n"`` through).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

from lrelease.errors import ConfigError, raise_all
from lrelease.schema import join, show
from lrelease.schema_fast import compile_schema, ecma_pattern

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMAS = {"lrelease": "lrelease.schema.json", "fleet": "fleet.schema.json"}
_MISSING_KEY_RULES = {"required", "oneOf", "anyOf", "minProperties"}


@cache
def load_schema(name: str) -> dict:
    """The JSON Schema ``name`` (``lrelease`` or ``fleet``) as a dict."""
    return json.loads((SCHEMA_DIR / SCHEMAS[name]).read_text(encoding="utf-8"))


@cache
def _ecma_regex(pattern: str) -> re.Pattern:
    return re.compile(ecma_pattern(pattern))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Mapping) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@cache
def _validator(name: str) -> Any:
    return _Validator(load_schema(name))


@cache
def _fast(name: str) -> Callable[[Any], bool] | None:
    """The schema compiled to a yes-or-unsure check (lrelease.schema_fast), None if it does not compile."""
    return compile_schema(load_schema(name))


def check(data: Any, name: str, where: str) -> None:
    """Raise every structural mistake of ``data`` (read from ``where``) against schema ``name``:
    one ConfigError, or ConfigErrors for several (errors.raise_all). Nothing when it conforms."""
    raise_all(problems(data, name, where))


def problems(data: Any, name: str, where: str) -> list[ConfigError]:
    """The structural mistakes of ``data``, one per key, in the order the keys appear. Keys
    that are not strings (YAML's ``no:``, ``1:``) are reported alone: JSON has none to check."""
    found: dict[str, tuple[tuple, str]] = {}  # key -> (position, expected)
    for path, key in ([] if _string_keys_only(data) else _non_string_keys(data, ())):
        _add(found, data, path, f"string keys (quote them), got {show(key)}")
    if found:
        return _in_file_order(found, where)
    fast = _fast(name)
    if fast is not None and fast(data):  # certainly right: no need for jsonschema's explanations
        return []
    bad_names: list[tuple] = []
    unknown_in: set[tuple] = set()
    errors = list(_validator(name).iter_errors(data))
    for err in errors:  # names first: what is under a bad name is not looked at
        if "propertyNames" in err.relative_schema_path:
            path = (*err.absolute_path, err.instance)
            bad_names.append(path)
            _add(found, data, path, _expected(err))
        elif err.validator == "additionalProperties" and err.validator_value is False:
            known = err.schema.get("properties", {})
            allowed = [k for k, sub in known.items() if not refused_key(sub)]  # not a refused key (a hook's on)
            for extra in err.instance:
                if extra not in known:
                    unknown_in.add(tuple(err.absolute_path))
                    _add(found, data, (*err.absolute_path, extra),
                         f"unknown key; expected one of {', '.join(sorted(allowed))}")
    for err in errors:
        path = tuple(err.absolute_path)
        if any(path[:len(bad)] == bad for bad in bad_names) or "propertyNames" in err.relative_schema_path:
            continue
        if err.validator == "additionalProperties" and err.validator_value is False:
            continue
        if err.validator in _MISSING_KEY_RULES and path in unknown_in:
            continue
        if err.validator == "required":
            for key in err.validator_value:
                if key not in err.instance:
                    _add(found, data, (*path, key), _required(err.schema, key))
        elif err.validator == "not" or (err.validator in ("oneOf", "anyOf") and isinstance(err.instance, (dict, list))):
            _add(found, data, path, _expected(err))  # about the mapping as a whole: nothing to quote
        else:
            _add(found, data, path, f"{_expected(err)}{_got(err.instance)}")
    return _in_file_order(found, where)


def refused_key(sub: Any) -> bool:
    """A key the schema names only to refuse it with its own words (``not: {}``, no type): a hook's
    ``on`` (renamed), ``ansible_host`` under a node's vars."""
    return isinstance(sub, Mapping) and sub.get("not") == {} and "type" not in sub


def _in_file_order(found: dict[str, tuple[tuple, str]], where: str) -> list[ConfigError]:
    ordered = sorted(found.items(), key=lambda item: item[1][0])
    return [ConfigError(where, key or "(top level)", expected) for key, (_, expected) in ordered]


def _string_keys_only(data: Any) -> bool:
    """True when every mapping key in ``data`` is a string (one pass, no paths: a big file's
    common case; :func:`_non_string_keys` says where when not)."""
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if type(key) is not str:
                    return False
                if isinstance(value, (Mapping, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(item for item in node if isinstance(item, (Mapping, list)))
    return True


def _non_string_keys(node: Any, path: tuple) -> Iterator[tuple[tuple, Any]]:
    if isinstance(node, Mapping):
        bad = next((k for k in node if not isinstance(k, str)), None)
        if bad is not None:
            yield path, bad
        for k, v in node.items():
            if isinstance(k, str):
                yield from _non_string_keys(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _non_string_keys(v, (*path, i))


def _add(found: dict, data: Any, path: tuple, expected: str) -> None:
    key = ""
    for part in path:
        key = join(key, part if isinstance(part, int) else str(part))
    found.setdefault(key, (_position(data, path), expected))


def _position(data: Any, path: tuple) -> tuple:
    """Where ``path`` is in the document, for sorting: indices of each step (a missing key sorts
    after its mapping's existing keys)."""
    out, node = [], data
    for part in path:
        if isinstance(node, Mapping):
            keys = list(node)
            out.append(keys.index(part) if part in node else len(keys))
            node = node.get(part) if part in node else None
        elif isinstance(node, list) and isinstance(part, int):
            out.append(part)
            node = node[part] if part < len(node) else None
        else:
            out.append(0)
            node = None
    return tuple(out)


def _expected(err: ValidationError) -> str:
    message = err.schema.get("errorMessage") if isinstance(err.schema, Mapping) else None
    if message:
        return message
    if err.validator == "type":  # a schema without its own words (the test suite keeps these rare)
        kinds = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        return " or ".join(_TYPE_WORDS.get(kind, kind) for kind in kinds)
    return f"a value that satisfies {err.validator} {err.validator_value!r}"


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "nothing (null)"}


def _required(schema: Mapping, key: str) -> str:
    """For a missing key: the key's own words, or those of a branch that requires it
    (``then: {required: [systemd], errorMessage: ...}``)."""
    sub = schema.get("properties", {}).get(key, {})
    words = sub.get("errorMessage") if isinstance(sub, Mapping) else None
    if not words and "properties" not in schema:
        words = schema.get("errorMessage")
    return f"a value (required): {words}" if words else "a value (required)"


def _got(value: Any) -> str:
    """What was found, short; never a URL (it may hold a user:password or a token)."""
    if isinstance(value, str) and "://" in value:
        return ""
    return f", got {show(value)}"
