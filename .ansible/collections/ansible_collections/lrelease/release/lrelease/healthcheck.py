"""Does a health endpoint's answer pass? One rule, used by every health check of lrelease.

The switch's and the rollback's verify step, the ``http`` gate (both through the ``lrelease_gate``
action plugin) and the APM gate's health step (``lrelease.apm.httpcheck``) all judge an answer
with :meth:`HealthCheck.judge`. The check is written per environment in lrelease.yml::

    health:
      path: /healthz
      expect_status: "2xx"        # default: any 200..299; or a list of codes, e.g. [200, 204]
      body_json:                  # optional: this JSON field (a dotted path into objects; a
        field: checks.db          #   number indexes a list) holds one of these values,
        values: [ok, up]          #   compared as JSON values ("1" is not 1, true is not 1)
      body_contains: "OK"         # optional: a substring of the body

Every rule given must hold. A failure says what was wanted and what came. Pure: no network.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lrelease.schema import Checker, join, plain_text, show

BODY_LIMIT = 200  # characters of a body quoted in a failure
MAX_VALUES = 32
MAX_TEXT = 256
ANY_2XX = "2xx"
KEYS = ("expect_status", "body_json", "body_contains")
# One field name between the dots: what JSON keys of health endpoints are made of.
_FIELD_RE = re.compile(r"[A-Za-z0-9_@$:-]{1,64}(\.[A-Za-z0-9_@$:-]{1,64}){0,15}\Z")
_FIELD_EXPECTED = ("a dotted path of JSON field names (letters, digits, '_', '@', '$', ':', '-'), e.g. status "
                   "or checks.db; a number indexes a list")
Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class BodyJson:
    """The JSON body's ``field`` (dotted path) must hold one of ``values``."""

    field: str
    values: tuple[Scalar, ...]

    def wanted(self) -> str:
        return f"{self.field} to be {' or '.join(json.dumps(v) for v in self.values)}"


@dataclass(frozen=True)
class Answer:
    """The verdict on one answer: ``ok``, and a one-line ``detail`` (what came; if not ok, what
    was wanted)."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class HealthCheck:
    """``expect_status`` empty means any 2xx; ``body_json`` None and ``body_contains`` "" are off."""

    expect_status: tuple[int, ...] = ()
    body_json: BodyJson | None = None
    body_contains: str = ""

    def status_ok(self, status: int) -> bool:
        return status in self.expect_status if self.expect_status else 200 <= status <= 299

    def status_wanted(self) -> str:
        return ANY_2XX if not self.expect_status else " or ".join(str(c) for c in self.expect_status)

    def describe(self) -> str:
        """What passes, in words (evidence and plans)."""
        parts = [f"HTTP {self.status_wanted()}"]
        if self.body_json is not None:
            parts.append(f"JSON {self.body_json.wanted()}")
        if self.body_contains:
            parts.append(f"body containing {self.body_contains!r}")
        return ", ".join(parts)

    def judge(self, status: int, body: str) -> Answer:
        """Whether ``status`` and ``body`` pass every rule; the first rule that fails is named."""
        if not self.status_ok(status):
            return Answer(False, f"HTTP {status}, expected {self.status_wanted()}{_quote(body)}")
        if self.body_contains and self.body_contains not in body:
            return Answer(False, f"HTTP {status} but the body does not contain {self.body_contains!r}{_quote(body)}")
        said = ""
        if self.body_json is not None:
            rule = self.body_json
            try:
                doc = json.loads(body)
            except ValueError:
                return Answer(False, f"HTTP {status} but the body is not JSON (expected {rule.wanted()}){_quote(body)}")
            found, value = lookup(doc, rule.field)
            if not found:
                return Answer(False, f"HTTP {status} but the body has no {rule.field} (expected {rule.wanted()})"
                                     f"{_quote(body)}")
            if not any(same_json(value, v) for v in rule.values):
                return Answer(False, f"HTTP {status} but {rule.field} is {_json(value)}, expected "
                                     f"{' or '.join(json.dumps(v) for v in rule.values)}")
            said = f", {rule.field} is {_json(value)}"
        return Answer(True, f"HTTP {status}{said}")

    def to_vars(self) -> dict[str, Any]:
        """The playbooks' extra vars (docs/design.md): [] is any 2xx, {} and "" are off."""
        body_json = {"field": self.body_json.field, "values": list(self.body_json.values)} if self.body_json else {}
        return {"lrelease_health_expect_status": list(self.expect_status),
                "lrelease_health_body_json": body_json, "lrelease_health_body_contains": self.body_contains}

    def to_params(self) -> dict[str, Any]:
        """The same rules as settings of this module's parser (``expect_status`` "2xx" when any)."""
        out: dict[str, Any] = {"expect_status": list(self.expect_status) or ANY_2XX}
        if self.body_json is not None:
            out["body_json"] = {"field": self.body_json.field, "values": list(self.body_json.values)}
        if self.body_contains:
            out["body_contains"] = self.body_contains
        return out


