"""A yes-or-unsure JSON Schema check, compiled once, for big files that are almost always right.

jsonschema explains every mistake, at about 60 µs per node of a fleet file: 0.6 s of CPU for
10,000 nodes, on every ``plan`` and ``inventory generate``. :func:`compile_schema` turns a schema
into one small Python function per subschema that answers only True, "certainly valid", or False,
"not sure"; :mod:`lrelease.schema_check` runs it first and asks jsonschema (for its messages) only
on False. It never says True where jsonschema would find a mistake:

- a keyword it does not know, anywhere in the schema, makes the whole schema not compile (None:
  jsonschema checks every document of it);
- where it is unsure it says False: a key that is not a string, ``uniqueItems`` over anything but
  strings, ``not`` with anything but ``{}``, a ``$ref`` outside ``#/$defs/``.

Patterns follow ECMA-262 as in schema_check (``$`` is the end of the text).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

# Keywords that say nothing about validity.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "errorMessage",
                          "default", "examples"})
_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
_DEFS = "#/$defs/"
_OBJECT_KEYWORDS = frozenset({"properties", "additionalProperties", "required", "minProperties", "propertyNames"})


class Unsupported(Exception):
    """The schema uses a keyword (or a form of one) this module does not compile."""


def ecma_pattern(pattern: str) -> str:
    """``pattern`` with every ``$`` outside a character class made ``\\Z`` (the end of the text)."""
    out, escaped, in_class = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
    return "".join(out)


def compile_schema(root: Mapping) -> Check | None:
    """The schema ``root`` as a function of a document: True when it certainly conforms, False
    when it may not. None when the schema uses what this module does not compile."""
    try:
        return _Compiler(root).compile(root)
    except Unsupported:
        return None


def _yes(_: Any) -> bool:
    return True


def _no(_: Any) -> bool:
    return False


def _all(checks: list[Check]) -> Check:
    if not checks:
        return _yes
    if len(checks) == 1:
        return checks[0]
    first, rest = checks[0], _all(checks[1:])
    return lambda v: first(v) and rest(v)


class _Compiler:
    _KEYWORDS = frozenset({"type", "$ref", "not", "pattern", "properties", "additionalProperties", "required",
                           "minProperties", "propertyNames", "items", "uniqueItems"})

    def __init__(self, root: Mapping) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return _yes
        if schema is False or not isinstance(schema, Mapping):
            return _no if schema is False else self._unsupported(f"a schema that is {type(schema).__name__}")
        unknown = set(schema) - self._KEYWORDS - _ANNOTATIONS
        if unknown:
            self._unsupported(", ".join(sorted(unknown)))
        checks = []
        if "type" in schema:
            checks.append(self._type(schema["type"]))
        if "$ref" in schema:
            checks.append(self._ref(schema["$ref"]))
        if "not" in schema:
            if schema["not"] != {}:
                self._unsupported("not with a schema other than {}")
            checks.append(_no)
        if "pattern" in schema:
            regex = re.compile(ecma_pattern(schema["pattern"]))
            checks.append(lambda v: not isinstance(v, str) or regex.search(v) is not None)
        if _OBJECT_KEYWORDS.intersection(schema):
            checks.append(self._object(schema))
        if "items" in schema or "uniqueItems" in schema:
            checks.append(self._array(schema))
        return _all(checks)

    @staticmethod
    def _unsupported(what: str) -> Check:
        raise Unsupported(what)

    def _type(self, value: Any) -> Check:
        names = value if isinstance(value, list) else [value]
        if not names or any(name not in _TYPES for name in names):
            self._unsupported(f"type {value!r}")
        tests = [_TYPES[name] for name in names]
        return tests[0] if len(tests) == 1 else (lambda v: any(test(v) for test in tests))

    def _ref(self, ref: Any) -> Check:
        if not isinstance(ref, str) or not ref.startswith(_DEFS) or "/" in ref[len(_DEFS):]:
            self._unsupported(f"$ref {ref!r}")
        name = ref[len(_DEFS):]
        if name not in self.refs:
            defs = self.root.get("$defs") or {}
            if name not in defs:
                self._unsupported(f"$ref {ref!r} to nothing")
            slot: list[Check] = []
            self.refs[name] = lambda v: slot[0](v)  # a schema that refers to itself compiles once
            slot.append(self.compile(defs[name]))
        return self.refs[name]

    def _object(self, schema: Mapping) -> Check:
        props = {key: self.compile(sub) for key, sub in (schema.get("properties") or {}).items()}
        extra = schema.get("additionalProperties", True)
        other = None if extra is True else self.compile(extra)  # None: any other key, any value
        names = self.compile(schema["propertyNames"]) if "propertyNames" in schema else None
        required = tuple(schema.get("required") or ())
        least = schema.get("minProperties", 0)
        if not isinstance(least, int) or not all(isinstance(key, str) for key in required):
            self._unsupported("minProperties or required of another form")

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            if len(value) < least or any(key not in value for key in required):
                return False
            for key, item in value.items():
                if type(key) is not str or (names is not None and not names(key)):
                    return False
                sub = props.get(key, other)
                if sub is not None and not sub(item):
                    return False
            return True

        return check

    def _array(self, schema: Mapping) -> Check:
        items = self.compile(schema["items"]) if "items" in schema else _yes
        unique = schema.get("uniqueItems", False)
        if not isinstance(unique, bool):
            self._unsupported("uniqueItems that is not true or false")

        def check(value: Any) -> bool:
            if not isinstance(value, list):
                return True
            if not all(items(item) for item in value):
                return False
            if unique:  # jsonschema's equality (1 == 1.0, True != 1) is trusted only for strings
                return all(type(item) is str for item in value) and len(set(value)) == len(value)
            return True

        return check
