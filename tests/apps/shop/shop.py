#!/usr/bin/env python3
"""shop: the second app of the test suite, written for lrelease's docs rather than for its source.

Unlike the demo app in every way the docs cover: it listens on 9300 (SHOP_PORT), on the node's
own address only; its health path is /healthz answering {"ok": true}; its metrics carry the
OpenTelemetry HTTP-server names a Prometheus exporter shows (the scrape provider's defaults:
http_server_request_duration_seconds{http_route, http_response_status_code, ...} and
process_start_time_seconds); it logs to log/shop.log in its release (a shared path). How a build
misbehaves on purpose is read from shop.json next to this file: error_rate (share of GET / answered
500) and extra_latency_ms (added to every GET /).

Standard library only. Bounded: it exits by itself after SHOP_MAX_SECONDS (default 3600), so a
leftover of a killed test run does not live on.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip()
BEHAVIOUR = json.loads((HERE / "shop.json").read_text())
# OpenTelemetry's default explicit bucket boundaries for http.server.request.duration, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
METRIC = "http_server_request_duration_seconds"
STARTED = time.time()


class Histogram:
    """One histogram per (route, status code), as an OpenTelemetry exporter would keep it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.series: dict[tuple[str, int], list] = {}  # -> [bucket counts..., count, sum]

    def observe(self, route: str, code: int, seconds: float) -> None:
        with self.lock:
            s = self.series.setdefault((route, code), [0] * len(BUCKETS) + [0, 0.0])
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    s[i] += 1
            s[-2] += 1
            s[-1] += seconds

    def render(self) -> str:
        lines = [f"# HELP {METRIC} Duration of HTTP server requests.", f"# TYPE {METRIC} histogram"]
        with self.lock:
            for (route, code), s in sorted(self.series.items()):
                labels = f'http_request_method="GET",http_route="{route}",http_response_status_code="{code}"'
                for i, bound in enumerate(BUCKETS):
                    lines.append(f'{METRIC}_bucket{{{labels},le="{bound}"}} {s[i]}')
                lines.append(f'{METRIC}_bucket{{{labels},le="+Inf"}} {s[-2]}')
                lines.append(f"{METRIC}_count{{{labels}}} {s[-2]}")
                lines.append(f"{METRIC}_sum{{{labels}}} {s[-1]}")
        lines += ["# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
                  "# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {STARTED}"]
        return "\n".join(lines) + "\n"


HISTOGRAM = Histogram()


class Handler(BaseHTTPRequestHandler):
    server_version = f"shop/{VERSION}"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        start = time.monotonic()
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            code, ctype, body = 200, "application/json", b'{"ok": true}'
        elif path == "/metrics":
            code, ctype, body = 200, "text/plain; version=0.0.4", HISTOGRAM.render().encode()
        elif path == "/about":
            code, ctype, body = 200, "application/json", json.dumps({"app": "shop", "version": VERSION}).encode()
        elif path == "/":
            time.sleep(random.uniform(0.002, 0.008) + BEHAVIOUR.get("extra_latency_ms", 0) / 1000)
            if random.random() < BEHAVIOUR.get("error_rate", 0):
                code, ctype, body = 500, "application/json", b'{"error": "out of stock (on purpose)"}'
            else:
                code, ctype, body = 200, "application/json", json.dumps({"items": 3, "version": VERSION}).encode()
        else:
            path, code, ctype, body = "unmatched", 404, "text/plain", b"not found\n"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        HISTOGRAM.observe(path, code, time.monotonic() - start)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        pass  # no access log: the shared log/ holds start and stop lines only


def main() -> int:
    address, port = os.environ["SHOP_ADDRESS"], int(os.environ.get("SHOP_PORT", "9300"))
    max_seconds = float(os.environ.get("SHOP_MAX_SECONDS", "3600"))
    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} shop {VERSION} listening on {address}:{port}",
          flush=True)
    timer = threading.Timer(max_seconds, server.shutdown)
    timer.daemon = True
    timer.start()
    server.serve_forever(poll_interval=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
