"""The ``http`` gate: judge a host by its application's health endpoint (and ``port``: does it
listen at all, used right after a restart).

Bake first (let the new build run for ``bake_seconds``), then poll the URL every ``interval``
seconds for up to ``timeout`` seconds. The host passes as soon as ``successes`` answers in a row
carry an expected status (200 by default); it fails when the time is up. The evidence keeps
what was seen: status codes, truncated bodies, errors and timings.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from lrelease.errors import ConfigError
from lrelease.gate import GateRequest, GateResult, Verdict

BODY_LIMIT = 200  # characters of each response body kept as evidence
SAMPLES_KEPT = 10  # the last N probes are kept as evidence (the count is always kept)


@dataclass(frozen=True)
class Probe:
    """One GET of the health URL."""

    at: float  # seconds since the gate started
    status: int | None
    body: str
    error: str
    seconds: float  # how long the request took

    def ok(self, expected: tuple[int, ...]) -> bool:
        return self.status in expected


@dataclass(frozen=True)
class HealthSettings:
    expect_status: tuple[int, ...] = (200,)
    successes: int = 1
    request_timeout: float = 2.0

    @classmethod
    def from_params(cls, host: str, params: dict[str, Any]) -> HealthSettings:
        where = f"gate for {host}"
        unknown = set(params) - {"expect_status", "successes", "request_timeout"}
        if unknown:
            raise ConfigError(where, sorted(unknown)[0], "not a setting of the http gate")
        expect = tuple(int(code) for code in params.get("expect_status", cls.expect_status))
        successes = int(params.get("successes", cls.successes))
        request_timeout = float(params.get("request_timeout", cls.request_timeout))
        if not expect or any(not 100 <= code <= 599 for code in expect):
            raise ConfigError(where, "expect_status", f"HTTP status codes (100-599), got {list(expect)}")
        if successes < 1:
            raise ConfigError(where, "successes", f"an integer >= 1, got {successes}")
        if request_timeout <= 0:
            raise ConfigError(where, "request_timeout", f"a number of seconds > 0, got {request_timeout}")
        return cls(expect, successes, request_timeout)


Getter = Callable[[str, float], tuple[int, str]]


def _requests_getter() -> Getter:
    session = requests.Session()
    session.trust_env = False  # straight to the node: never through a proxy from the environment

    def get(url: str, timeout: float) -> tuple[int, str]:
        response = session.get(url, timeout=timeout, allow_redirects=False)
        return response.status_code, response.text

    return get


def decide(
    request: GateRequest,
    *,
    get: Getter | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> GateResult:
    """Bake, then poll the health URL until it answers well enough or the timeout passes."""
    settings = HealthSettings.from_params(request.host, dict(request.params))
    get = get or _requests_getter()
    started = clock()
    if request.bake_seconds > 0:
        sleep(request.bake_seconds)
    deadline = clock() + request.timeout
    probes: list[Probe] = []
    streak = 0
    while True:
        probe = _probe(get, request.url, settings.request_timeout, started, clock)
        probes.append(probe)
        streak = streak + 1 if probe.ok(settings.expect_status) else 0
        if streak >= settings.successes:
            reason = (f"{request.url} answered {probe.status} ({streak} in a row) "
                      f"{probe.at:.1f}s after the gate started")
            return _result(Verdict.PASS, reason, request, settings, probes, clock() - started)
        now = clock()
        if now >= deadline:
            break
        sleep(min(request.interval, deadline - now))
    last = probes[-1]
    seen = f"HTTP {last.status}" if last.status is not None else last.error
    reason = (f"{request.url} was not healthy within {request.timeout:g}s after a {request.bake_seconds:g}s bake: "
              f"last answer {seen}{': ' + last.body if last.body else ''}")
    return _result(Verdict.FAIL, reason, request, settings, probes, clock() - started)


def _probe(get: Getter, url: str, timeout: float, started: float, clock: Callable[[], float]) -> Probe:
    t0 = clock()
    try:
        status, body = get(url, timeout)
        error = ""
    except requests.RequestException as exc:
        status, body, error = None, "", f"{type(exc).__name__}: {exc}"[:BODY_LIMIT]
    return Probe(at=round(t0 - started, 3), status=status, body=_truncate(body.strip()), error=error,
                 seconds=round(clock() - t0, 3))


def _truncate(text: str) -> str:
    return text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT] + "..."


def _result(verdict: Verdict, reason: str, request: GateRequest, settings: HealthSettings,
            probes: list[Probe], elapsed: float) -> GateResult:
    codes: dict[str, int] = {}
    for probe in probes:
        key = str(probe.status) if probe.status is not None else "error"
        codes[key] = codes.get(key, 0) + 1
    evidence = {
        "gate": "http",
        "host": request.host,
        "url": request.url,
        "bake_seconds": request.bake_seconds,
        "timeout": request.timeout,
        "expect_status": list(settings.expect_status),
        "elapsed": round(elapsed, 3),
        "probes": len(probes),
        "status_counts": codes,
        "samples": [asdict(p) for p in probes[-SAMPLES_KEPT:]],
    }
    return GateResult(verdict, evidence, reason)


def decide_port(
    request: GateRequest,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> GateResult:
    """The ``port`` decider: passes as soon as a TCP connection to ``tcp://host:port`` succeeds
    (the app listens), fails when ``timeout`` passes. No bake."""
    parsed = urlsplit(request.url)
    if parsed.scheme != "tcp" or not parsed.hostname or not parsed.port:
        raise ConfigError(f"gate for {request.host}", "url", f"tcp://<host>:<port>, got {request.url!r}")
    started = clock()
    deadline = started + request.timeout
    attempts, last_error = 0, ""
    while True:
        attempts += 1
        try:
            with socket.create_connection((parsed.hostname, parsed.port), timeout=min(2.0, max(request.timeout, 0.1))):
                pass
            verdict, reason = Verdict.PASS, f"{parsed.hostname}:{parsed.port} accepts connections"
            break
        except OSError as exc:
            last_error = f"{type(exc).__name__}: {exc}"[:BODY_LIMIT]
        now = clock()
        if now >= deadline:
            verdict = Verdict.FAIL
            reason = f"{parsed.hostname}:{parsed.port} did not accept a connection within {request.timeout:g}s: {last_error}"
            break
        sleep(min(request.interval, deadline - now))
    evidence = {"gate": "port", "host": request.host, "url": request.url, "timeout": request.timeout,
                "attempts": attempts, "elapsed": round(clock() - started, 3), "last_error": last_error}
    return GateResult(verdict, evidence, reason)
