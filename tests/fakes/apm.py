"""Local FAKES of Datadog and New Relic, for end-to-end tests of those providers. Not the real thing.

Test-only: this module lives under tests/ and is not part of the installed lrelease package.

A SaaS APM cannot run on a 2-core machine without internet, so these small servers stand in
for them. They follow each vendor's *documented* API — endpoint, auth headers, request and
answer shapes, error shapes — for the subset lrelease uses, and nothing more:

- :class:`FakeDatadog` — ``GET /api/v1/query?from=&to=&query=`` (Datadog API v1 "Query
  timeseries points"). Needs both ``DD-API-KEY`` and ``DD-APPLICATION-KEY`` (else 403
  ``{"errors": ["Forbidden"]}``); missing parameters or an unparsable query: 400 ``{"errors":
  [...]}``. Queries ``<aggr>:<metric>{tag:value,...}`` with ``aggr`` sum/avg/min/max or a
  percentile ``p50``..``p99`` over distribution points, optional ``.as_count()``/``.rollup(...)``.
  No matching points: ``"series": []``.
- :class:`FakeNewRelic` — ``POST /graphql`` (NerdGraph) with header ``API-Key`` (else HTTP 401
  ``BAD_API_KEY``), body ``{"query", "variables": {"accountId", "nrql"}}``. Understands the NRQL
  lrelease sends: ``SELECT count(*) AS 'requests', filter(count(*), WHERE httpResponseCode LIKE
  '5%') AS 'errors', percentile(duration, ...) FROM Transaction WHERE host IN (...) FACET host
  SINCE <ms> UNTIL <ms>``. Anything else is an NRQL syntax error *inside an HTTP 200*, like
  NerdGraph does; an unknown account is a GraphQL error too.

Both listen on 127.0.0.1 only (port 0: the OS picks), run in a daemon thread, are context
managers, and can be told to fail the next requests (``fail_next``) to exercise error paths.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _FakeBase:
    """Start/stop a handler class on 127.0.0.1 in a thread; record what came in."""

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.seen: list[dict[str, Any]] = []  # method, path, which auth headers were present
        self._failures: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def fail_next(self, status: int, body: Mapping[str, Any] | str, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` and ``body`` (after the auth check)."""
        text = body if isinstance(body, str) else json.dumps(body)
        with self._lock:
            self._failures.extend([(status, text)] * times)

    def _take_failure(self) -> tuple[int, str] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._server = _Server((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


# -- Datadog -------------------------------------------------------------------------------
_DD_QUERY_RE = re.compile(r"^(?P<aggr>sum|avg|min|max|p\d{2}):(?P<metric>[A-Za-z0-9_.]+)\{(?P<scope>[^{}]*)\}"
                          r"(?P<funcs>(\.(as_count|as_rate)\(\)|\.rollup\([a-z]+(, *\d+)?\))*)$")


@dataclass
class _DDSeries:
    tags: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)  # (unix seconds, value)
    distribution: dict[float, list[float]] = field(default_factory=dict)  # unix seconds -> values


class FakeDatadog(_FakeBase):
    """A fake of Datadog's v1 metrics query API (see the module docstring)."""

    def __init__(self, api_key: str, app_key: str) -> None:
        super().__init__()
        self._keys = (api_key, app_key)
        self._metrics: dict[str, list[_DDSeries]] = {}

    def _series(self, metric: str, tags: Mapping[str, str]) -> _DDSeries:
        for series in self._metrics.setdefault(metric, []):
            if series.tags == dict(tags):
                return series
        series = _DDSeries(dict(tags))
        self._metrics[metric].append(series)
        return series

    def add_points(self, metric: str, tags: Mapping[str, str], points: list[tuple[float, float]]) -> None:
        """Count or gauge points, (unix seconds, value)."""
        with self._lock:
            self._series(metric, tags).points.extend(points)

    def add_distribution(self, metric: str, tags: Mapping[str, str], at: float, values: list[float]) -> None:
        """Raw values of a distribution metric at one timestamp (answered by pNN queries)."""
        with self._lock:
            self._series(metric, tags).distribution.setdefault(at, []).extend(values)

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        api, app = handler.headers.get("DD-API-KEY"), handler.headers.get("DD-APPLICATION-KEY")
        self.seen.append({"method": method, "path": parts.path, "api_key": api is not None, "app_key": app is not None})
        if method != "GET" or parts.path != "/api/v1/query":
            return self._send(handler, 404, {"errors": ["Not found"]})
        if (api, app) != self._keys:
            return self._send(handler, 403, {"errors": ["Forbidden"]})
        failure = self._take_failure()
        if failure:
            return self._send(handler, *failure)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        missing = [k for k in ("from", "to", "query") if k not in params]
        if missing:
            return self._send(handler, 400, {"errors": [f"The value provided for parameter '{missing[0]}' is invalid"]})
        try:
            start, end = int(params["from"]), int(params["to"])
        except ValueError:
            return self._send(handler, 400, {"errors": ["from and to must be integers (seconds since the epoch)"]})
        match = _DD_QUERY_RE.match(params["query"].replace(" ", ""))
        if not match:
            return self._send(handler, 400, {"errors": [f"Error parsing query: unable to parse {params['query']}"]})
        with self._lock:
            series = self._answer(match, start, end, params["query"])
        self._send(handler, 200, {
            "status": "ok", "res_type": "time_series", "series": series, "query": params["query"],
            "from_date": start * 1000, "to_date": end * 1000, "message": "", "group_by": [], "error": None})

    def _answer(self, match: re.Match, start: int, end: int, query: str) -> list[dict[str, Any]]:
        scope = match.group("scope")
        wanted = {} if scope in ("", "*") else dict(item.split(":", 1) for item in scope.split(","))
        chosen = [s for s in self._metrics.get(match.group("metric"), [])
                  if all(s.tags.get(k) == v for k, v in wanted.items())]
        aggr = match.group("aggr")
        by_time: dict[float, list[float]] = {}
        for s in chosen:
            if aggr.startswith("p"):
                for at, values in s.distribution.items():
                    if start <= at <= end:
                        by_time.setdefault(at, []).extend(values)
            else:
                for at, value in s.points:
                    if start <= at <= end:
                        by_time.setdefault(at, []).append(value)
        if not by_time:
            return []
        pointlist = [[at * 1000.0, _dd_aggregate(aggr, values)] for at, values in sorted(by_time.items())]
        return [{"metric": match.group("metric"), "display_name": match.group("metric"), "expression": query,
                 "scope": scope or "*", "tag_set": [], "aggr": aggr if not aggr.startswith("p") else None,
                 "pointlist": pointlist, "length": len(pointlist), "start": pointlist[0][0],
                 "end": pointlist[-1][0], "interval": 10, "query_index": 0, "unit": None}]


def _dd_aggregate(aggr: str, values: list[float]) -> float:
    if aggr == "sum":
        return sum(values)
    if aggr == "avg":
        return sum(values) / len(values)
    if aggr == "min":
        return min(values)
    if aggr == "max":
        return max(values)
    return _percentile(values, int(aggr[1:]))


def _percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    rank = max(0, math.ceil(percent / 100.0 * len(ordered)) - 1)
    return ordered[rank]


# -- New Relic -----------------------------------------------------------------------------
_NRQL_RE = re.compile(
    r"^SELECT (?P<select>.+?) FROM (?P<event>\w+) WHERE host IN \((?P<hosts>[^)]*)\) FACET (?P<facet>\w+) "
    r"SINCE (?P<since>\d+) UNTIL (?P<until>\d+)( LIMIT (MAX|\d+))?$")
_SELECT_ITEMS = {
    "count(*) AS 'requests'": "requests",
    "filter(count(*), WHERE httpResponseCode LIKE '5%') AS 'errors'": "errors",
}
_PERCENTILE_RE = re.compile(r"^percentile\(duration((?:, *\d{1,2})+)\)$")


@dataclass(frozen=True)
class Transaction:
    timestamp: float  # unix seconds
    host: str
    duration: float  # seconds
    httpResponseCode: str = "200"


class FakeNewRelic(_FakeBase):
    """A fake of New Relic NerdGraph's NRQL query (see the module docstring)."""

    def __init__(self, api_key: str, account_id: int) -> None:
        super().__init__()
        self._key, self._account = api_key, account_id
        self.events: list[Transaction] = []

    def add(self, events: list[Transaction]) -> None:
        with self._lock:
            self.events.extend(events)

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        key = handler.headers.get("API-Key")
        self.seen.append({"method": method, "path": handler.path, "api_key": key is not None})
        if method != "POST" or urlsplit(handler.path).path != "/graphql":
            return self._send(handler, 404, {"errors": [{"message": "Not found"}]})
        if key != self._key:
            return self._send(handler, 401, {"errors": [{"extensions": {"error_code": "BAD_API_KEY"},
                                                         "message": "Bad API Key or no API Key provided"}]})
        failure = self._take_failure()
        if failure:
            return self._send(handler, *failure)
        try:
            length = int(handler.headers.get("Content-Length") or 0)
            body = json.loads(handler.rfile.read(length) or b"{}")
            variables = body.get("variables") or {}
            account, nrql = variables.get("accountId"), variables.get("nrql")
        except (ValueError, AttributeError):
            return self._send(handler, 400, {"errors": [{"message": "Unable to parse the request body as JSON"}]})
        if "nrql(query: $nrql" not in str(body.get("query")) or not isinstance(nrql, str):
            return self._graphql_error(handler, "Syntax Error: expected the actor.account.nrql query", "INVALID_INPUT")
        if account != self._account:
            return self._graphql_error(handler, f"Account {account} does not exist or you have no access to it",
                                       "FORBIDDEN")
        with self._lock:
            rows = self._run(nrql)
        if isinstance(rows, str):
            return self._graphql_error(handler, rows, "INVALID_INPUT")
        self._send(handler, 200, {"data": {"actor": {"account": {"nrql": {"results": rows}}}}})

    def _graphql_error(self, handler: BaseHTTPRequestHandler, message: str, error_class: str) -> None:
        self._send(handler, 200, {
            "data": {"actor": {"account": {"nrql": None}}},
            "errors": [{"message": message, "extensions": {"errorClass": error_class},
                        "locations": [{"line": 1, "column": 1}], "path": ["actor", "account", "nrql"]}]})

    def _run(self, nrql: str) -> list[dict[str, Any]] | str:
        match = _NRQL_RE.match(" ".join(nrql.split()))
        if not match or match.group("event") != "Transaction" or match.group("facet") != "host":
            return f"NRQL Syntax Error: this fake only understands lrelease's query shape, got: {nrql[:80]}"
        hosts = [h.strip().strip("'") for h in match.group("hosts").split(",") if h.strip()]
        since, until = int(match.group("since")) / 1000.0, int(match.group("until")) / 1000.0
        items = [item.strip() for item in re.split(r",(?![^(]*\))", match.group("select"))]
        rows: dict[str, dict[str, Any]] = {}
        for host in hosts:
            events = [e for e in self.events if e.host == host and since <= e.timestamp < until]
            if not events:
                continue
            row: dict[str, Any] = {"facet": host, "host": host}
            for item in items:
                name = _SELECT_ITEMS.get(item)
                percentile = _PERCENTILE_RE.match(item)
                if name == "requests":
                    row["requests"] = len(events)
                elif name == "errors":
                    row["errors"] = sum(1 for e in events if e.httpResponseCode.startswith("5"))
                elif percentile:
                    levels = [int(p) for p in percentile.group(1).strip(", ").replace(" ", "").split(",")]
                    durations = [e.duration for e in events]
                    row["percentile.duration"] = {str(p): _percentile(durations, p) for p in levels}
                else:
                    return f"NRQL Syntax Error: Error at line 1: unexpected {item[:40]!r}"
            rows[host] = row
        return list(rows.values())
