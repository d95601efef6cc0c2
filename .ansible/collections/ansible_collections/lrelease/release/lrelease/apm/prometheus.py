"""The ``prometheus`` provider: instant queries against the Prometheus HTTP API.

``GET <url>/api/v1/query?query=<PromQL>&time=<window end>``, one query per metric and host,
from templates with placeholders ``{host}`` (the host's name, escaped for a PromQL string),
``{host_re}`` (the same, escaped for a regular expression too: for ``=~`` matchers), ``{window}``
(whole seconds, at least 1), ``{start}`` and ``{end}`` (Unix seconds).

The default queries follow the conventions (docs/apm-gate.md): OpenTelemetry's HTTP server
metric ``http.server.request.duration`` as Prometheus stores it (the histogram
``http_server_request_duration_seconds``, its ``_count`` the requests, the status code in
``http_response_status_code``), and Prometheus' own ``instance`` label (the scrape target,
``<host>:<port>``) naming the host: ``instance=~"<host>(:<port>)?"``. Other names or labels: set
the three queries.

The answer is the documented envelope ``{"status": "success"|"error", "data": {"resultType",
"result"}, "errorType", "error", "warnings"}``. An empty result is *no data*, never zero: that
is why the default errors query ends with ``or (0 * <requests>)`` — zero errors when the host
has traffic but no 5xx series yet, nothing when the host has no traffic at all. Auth is
optional: a bearer token or basic auth, each read from environment variables.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lrelease.apm import HostMetrics, HostRef, ProviderError, Window, no_data
from lrelease.apm.latency import Latency
from lrelease.apm.transport import Http, Secret, Settings, json_object, snippet

NAME = "prometheus"
_SEL = 'instance=~"{host_re}(:[0-9]+)?"'
_METRIC = "http_server_request_duration_seconds"
DEFAULT_REQUESTS = f"sum(increase({_METRIC}_count{{{_SEL}}}[{{window}}s]))"
DEFAULT_ERRORS = (f'sum(increase({_METRIC}_count{{{_SEL},http_response_status_code=~"5.."}}[{{window}}s]))'
                  f" or (0 * {DEFAULT_REQUESTS})")
DEFAULT_LATENCY = f"sum by (le) (increase({_METRIC}_bucket{{{_SEL}}}[{{window}}s]))"

Vector = list[tuple[dict[str, str], float]]


def parse_query_response(status: int, body: str) -> Vector:
    """The samples of an instant-query answer (a vector, or a scalar as one unlabelled sample).
    Raises ProviderError for the error envelope, a non-2xx status, or an unexpected shape."""
    doc = json_object(NAME, status, body)
    if doc.get("status") == "error" or not 200 <= status < 300:
        kind = doc.get("errorType") or "error"
        message = doc.get("error") or snippet(body)
        raise ProviderError(NAME, f"HTTP {status}: {kind}: {message}", status=status)
    if doc.get("status") != "success":
        raise ProviderError(NAME, f"unexpected status {doc.get('status')!r}", status=status)
    data = doc.get("data")
    if not isinstance(data, dict) or "result" not in data:
        raise ProviderError(NAME, "answer without data.result", status=status)
    kind, result = data.get("resultType"), data["result"]
    try:
        if kind == "vector":
            return [(dict(item.get("metric") or {}), _number(item["value"][1])) for item in result]
        if kind == "scalar":
            return [({}, _number(result[1]))]
    except (KeyError, IndexError, TypeError, ValueError):
        raise ProviderError(NAME, f"malformed {kind} result: {snippet(json.dumps(result))}") from None
    raise ProviderError(NAME, f"expected an instant vector, got resultType {kind!r} (use an instant query)")


def _number(text: Any) -> float:
    return float(text)  # Prometheus sends "NaN", "+Inf" as strings; float() reads them


def single_value(vector: Vector) -> float | None:
    """The one value of an aggregated query; None for an empty result or NaN (no data)."""
    values = [v for _, v in vector if not math.isnan(v)]
    return sum(values) if values else None


def buckets_from(vector: Vector) -> Latency | None:
    """``sum by (le)`` samples as a histogram; None when empty."""
    pairs: dict[float, float] = {}
    for labels, value in vector:
        if "le" not in labels or math.isnan(value):
            continue
        bound = float(labels["le"])
        pairs[bound] = pairs.get(bound, 0.0) + value
    return Latency.from_buckets(pairs.items()) if pairs else None


def _promql_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render(template: str, host: str, window: Window) -> str:
    return (template.replace("{host}", _promql_string(host)).replace("{host_re}", _promql_string(re.escape(host)))
            .replace("{window}", str(max(1, math.ceil(window.seconds))))
            .replace("{start}", f"{window.start:.3f}").replace("{end}", f"{window.end:.3f}"))


@dataclass(frozen=True)
class PrometheusSettings:
    url: str
    requests_query: str = DEFAULT_REQUESTS
    errors_query: str = DEFAULT_ERRORS
    latency_query: str = DEFAULT_LATENCY  # "" skips latency
    timeout: float = 5.0
    ca_bundle: str = ""  # a CA file to trust for url ("": the system's, or REQUESTS_CA_BUNDLE)


class PrometheusProvider:
    name = NAME

    def __init__(self, settings: PrometheusSettings, *, bearer: Secret | None = None,
                 basic: tuple[Secret, Secret] | None = None) -> None:
        self.settings = settings
        self._bearer, self._basic = bearer, basic
        secrets = [s for s in (bearer, *(basic or ())) if s is not None]
        self._http = Http(NAME, settings.timeout, secrets, retry=True, ca_bundle=settings.ca_bundle)

    def __repr__(self) -> str:
        auth = "bearer" if self._bearer else "basic" if self._basic else "none"
        return f"PrometheusProvider(url={self.settings.url!r}, auth={auth})"

    def mark(self, hosts: Sequence[HostRef]) -> None:
        """Prometheus keeps history itself."""

    def query(self, promql: str, at: float) -> Vector:
        headers = {"Accept": "application/json"}
        if self._bearer is not None:
            headers["Authorization"] = f"Bearer {self._bearer.reveal()}"
        auth = (self._basic[0].reveal(), self._basic[1].reveal()) if self._basic else None
        reply = self._http.request("GET", f"{self.settings.url}/api/v1/query",
                                   params={"query": promql, "time": f"{at:.3f}"}, headers=headers, auth=auth)
        return self._http.parse(reply, parse_query_response)

    def fetch(self, hosts: Sequence[HostRef], window: Window) -> dict[str, HostMetrics]:
        return {host.name: self._fetch_one(host, window) for host in hosts}

    def _fetch_one(self, host: HostRef, window: Window) -> HostMetrics:
        s = self.settings
        requests = single_value(self.query(render(s.requests_query, host.label, window), window.end))
        if requests is None:
            return no_data(host.name, f"no requests series for {host.label} in the last {window.seconds:.0f}s "
                                      f"(requests_query: {render(s.requests_query, host.label, window)})")
        errors = single_value(self.query(render(s.errors_query, host.label, window), window.end))
        if errors is None:
            return no_data(host.name, "the errors query returned nothing (empty is no data, not zero; "
                                      "end it with `or (0 * <requests query>)`)")
        latency = None
        if s.latency_query:
            latency = buckets_from(self.query(render(s.latency_query, host.label, window), window.end))
        return HostMetrics(host=host.name, requests=requests, errors=errors, latency=latency, seconds=window.seconds)


def from_settings(data: Mapping[str, Any], where: str, env: Mapping[str, str]) -> PrometheusProvider:
    s = Settings(data, where, ("url", "requests_query", "errors_query", "latency_query", "timeout",
                               "bearer_token_env", "basic_user_env", "basic_password_env", "ca_bundle"))
    settings = PrometheusSettings(
        url=s.url("url"),
        requests_query=s.string("requests_query", DEFAULT_REQUESTS),
        errors_query=s.string("errors_query", DEFAULT_ERRORS),
        latency_query=s.data.get("latency_query", DEFAULT_LATENCY) or "",
        timeout=s.number("timeout", 5.0),
        ca_bundle=s.ca_bundle(),
    )
    if not isinstance(settings.latency_query, str):
        s.check.fail("latency_query", "a PromQL string (or empty to skip latency)")
    for key in ("requests_query", "errors_query", "latency_query"):
        template = getattr(settings, key)
        if template and "{host}" not in template and "{host_re}" not in template:
            s.check.fail(key, "a PromQL template containing {host} or {host_re} (one query per host)")
    bearer = s.secret("bearer_token_env", env) if s.has("bearer_token_env") else None
    basic = None
    if s.has("basic_user_env") or s.has("basic_password_env"):
        if bearer is not None:
            s.check.fail("basic_user_env", "either bearer_token_env or basic auth, not both")
        basic = (s.secret("basic_user_env", env), s.secret("basic_password_env", env))
    return PrometheusProvider(settings, bearer=bearer, basic=basic)
