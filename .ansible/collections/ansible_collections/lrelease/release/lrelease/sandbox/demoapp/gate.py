"""The demo app's metric names, as the gate providers' settings.

The product's defaults follow conventions (OpenTelemetry's HTTP server metric through a
Prometheus exporter; Prometheus' ``instance`` label: docs/apm-gate.md). The demo app names its
own metrics (``demoapp_http_requests_total{path, code}``, the histogram
``demoapp_http_request_duration_seconds{path}``) and the sandbox's Prometheus labels each node
``node``, so the sandbox's generated lrelease.yml (``lrelease.sandbox.fleet.sandbox_gate``) and
the benchmarks give these settings, as any team with its own names would.
"""

from __future__ import annotations

from typing import Any

REQUESTS = "demoapp_http_requests_total"
LATENCY = "demoapp_http_request_duration_seconds"
NOT_TRAFFIC = "/metrics|/health"  # routes the gate's own probes and Prometheus hit

# settings of the ``scrape`` provider
SCRAPE: dict[str, Any] = {"requests_metric": REQUESTS, "latency_metric": LATENCY, "code_label": "code",
                          "exclude": {"path": NOT_TRAFFIC}}

_SEL = f'node="{{host}}",path!~"{NOT_TRAFFIC}"'
REQUESTS_QUERY = f"sum(increase({REQUESTS}{{{_SEL}}}[{{window}}s]))"
ERRORS_QUERY = f'sum(increase({REQUESTS}{{{_SEL},code=~"5.."}}[{{window}}s])) or (0 * {REQUESTS_QUERY})'
LATENCY_QUERY = f"sum by (le) (increase({LATENCY}_bucket{{{_SEL}}}[{{window}}s]))"


def prometheus(url: str) -> dict[str, Any]:
    """Settings of the ``prometheus`` provider for the sandbox's Prometheus at ``url``."""
    return {"url": url, "requests_query": REQUESTS_QUERY, "errors_query": ERRORS_QUERY, "latency_query": LATENCY_QUERY}
