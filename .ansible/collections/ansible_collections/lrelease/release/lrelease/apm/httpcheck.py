"""The ``http`` provider: each host's health endpoint, the APM gate's hard check.

The answer is judged by the environment's health check (``lrelease.healthcheck``, the same rule
as the rollback's verify step and the ``http`` gate): any 2xx by default, plus the body rules
given (``body_json``, ``body_contains``). A host that does not answer at all is
``reachable=False``. This provider reports health only (``no_data`` for traffic metrics); in a
``gate:`` section, ``provider: http`` is the health-only gate (``lrelease.gate.settings``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lrelease.apm import Health, HostMetrics, HostRef, ProviderError, Window
from lrelease.apm.transport import Http, Settings, Unreachable
from lrelease.healthcheck import KEYS as CHECK_KEYS
from lrelease.healthcheck import HealthCheck, parse_check

NAME = "http"
# Hosts checked at once by one fetch: a wave's hosts are judged together, so one that does not
# answer costs its timeout once per look, not once per host before it.
PARALLEL_CHECKS = 16


@dataclass(frozen=True)
class HealthCheckSettings:
    path: str = "/health"
    check: HealthCheck = field(default_factory=HealthCheck)
    timeout: float = 2.0


def parse_health(status: int, body: str, check: HealthCheck = HealthCheck()) -> Health:
    """Judge one answer of a health endpoint (pure): pass or fail, and why."""
    answer = check.judge(status, body)
    return Health("pass" if answer.ok else "fail", status, answer.detail)


Getter = Callable[[str, float], tuple[int, str]]


class HealthCheckProvider:
    name = NAME

    def __init__(self, settings: HealthCheckSettings, *, get: Getter | None = None) -> None:
        self.settings = settings
        self._get = get
        self._local = threading.local()  # an Http (a requests session) per checking thread

    def mark(self, hosts: Sequence[HostRef]) -> None:
        """Health is read live; nothing to remember."""

    def _fetch_body(self, url: str) -> tuple[int, str]:
        if self._get is not None:
            return self._get(url, self.settings.timeout)
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = Http(NAME, self.settings.timeout)
        accept = "application/health+json, application/json, */*;q=0.5"
        reply = http.request("GET", url, headers={"Accept": accept})
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
        return HostMetrics(host=host.name, no_data=True, health=parse_health(status, body, self.settings.check),
                           detail="health only")

    def fetch(self, hosts: Sequence[HostRef], window: Window) -> dict[str, HostMetrics]:
        """Every host's health, checked at the same time (at most PARALLEL_CHECKS at once)."""
        if len(hosts) <= 1:
            return {host.name: self.check(host) for host in hosts}
        with ThreadPoolExecutor(max_workers=min(PARALLEL_CHECKS, len(hosts)), thread_name_prefix="lrelease-health") as pool:
            return dict(zip((host.name for host in hosts), pool.map(self.check, hosts)))


def from_settings(data: Mapping[str, Any], where: str, env: Mapping[str, str]) -> HealthCheckProvider:
    """``path``, ``timeout`` and the health check's own keys (``lrelease.healthcheck.KEYS``)."""
    s = Settings(data, where, ("path", "timeout", *CHECK_KEYS))
    path = s.string("path", "/health")
    if not path.startswith("/"):
        s.check.fail("path", f"a path starting with /, got {path!r}")
    return HealthCheckProvider(HealthCheckSettings(path=path, check=parse_check(s.check, s.data),
                                                   timeout=s.number("timeout", 2.0)))
