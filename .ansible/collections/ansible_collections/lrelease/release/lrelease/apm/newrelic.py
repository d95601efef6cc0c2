"""The ``newrelic`` provider: NRQL through NerdGraph, New Relic's GraphQL API.

``POST https://api.newrelic.com/graphql`` (EU accounts: ``api.eu.newrelic.com``) with header
``API-Key: <user key>`` (read from an environment variable) and the body
``{"query": "query($accountId: Int!, $nrql: Nrql!) {actor {account(id: $accountId) {nrql(query:
$nrql) {results}}}}", "variables": {...}}``. One NRQL query asks for every host at once with
``FACET host``; each result row carries ``facet`` (the host) and the selected values::

    {"data": {"actor": {"account": {"nrql": {"results": [
        {"facet": "node1", "host": "node1", "requests": 1200, "errors": 6,
         "percentile.duration": {"50": 0.041, "95": 0.212}}]}}}}}

GraphQL reports errors *inside an HTTP 200*: ``{"errors": [{"message": ..., "extensions":
{"errorClass": ...}}], "data": {... "nrql": null}}`` — that is a ProviderError, never data. A bad
or missing key is an HTTP 401 with ``{"errors": [{"extensions": {"error_code": "BAD_API_KEY"},
"message": "Bad API Key or no API Key provided"}]}``. A host missing from the facets is no
data. ``duration`` is in seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lrelease.apm import HostMetrics, HostRef, ProviderError, Window, no_data
from lrelease.apm.latency import Latency
from lrelease.apm.transport import Http, Secret, Settings, json_object, snippet

NAME = "newrelic"
ENDPOINTS = {"us": "https://api.newrelic.com/graphql", "eu": "https://api.eu.newrelic.com/graphql"}
HOST_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
GRAPHQL = ("query($accountId: Int!, $nrql: Nrql!) "
           "{ actor { account(id: $accountId) { nrql(query: $nrql, timeout: 30) { results } } } }")
DEFAULT_NRQL = ("SELECT count(*) AS 'requests', filter(count(*), WHERE httpResponseCode LIKE '5%') AS 'errors', "
                "percentile(duration, 50, 95, 99) FROM Transaction WHERE host IN ({hosts}) "
                "FACET host SINCE {start_ms} UNTIL {end_ms} LIMIT MAX")


def parse_nrql_response(status: int, body: str) -> list[dict[str, Any]]:
    """The ``results`` rows of a NerdGraph NRQL answer; ProviderError for HTTP errors and for
    GraphQL ``errors`` (which arrive with HTTP 200)."""
    doc = json_object(NAME, status, body)
    errors = doc.get("errors")
    if errors:
        parts = []
        for err in errors if isinstance(errors, list) else [errors]:
            if isinstance(err, dict):
                extensions = err.get("extensions") or {}
                cls = extensions.get("errorClass") or extensions.get("error_code")
                parts.append(f"{cls}: {err.get('message')}" if cls else str(err.get("message")))
            else:
                parts.append(str(err))
        raise ProviderError(NAME, f"HTTP {status}, GraphQL error: {'; '.join(parts)}", status=status)
    if not 200 <= status < 300:
        raise ProviderError(NAME, f"HTTP {status}: {snippet(body)}", status=status)
    try:
        nrql = doc["data"]["actor"]["account"]["nrql"]
    except (KeyError, TypeError):
        raise ProviderError(NAME, f"answer without data.actor.account.nrql: {snippet(body)}") from None
    if nrql is None or not isinstance(nrql.get("results"), list):
        raise ProviderError(NAME, "the NRQL query returned no results object")
    return [row for row in nrql["results"] if isinstance(row, dict)]


def metrics_from_rows(rows: list[dict[str, Any]], hosts: Sequence[HostRef], seconds: float) -> dict[str, HostMetrics]:
    """Map FACET rows to hosts. Keys: ``requests``, ``errors``, and any ``percentile.<attr>``
    mapping of percent strings to seconds."""
    by_label: dict[str, dict[str, Any]] = {}
    for row in rows:
        facet = row.get("facet")
        if isinstance(facet, list):
            facet = facet[0] if facet else None
        if facet is not None:
            by_label[str(facet)] = row
    out: dict[str, HostMetrics] = {}
    for host in hosts:
        row = by_label.get(host.label)
        if row is None or row.get("requests") in (None, 0):
            out[host.name] = no_data(host.name, f"no Transaction events for host {host.label}")
            continue
        quantiles: dict[float, float] = {}
        for key, value in row.items():
            if key.startswith("percentile.") and isinstance(value, dict):
                for percent, seconds_value in value.items():
                    if seconds_value is not None:
                        quantiles[float(percent) / 100.0] = float(seconds_value)
        requests = float(row["requests"])
        latency = Latency(quantiles=quantiles, count_hint=requests) if quantiles else None
        out[host.name] = HostMetrics(host=host.name, requests=requests, errors=float(row.get("errors") or 0.0),
                                     latency=latency, seconds=seconds)
    return out


def render(template: str, hosts: Sequence[HostRef], window: Window) -> str:
    for host in hosts:
        if not HOST_RE.match(host.label):
            raise ProviderError(NAME, f"host {host.label!r} cannot be quoted safely in NRQL")
    quoted = ", ".join(f"'{h.label}'" for h in hosts)
    return (template.replace("{hosts}", quoted).replace("{start_ms}", str(math.floor(window.start * 1000)))
            .replace("{end_ms}", str(math.ceil(window.end * 1000))))


@dataclass(frozen=True)
class NewRelicSettings:
    account_id: int
    endpoint: str = ENDPOINTS["us"]
    nrql: str = DEFAULT_NRQL
    timeout: float = 35.0
    ca_bundle: str = ""  # a CA file to trust for the endpoint ("": the system's, or REQUESTS_CA_BUNDLE)


class NewRelicProvider:
    name = NAME

    def __init__(self, settings: NewRelicSettings, api_key: Secret) -> None:
        self.settings = settings
        self._key = api_key
        self._http = Http(NAME, settings.timeout, [api_key], retry=True, ca_bundle=settings.ca_bundle)

    def __repr__(self) -> str:
        return f"NewRelicProvider(endpoint={self.settings.endpoint!r}, account_id={self.settings.account_id})"

    def mark(self, hosts: Sequence[HostRef]) -> None:
        """New Relic keeps history itself."""

    def fetch(self, hosts: Sequence[HostRef], window: Window) -> dict[str, HostMetrics]:
        if not hosts:
            return {}
        nrql = render(self.settings.nrql, hosts, window)
        body = {"query": GRAPHQL, "variables": {"accountId": self.settings.account_id, "nrql": nrql}}
        headers = {"API-Key": self._key.reveal(), "Content-Type": "application/json", "Accept": "application/json"}
        reply = self._http.request("POST", self.settings.endpoint, json_body=body, headers=headers)
        return metrics_from_rows(self._http.parse(reply, parse_nrql_response), hosts, window.seconds)


def from_settings(data: Mapping[str, Any], where: str, env: Mapping[str, str]) -> NewRelicProvider:
    s = Settings(data, where, ("account_id", "region", "url", "api_key_env", "nrql", "timeout", "ca_bundle"))
    region = s.string("region", "us")
    if region not in ENDPOINTS:
        s.check.fail("region", f"us or eu, got {region!r}")
    nrql = s.string("nrql", DEFAULT_NRQL)
    for placeholder in ("{hosts}", "{start_ms}", "{end_ms}"):
        if placeholder not in nrql:
            s.check.fail("nrql", f"an NRQL template containing {placeholder} (and FACET on the host attribute)")
    settings = NewRelicSettings(account_id=s.integer("account_id", minimum=1),
                                endpoint=s.url("url") if s.has("url") else ENDPOINTS[region],
                                nrql=nrql, timeout=s.number("timeout", 35.0), ca_bundle=s.ca_bundle())
    return NewRelicProvider(settings, s.secret("api_key_env", env, "NEW_RELIC_API_KEY"))
