"""APM providers: for a set of hosts and a time window, per host: requests, errors, latency.

One interface, several sources::

    provider = make_provider("prometheus", {"url": "http://127.0.0.1:9090"}, where="lrelease.yml: ...")
    metrics = provider.fetch([HostRef("node1")], Window(start, end))
    metrics["node1"].requests, .errors, .latency, .no_data

- ``scrape``     each host's Prometheus-format /metrics, read directly (counter deltas; no server)
- ``prometheus`` the Prometheus HTTP API, PromQL templated per metric and host
- ``datadog``    Datadog's v1 metrics query API
- ``newrelic``   New Relic NerdGraph (NRQL over GraphQL)
- ``http``       each host's health endpoint, judged by the environment's health check
                 (``lrelease.healthcheck``; the hard check of the APM gate, or a health-only gate)

Two kinds of trouble are kept apart on purpose:

- *no data* (``HostMetrics.no_data``): the source answered but knows nothing about the host
  in that window (an empty Prometheus result is no data, never zero). The judge calls that
  Inconclusive.
- *provider error* (``ProviderError``): the source itself failed (down, refused our
  credentials, rejected the query). Raised, never turned into numbers.

A host that cannot be reached at all (``reachable=False``, from ``scrape`` and ``http``) is a
third thing: for a canary host it fails the gate at once.

Response parsing is pure (``parse_*`` functions in each provider module, tested against
recorded responses); the network is only touched in ``fetch``. Secrets come from environment
variables named in the settings and never appear in logs, reprs or exception text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lrelease.apm.latency import Latency
from lrelease.errors import ExitCode, LreleaseError

__all__ = [
    "PROVIDERS",
    "Health",
    "HostMetrics",
    "HostRef",
    "Latency",
    "Provider",
    "ProviderError",
    "Window",
    "combine",
    "increase_between",
    "make_provider",
]


class ProviderError(LreleaseError):
    """The metrics source failed (unreachable, auth refused, bad query, malformed answer).

    Distinct from "no data". The message names the provider and what failed; it never contains
    a secret (credentials travel in headers, never in URLs or messages). A gate that sees this
    is Inconclusive: it halts the roll-out for a human rather than guessing."""

    exit_code = ExitCode.HALTED

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        self.provider, self.status, self.detail = provider, status, message
        super().__init__(f"{provider}: {message}")


@dataclass(frozen=True)
class HostRef:
    """A host to ask about. ``name`` is the inventory name; ``query_name`` is what the metrics
    source calls it (a Prometheus ``node`` label, a Datadog ``host`` tag) when that differs;
    ``url`` is the app's base URL as the controller reaches it (``scrape`` and ``http`` use it)."""

    name: str
    url: str = ""
    query_name: str = ""

    @property
    def label(self) -> str:
        return self.query_name or self.name


