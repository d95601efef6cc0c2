"""The ``datadog`` provider: Datadog's v1 metrics query API.

``GET https://api.<site>/api/v1/query?from=<unix s>&to=<unix s>&query=<metrics query>`` with
headers ``DD-API-KEY`` and ``DD-APPLICATION-KEY`` (both read from environment variables). The
site is configurable (``datadoghq.com``, ``us3.datadoghq.com``, ``datadoghq.eu``,
``ddog-gov.com``...); ``url`` overrides the base URL (a proxy, or the local fake in tests).

Documented answer: ``{"status": "ok", "res_type": "time_series", "series": [{"metric",
"scope", "tag_set", "pointlist": [[ms, value|null], ...], ...}], "from_date", "to_date",
"query", "message", "error", "group_by"}``. Errors come as a non-2xx status with
``{"errors": ["..."]}`` (400 bad query, 403 bad keys, 429 rate limited), or as
``"status": "error"`` with an ``error`` message. No series at all is *no data*.

Counts (``.as_count()``) are summed over the points; quantile queries (``p95:``) are averaged
over the points (a rollup over the whole window, ``.rollup(max, <window>)``, gives one point).

No default queries: Datadog's metric names depend on the integration (APM trace metrics are
``trace.<operation>.hits``, the operation named by the language's integration: ``flask.request``,
``servlet.request``...), so ``requests_query``, ``errors_query`` and ``latency_queries`` are
required (docs/apm-gate.md has examples).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lrelease.apm import HostMetrics, HostRef, ProviderError, Window, no_data
from lrelease.apm.latency import Latency
from lrelease.apm.transport import Http, Secret, Settings, json_object, snippet

NAME = "datadog"
SITE_RE = re.compile(r"^(app\.)?([a-z0-9-]+\.)?(datadoghq\.com|datadoghq\.eu|ddog-gov\.com)$")
TAG_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:/-]+$")
EXAMPLE = "trace.flask.request"  # a Datadog APM trace metric, for the examples of the error messages
_NO_DEFAULT = "no default: Datadog's metric names depend on the integration"


@dataclass(frozen=True)
class Series:
    scope: str
    points: tuple[tuple[float, float], ...]  # (ms since epoch, value); null points dropped


def parse_query_response(status: int, body: str) -> list[Series]:
    """The series of one answer; ProviderError for every documented error shape."""
    doc = json_object(NAME, status, body)
    if not 200 <= status < 300 or "errors" in doc:
        errors = doc.get("errors")
        text = "; ".join(str(e) for e in errors) if isinstance(errors, list) and errors else snippet(body)
        raise ProviderError(NAME, f"HTTP {status}: {text}", status=status)
    if doc.get("status") not in (None, "ok"):
        raise ProviderError(NAME, f"query failed: {doc.get('error') or doc.get('status')}", status=status)
    out: list[Series] = []
    for item in doc.get("series") or []:
        try:
            points = tuple((float(ts), float(v)) for ts, v in item.get("pointlist") or [] if v is not None)
        except (TypeError, ValueError):
            raise ProviderError(NAME, f"malformed pointlist in series {item.get('scope')!r}") from None
        out.append(Series(str(item.get("scope", "")), points))
    return out


def total(series: list[Series]) -> float | None:
    """Sum of every point of every series (counts); None when nothing came back."""
    values = [v for s in series for _, v in s.points if not math.isnan(v)]
    return sum(values) if values else None


def mean(series: list[Series]) -> float | None:
    values = [v for s in series for _, v in s.points if not math.isnan(v)]
    return sum(values) / len(values) if values else None


def api_base(site: str) -> str:
    return "https://api." + (site.removeprefix("app."))


@dataclass(frozen=True)
class DatadogSettings:
    base_url: str
    requests_query: str = ""  # required in lrelease.yml (from_settings)
    errors_query: str = ""
    latency_queries: Mapping[float, str] = field(default_factory=dict)
    latency_unit: float = 1.0  # seconds per unit of the latency metric (0.001 for ms)
    errors_missing_is_zero: bool = True  # Datadog sends no series for a count never reported
    timeout: float = 10.0
    ca_bundle: str = ""  # a CA file to trust for base_url ("": the system's, or REQUESTS_CA_BUNDLE)


class DatadogProvider:
    name = NAME

    def __init__(self, settings: DatadogSettings, api_key: Secret, app_key: Secret) -> None:
        self.settings = settings
        self._keys = (api_key, app_key)
        self._http = Http(NAME, settings.timeout, self._keys, retry=True, ca_bundle=settings.ca_bundle)

    def __repr__(self) -> str:
        return f"DatadogProvider(base_url={self.settings.base_url!r}, keys=<from environment>)"

    def mark(self, hosts: Sequence[HostRef]) -> None:
        """Datadog keeps history itself."""

    def query(self, query: str, window: Window) -> list[Series]:
        headers = {"Accept": "application/json", "DD-API-KEY": self._keys[0].reveal(),
                   "DD-APPLICATION-KEY": self._keys[1].reveal()}
        params = {"from": str(math.floor(window.start)), "to": str(math.ceil(window.end)), "query": query}
        reply = self._http.request("GET", f"{self.settings.base_url}/api/v1/query", params=params, headers=headers)
        return self._http.parse(reply, parse_query_response)

    def fetch(self, hosts: Sequence[HostRef], window: Window) -> dict[str, HostMetrics]:
        return {host.name: self._fetch_one(host, window) for host in hosts}

    def _fetch_one(self, host: HostRef, window: Window) -> HostMetrics:
        if not TAG_VALUE_RE.match(host.label):
            raise ProviderError(NAME, f"host {host.label!r} cannot be used as a Datadog tag value")
        s = self.settings
        render = lambda template: template.replace("{host}", host.label).replace(
            "{window}", str(max(1, math.ceil(window.seconds))))
        requests = total(self.query(render(s.requests_query), window))
        if requests is None:
            return no_data(host.name, f"no requests series for host:{host.label}")
        errors = total(self.query(render(s.errors_query), window))
        if errors is None:
            if not s.errors_missing_is_zero:
                return no_data(host.name, "no errors series")
            errors = 0.0
        quantiles = {}
        for q, template in s.latency_queries.items():
            value = mean(self.query(render(template), window))
            if value is not None:
                quantiles[q] = value * s.latency_unit
        latency = Latency(quantiles=quantiles, count_hint=requests) if quantiles else None
        return HostMetrics(host=host.name, requests=requests, errors=errors, latency=latency, seconds=window.seconds)


def from_settings(data: Mapping[str, Any], where: str, env: Mapping[str, str]) -> DatadogProvider:
    s = Settings(data, where, ("site", "url", "api_key_env", "app_key_env", "requests_query", "errors_query",
                               "latency_queries", "latency_unit", "errors_missing_is_zero", "timeout", "ca_bundle"))
    site = s.string("site", "datadoghq.com", pattern=SITE_RE,
                    describe="a Datadog site such as datadoghq.com, us5.datadoghq.com or datadoghq.eu")
    base = s.url("url") if s.has("url") else api_base(site)
    example = EXAMPLE + "{host:{host}}"
    requests_query = s.string("requests_query", describe=f"a metrics query with {{host}} counting the host's "
                              f'requests, e.g. "sum:{EXAMPLE}.hits{{host:{{host}}}}.as_count()"; {_NO_DEFAULT}')
    errors_query = s.string("errors_query", describe=f"a metrics query with {{host}} counting its 5xx answers, "
                            f'e.g. "sum:{EXAMPLE}.errors{{host:{{host}}}}.as_count()"; {_NO_DEFAULT}')
    if not s.has("latency_queries"):
        s.check.fail("latency_queries", f'quantiles mapped to queries with {{host}}, e.g. {{p95: "p95:{example}"}}, '
                                        f"or null to skip latency; {_NO_DEFAULT} (required)")
    latency: dict[float, str] = {}
    if s.data["latency_queries"]:
        raw = s.check.mapping(s.data["latency_queries"], "latency_queries")
        for key, template in raw.items():
            q = _quantile(key)
            if q is None or not isinstance(template, str) or "{host}" not in template:
                s.check.fail(f"latency_queries.{key}", "a quantile such as p95 mapped to a query with {host}")
            latency[q] = template
    unit = s.string("latency_unit", "s")
    if unit not in ("s", "ms"):
        s.check.fail("latency_unit", f"s or ms, got {unit!r}")
    settings = DatadogSettings(
        base_url=base, requests_query=requests_query, errors_query=errors_query, latency_queries=latency,
        latency_unit=1.0 if unit == "s" else 0.001,
        errors_missing_is_zero=s.boolean("errors_missing_is_zero", True), timeout=s.number("timeout", 10.0),
        ca_bundle=s.ca_bundle())
    for key in ("requests_query", "errors_query"):
        if "{host}" not in getattr(settings, key):
            s.check.fail(key, "a metrics query containing {host}")
    return DatadogProvider(settings, s.secret("api_key_env", env, "DD_API_KEY"), s.secret("app_key_env", env, "DD_APP_KEY"))


def _quantile(key: str) -> float | None:
    """``p95`` -> 0.95, ``p99.9`` -> 0.999."""
    match = re.fullmatch(r"p(\d{1,2}(?:\.\d+)?)", str(key))
    return float(match.group(1)) / 100.0 if match else None
