"""The ``http`` gate: judge a host by its application's health endpoint (and ``port``: does it
listen at all, used right after a restart).

Bake first (let the new build run for ``bake_seconds``), then poll the URL every ``interval``
seconds for up to ``timeout`` seconds. The host passes as soon as ``successes`` answers in a row
pass the environment's health check (``lrelease.healthcheck``: any 2xx by default, plus the body
rules given); it fails when the time is up. The evidence keeps what was seen: status codes,
truncated bodies, errors and timings, and why the last answer did not pass.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from lrelease.errors import ConfigError
from lrelease.gate import GateRequest, GateResult, Verdict
from lrelease.healthcheck import KEYS as CHECK_KEYS
from lrelease.healthcheck import HealthCheck, parse_check
from lrelease.schema import Checker

BODY_LIMIT = 200  # characters of each response body kept as evidence
SAMPLES_KEPT = 10  # the last N probes are kept as evidence (the count is always kept)


@dataclass(frozen=True)
class Probe:
    """One GET of the health URL, and whether it passed the check (``detail``: why, or why not)."""

    at: float  # seconds since the gate started
    status: int | None
    body: str
    error: str
    seconds: float  # how long the request took
    ok: bool = False
    detail: str = ""


@dataclass(frozen=True)
class HealthSettings:
    check: HealthCheck = field(default_factory=HealthCheck)
    successes: int = 1
    request_timeout: float = 2.0

    @classmethod
    def from_params(cls, host: str, params: dict[str, Any]) -> HealthSettings:
        where = f"gate for {host}"
        unknown = set(params) - {*CHECK_KEYS, "successes", "request_timeout"}
        if unknown:
            raise ConfigError(where, sorted(unknown)[0], "not a setting of the http gate")
        check = parse_check(Checker(where), params)
        successes = int(params.get("successes", cls.successes))
        request_timeout = float(params.get("request_timeout", cls.request_timeout))
        if successes < 1:
            raise ConfigError(where, "successes", f"an integer >= 1, got {successes}")
        if request_timeout <= 0:
            raise ConfigError(where, "request_timeout", f"a number of seconds > 0, got {request_timeout}")
        return cls(check, successes, request_timeout)


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
        probe = _probe(get, request.url, settings, started, clock)
        probes.append(probe)
        streak = streak + 1 if probe.ok else 0
        if streak >= settings.successes:
            reason = (f"{request.url} answered {probe.detail} ({streak} in a row) "
                      f"{probe.at:.1f}s after the gate started")
            return _result(Verdict.PASS, reason, request, settings, probes, clock() - started)
        now = clock()
        if now >= deadline:
            break
        sleep(min(request.interval, deadline - now))
    last = probes[-1]
    reason = (f"{request.url} was not healthy within {request.timeout:g}s after a {request.bake_seconds:g}s bake: "
              f"last answer {last.detail}")
    return _result(Verdict.FAIL, reason, request, settings, probes, clock() - started)


def _probe(get: Getter, url: str, settings: HealthSettings, started: float, clock: Callable[[], float]) -> Probe:
    t0 = clock()
    try:
        status, body = get(url, settings.request_timeout)
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:BODY_LIMIT]
        return Probe(at=round(t0 - started, 3), status=None, body="", error=error, seconds=round(clock() - t0, 3),
                     detail=error)
    answer = settings.check.judge(status, body)
    return Probe(at=round(t0 - started, 3), status=status, body=_truncate(body.strip()), error="",
                 seconds=round(clock() - t0, 3), ok=answer.ok, detail=answer.detail)


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
        "expect_status": list(settings.check.expect_status) or ["2xx"],
        "expect": settings.check.describe(),
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
