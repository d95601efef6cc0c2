#!/usr/bin/env python3
"""demoapp: the small web app the sandbox fleet deploys. Standard library only.

It reads ``VERSION`` and ``behaviour.json`` from its own directory (both written by
``lrelease.sandbox.demoapp.build``); the behaviour file lets a build misbehave on purpose.
Routes: ``/`` (page), ``/health`` (JSON), ``/version`` (text), ``/metrics`` (Prometheus).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULTS = {"error_rate": 0.0, "latency_ms": 0.0, "health_fail": False, "start_fail": False}
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ROUTES = ("/", "/health", "/version", "/metrics")
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def load_behaviour(directory: Path) -> dict:
    """Defaults overlaid with ``behaviour.json`` when it exists."""
    try:
        found = json.loads((directory / "behaviour.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        found = {}
    return {**DEFAULTS, **found}


def load_version(directory: Path) -> str:
    try:
        return (directory / "VERSION").read_text(encoding="utf-8").strip() or "unknown"
    except FileNotFoundError:
        return "unknown"


class Metrics:
    """Request counters and latency histograms, rendered in text format 0.0.4."""

    def __init__(self, version: str) -> None:
        self._lock = threading.Lock()
        self._version = version
        self._started = time.time()
        self._requests: dict[tuple[str, int], int] = {}
        self._buckets: dict[str, list[int]] = {}  # per path: count per bucket, plus +Inf
        self._sums: dict[str, float] = {}

    def observe(self, path: str, code: int, seconds: float | None) -> None:
        with self._lock:
            self._requests[(path, code)] = self._requests.get((path, code), 0) + 1
            if seconds is None:
                return
            counts = self._buckets.setdefault(path, [0] * (len(BUCKETS) + 1))
            index = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
            counts[index] += 1
            self._sums[path] = self._sums.get(path, 0.0) + seconds

    def render(self) -> str:
        with self._lock:
            requests = sorted(self._requests.items())
            histograms = sorted((path, list(counts), self._sums[path]) for path, counts in self._buckets.items())
        lines = [
            "# HELP demoapp_http_requests_total HTTP requests served, by route and status code.",
            "# TYPE demoapp_http_requests_total counter",
        ]
        lines += [f'demoapp_http_requests_total{{path="{p}",code="{c}"}} {n}' for (p, c), n in requests]
        lines += [
            "# HELP demoapp_http_request_duration_seconds Time to serve a request, by route.",
            "# TYPE demoapp_http_request_duration_seconds histogram",
        ]
        for path, counts, total in histograms:
            cumulative = 0
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts):
                cumulative += count
                lines.append(f'demoapp_http_request_duration_seconds_bucket{{path="{path}",le="{bound}"}} {cumulative}')
            lines.append(f'demoapp_http_request_duration_seconds_sum{{path="{path}"}} {total!r}')
            lines.append(f'demoapp_http_request_duration_seconds_count{{path="{path}"}} {cumulative}')
        lines += [
            "# HELP demoapp_build_info The build this process serves.",
            "# TYPE demoapp_build_info gauge",
            f'demoapp_build_info{{version="{self._version}"}} 1',
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {self._started!r}",
        ]
        return "\n".join(lines) + "\n"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_handler(version: str, behaviour: dict, metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    hostname = socket.gethostname()

    class Handler(BaseHTTPRequestHandler):
        server_version = "demoapp"

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            started = time.monotonic()
            route = self.path.split("?", 1)[0]
            route = route if route in ROUTES else "other"
            if route == "/":
                time.sleep(float(behaviour["latency_ms"]) / 1000.0)
                if random.random() < float(behaviour["error_rate"]):
                    code, body, ctype = 500, f"demoapp {version} failed on {hostname}\n", "text/plain"
                else:
                    code, body, ctype = 200, f"demoapp {version} on {hostname}\n", "text/plain"
            elif route == "/health":
                code = 503 if behaviour["health_fail"] else 200
                body = json.dumps({"status": "fail" if code == 503 else "pass", "version": version})
                ctype = "application/json"
            elif route == "/version":
                code, body, ctype = 200, version + "\n", "text/plain"
            elif route == "/metrics":
                metrics.observe(route, 200, None)
                code, body, ctype = 200, metrics.render(), METRICS_TYPE
            else:
                code, body, ctype = 404, "not found\n", "text/plain"
            self._send(code, body, ctype)
            if route != "/metrics":
                metrics.observe(route, code, time.monotonic() - started)

        def _send(self, code: int, body: str, ctype: str) -> None:
            data = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", ctype if "charset" in ctype else f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: no line per request."""

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    version = load_version(HERE)
    try:
        behaviour = load_behaviour(HERE)
    except (OSError, ValueError) as err:
        print(f"demoapp {version}: cannot read behaviour.json: {err}", file=sys.stderr)
        return 3
    if behaviour["start_fail"]:
        print(f"demoapp {version}: refusing to start (start_fail is set in behaviour.json)", file=sys.stderr)
        return 3
    server = Server((args.host, args.port), make_handler(version, behaviour, Metrics(version)))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"demoapp {version} listening on {args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