def parse_check(check: Checker, data: Mapping[str, Any], key: str = "") -> HealthCheck:
    """The rules among ``data``'s keys (``expect_status``, ``body_json``, ``body_contains``; other
    keys are the caller's). ``body_json: {}`` and ``body_contains: ""`` mean "not set" (the extra
    vars' defaults); an empty ``expect_status`` list is refused (the extra var's ``[]`` is turned
    into "2xx" by the caller). Raises ConfigError naming ``key`` + the rule's key and what was expected."""
    expect: tuple[int, ...] = ()
    raw = data.get("expect_status", ANY_2XX)
    if raw != ANY_2XX:
        if not isinstance(raw, list) or not 1 <= len(raw) <= 100 or not all(
                isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in raw):
            check.fail(join(key, "expect_status"),
                       f'"2xx" (any 200..299) or a list of HTTP status codes (100..599) such as [200, 204], '
                       f"got {show(raw)}")
        expect = tuple(dict.fromkeys(raw))
    body_json = _body_json(check, data.get("body_json", {}), join(key, "body_json"))
    contains = data.get("body_contains", "")
    if contains != "":
        contains = check.string(contains, join(key, "body_contains"), test=_text_ok,
                                describe=f"a substring of the body (at most {MAX_TEXT} characters, "
                                         "no control characters, {{ }} or {% %})")
    return HealthCheck(expect, body_json, contains)


def _body_json(check: Checker, value: Any, key: str) -> BodyJson | None:
    example = "{field: status, values: [ok, up]}"
    check.mapping(value, key, optional=("field", "values"), example=example)
    if not value:
        return None
    if "field" not in value or "values" not in value:
        check.fail(key, f"both field and values, e.g. {example}")
    field = check.string(value["field"], join(key, "field"), pattern=_FIELD_RE, describe=_FIELD_EXPECTED)
    values = value["values"]
    if not isinstance(values, list) or not values or len(values) > MAX_VALUES:
        check.fail(join(key, "values"), f"a list of 1 to {MAX_VALUES} values that pass (strings, numbers, "
                                        f"true/false, null), e.g. [ok, up], got {show(values)}")
    for i, item in enumerate(values):
        scalar = item is None or isinstance(item, (bool, int, float)) or (isinstance(item, str) and _text_ok(item))
        if not scalar or (isinstance(item, float) and not math.isfinite(item)):
            check.fail(join(join(key, "values"), i), "a string (no control characters, {{ }} or {% %}), number, "
                                                    f"true/false or null, got {show(item)}")
    return BodyJson(field, tuple(values))


def _text_ok(text: str) -> bool:
    return len(text) <= MAX_TEXT and plain_text(text)


def lookup(doc: Any, path: str) -> tuple[bool, Any]:
    """``(True, value)`` at the dotted ``path`` (a number indexes a list), else ``(False, None)``."""
    here = doc
    for part in path.split("."):
        if isinstance(here, dict) and part in here:
            here = here[part]
        elif isinstance(here, list) and part.isdigit() and int(part) < len(here):
            here = here[int(part)]
        else:
            return False, None
    return True, here


def same_json(found: Any, wanted: Scalar) -> bool:
    """Equal as JSON values: true is not 1, "1" is not 1, 1 is 1.0."""
    if isinstance(found, bool) or isinstance(wanted, bool):
        return isinstance(found, bool) and isinstance(wanted, bool) and found is wanted
    if isinstance(found, (int, float)) and isinstance(wanted, (int, float)):
        return found == wanted
    if isinstance(found, str) and isinstance(wanted, str):  # Ansible hands str subclasses (unsafe text)
        return str(found) == str(wanted)
    return found is None and wanted is None


def _json(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _quote(body: str) -> str:
    text = " ".join(body.split())
    if not text:
        return " (empty body)"
    return ": " + (text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT] + "...")