@dataclass(frozen=True)
class Window:
    """A time window in Unix seconds, ``start <= end``."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.end < self.start:
            raise ValueError(f"a window needs start <= end, got {self.start}..{self.end}")

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Health:
    """A health endpoint's answer: ``status`` is pass or fail (``lrelease.healthcheck`` decides;
    ``warn`` is left for providers that report it), ``detail`` says what came and what was wanted."""

    status: str
    http_status: int | None = None
    detail: str = ""

    @property
    def failing(self) -> bool:
        return self.status == "fail"


@dataclass(frozen=True)
class HostMetrics:
    """What one provider knows about one host over one window.

    ``requests`` and ``errors`` (5xx) are counts (floats: Prometheus' ``increase`` extrapolates);
    ``latency`` is histogram buckets, samples or quantiles; ``no_data`` means the source had
    nothing for this host; ``reachable=False`` means the host itself did not answer; ``health``
    is set by the ``http`` provider; ``seconds`` is the time actually covered."""

    host: str
    requests: float = 0.0
    errors: float = 0.0
    latency: Latency | None = None
    no_data: bool = False
    reachable: bool = True
    health: Health | None = None
    seconds: float = 0.0
    detail: str = ""

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": round(self.requests, 3), "errors": round(self.errors, 3)}
        if self.error_rate is not None:
            out["error_rate"] = round(self.error_rate, 6)
        if self.latency is not None:
            out["latency"] = self.latency.to_dict()
        if self.no_data:
            out["no_data"] = True
        if not self.reachable:
            out["reachable"] = False
        if self.health is not None:
            out["health"] = {"status": self.health.status, "http_status": self.health.http_status,
                             "detail": self.health.detail}
        if self.seconds:
            out["seconds"] = round(self.seconds, 3)
        if self.detail:
            out["detail"] = self.detail
        return out


def increase_between(earlier: HostMetrics, later: HostMetrics) -> HostMetrics:
    """What happened between two looks at the same host, both counted from the same start
    (the judge uses these per-look slices to estimate dispersion). Negative differences, which
    a provider's extrapolation can produce, are clipped to 0."""
    if earlier.no_data or later.no_data:
        return HostMetrics(host=later.host, no_data=True, reachable=later.reachable, detail="no data for a slice")
    latency = later.latency.minus(earlier.latency) if later.latency and earlier.latency else None
    return HostMetrics(host=later.host, requests=max(0.0, later.requests - earlier.requests),
                       errors=max(0.0, later.errors - earlier.errors), latency=latency,
                       seconds=max(0.0, later.seconds - earlier.seconds))


def combine(name: str, parts: Sequence[HostMetrics]) -> HostMetrics:
    """One unit adding up several hosts' metrics (e.g. a baseline time slice of a whole wave).
    No data if any part has none (a partial sum would look like less traffic)."""
    from lrelease.apm.latency import pool

    missing = [m.host for m in parts if m.no_data]
    if not parts or missing:
        return HostMetrics(host=name, no_data=True, detail=f"no data for {', '.join(missing) or 'any host'}")
    return HostMetrics(host=name, requests=sum(m.requests for m in parts), errors=sum(m.errors for m in parts),
                       latency=pool(m.latency for m in parts), seconds=max(m.seconds for m in parts))


def no_data(host: str, detail: str, **extra: Any) -> HostMetrics:
    return HostMetrics(host=host, no_data=True, detail=detail, **extra)


class Provider(Protocol):
    """What every provider offers. ``mark`` lets providers without history (``scrape``) take a
    reading now, e.g. at the moment a host switches; others ignore it. A provider that can only
    answer a past window at some moments (``scrape``: when it took readings) also has
    ``slices(hosts, window, count)``; see :func:`past_slices`."""

    name: str

    def fetch(self, hosts: Sequence[HostRef], window: Window) -> dict[str, HostMetrics]: ...

    def mark(self, hosts: Sequence[HostRef]) -> None: ...


def equal_slices(window: Window, count: int) -> list[Window]:
    step = window.seconds / max(1, count)
    return [Window(window.start + i * step, window.start + (i + 1) * step) for i in range(max(1, count))]


def past_slices(provider: Provider, hosts: Sequence[HostRef], window: Window, count: int) -> list[Window]:
    """About ``count`` consecutive windows covering the past ``window``, each one the provider can
    answer: equal parts for a metrics server with history; for ``scrape``, the spans between
    the readings it kept (possibly fewer, or none, when it has few readings from then)."""
    own = getattr(provider, "slices", None)
    return list(own(hosts, window, count)) if callable(own) else equal_slices(window, count)


ProviderFactory = Callable[..., Provider]


def _factories() -> dict[str, Callable[[Mapping[str, Any], str, Mapping[str, str]], Provider]]:
    # Imported lazily so that importing lrelease.apm stays cheap (requests is loaded on use).
    from lrelease.apm import datadog, httpcheck, newrelic, prometheus, scrape

    return {
        "scrape": scrape.from_settings,
        "prometheus": prometheus.from_settings,
        "datadog": datadog.from_settings,
        "newrelic": newrelic.from_settings,
        "http": httpcheck.from_settings,
    }


PROVIDERS = ("scrape", "prometheus", "datadog", "newrelic", "http")


def make_provider(kind: str, settings: Mapping[str, Any], *, where: str,
                  env: Mapping[str, str] | None = None) -> Provider:
    """Build the provider ``kind`` from its settings mapping (as written in lrelease.yml).
    Secrets are read from ``env`` (default ``os.environ``) by the variable names the settings
    give. Raises ConfigError naming ``where`` and the key."""
    import os

    from lrelease.errors import ConfigError

    factories = _factories()
    if kind not in factories:
        raise ConfigError(where, "provider", f"one of {', '.join(PROVIDERS)}, got {kind!r}")
    return factories[kind](settings, where, os.environ if env is None else env)

