"""The ``http`` provider: a JSON health endpoint on each host, the gate's hard check.

Two body conventions are understood, and the HTTP status code is checked *as well as* the
body (a 200 saying ``"fail"`` fails; a 503 saying ``"pass"`` fails too):

- the IETF health-check draft (``application/health+json``): ``{"status": "pass"|"warn"|"fail"}``
  (``ok``/``up`` are read as pass, ``down``/``error`` as fail, as the draft allows);
- Spring Boot Actuator: ``{"status": "UP"|"DOWN"|"OUT_OF_SERVICE"|"UNKNOWN"}`` (UNKNOWN is warn).

``warn`` does not fail unless ``warn_fails`` is set. A host that does not answer at all is
``reachable=False``. This provider reports health only (``no_data`` for traffic metrics).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lrelease.apm import Health, HostMetrics, HostRef, ProviderError, Window
from lrelease.apm.transport import Http, Settings, Unreachable, snippet

NAME = "http"
_STATUS = {"pass": "pass", "ok": "pass", "up": "pass", "warn": "warn", "unknown": "warn",
           "fail": "fail", "error": "fail", "down": "fail", "out_of_service": "fail"}


@dataclass(frozen=True)
class HealthCheckSettings:
    path: str = "/health"
    expect_status: tuple[int, ...] = tuple(range(200, 300))
    require_body_status: bool = True  # the body must carry a recognised "status"
    warn_fails: bool = False
    timeout: float = 2.0


def parse_health(status: int, body: str, settings: HealthCheckSettings = HealthCheckSettings()) -> Health:
    """Judge one answer of a health endpoint (pure)."""
    said: str | None = None
    problem = ""
    try:
        doc = json.loads(body) if body.strip() else None
    except ValueError:
        doc = None
        problem = "body is not JSON"
    if isinstance(doc, dict) and isinstance(doc.get("status"), str):
        raw = doc["status"].strip().lower()
        said = _STATUS.get(raw)
        if said is None:
            problem = f"unrecognised status {doc['status']!r}"
    elif not problem:
        problem = "no \"status\" in the body"
    code_ok = status in settings.expect_status
    if not code_ok:
        detail = f"HTTP {status}" + (f", body says {said}" if said else f": {snippet(body)}" if body else "")
        return Health("fail", status, detail)
    if said is None:
        if settings.require_body_status:
            return Health("fail", status, f"HTTP {status} but {problem}: {snippet(body)}")
        return Health("pass", status, f"HTTP {status} ({problem}; the status code decides)")
    if said == "warn" and settings.warn_fails:
        return Health("fail", status, f"HTTP {status}, body says warn (warn_fails is set)")
    return Health(said, status, f"HTTP {status}, body says {said}")


Getter = Callable[[str, float], tuple[int, str]]


class HealthCheckProvider:
    name = NAME

    def __init__(self, settings: HealthCheckSettings, *, get: Getter | None = None) -> None:
        self.settings = settings
        self._get = get
        self._http: Http | None = None

    def mark(self, hosts: Sequence[HostRef]) -> None:
        """Health is read live; nothing to remember."""

    def _fetch_body(self, url: str) -> tuple[int, str]:
        if self._get is not None:
            return self._get(url, self.settings.timeout)
        if self._http is None:
            self._http = Http(NAME, self.settings.timeout)
        reply = self._http.request("GET", url, headers={"Accept": "application/health+json, application/json"})
        return reply.status, reply.body

    def check(self, host: HostRef) -> HostMetrics:
        if not host.url:
            raise ProviderError(NAME, f"{host.name}: no URL for the health endpoint (HostRef.url is empty)")
        url = host.url.rstrip("/") + self.settings.path
        try:
            status, body = self._fetch_body(url)
        except Unreachable as exc:
            return HostMetrics(host=host.name, no_data=True, reachable=False,
                               health=Health("fail", None, str(exc)), detail=str(exc))
        return HostMetrics(host=host.name, no_data=True, health=parse_health(status, body, self.settings),
                           detail="health only")

    def fetch(self, hosts: Sequence[HostRef], window: Window) -> dict[str, HostMetrics]:
        return {host.name: self.check(host) for host in hosts}


def from_settings(data: Mapping[str, Any], where: str, env: Mapping[str, str]) -> HealthCheckProvider:
    s = Settings(data, where, ("path", "expect_status", "require_body_status", "warn_fails", "timeout"))
    path = s.string("path", "/health")
    if not path.startswith("/"):
        s.check.fail("path", f"a path starting with /, got {path!r}")
    expect = HealthCheckSettings.expect_status
    if s.has("expect_status"):
        raw = s.data["expect_status"]
        if not isinstance(raw, list) or not raw or not all(
                isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in raw):
            s.check.fail("expect_status", f"a list of HTTP status codes (100-599), got {raw!r}")
        expect = tuple(raw)
    return HealthCheckProvider(HealthCheckSettings(
        path=path, expect_status=expect, require_body_status=s.boolean("require_body_status", True),
        warn_fails=s.boolean("warn_fails", False), timeout=s.number("timeout", 2.0)))
