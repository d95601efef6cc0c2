"""The scrape provider: counter deltas between recorded /metrics pages, and the real demo app on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from lrelease.apm import HostRef, Window, make_provider
from lrelease.apm.expfmt import parse
from lrelease.apm.latency import INF
from lrelease.apm.transport import Reply
from lrelease.apm.scrape import (
    Reading,
    ReadingStore,
    ScrapeProvider,
    ScrapeSettings,
    increase,
    reading_from,
    summarize,
)
from lrelease.errors import ConfigError
from lrelease.sandbox.demoapp import gate as demo_gate
from lrelease.sandbox.demoapp.app import Metrics, Server, make_handler
from tests.unit.loopback import free_port_url

FIXTURES = Path(__file__).parent / "fixtures" / "apm" / "scrape"
SETTINGS = ScrapeSettings(**demo_gate.SCRAPE)  # the recorded pages are the demo app's


def reading(name: str, at: float):
    return reading_from(parse((FIXTURES / name).read_text()), SETTINGS, at)


def test_traffic_in_a_window_is_the_difference_of_two_readings():
    # Given two recorded pages of one demo app process, 60 s apart
    before, after = reading("demoapp_t0.txt", 1000.0), reading("demoapp_t1.txt", 1060.0)
    # When the window is summarized
    metrics = summarize("node1", increase(before, after), SETTINGS, 60.0)
    # Then only "/" counts (health and metrics routes are excluded): 610 requests, 10 of them 5xx
    assert (metrics.requests, metrics.errors) == (610, 10)
    # And the latency histogram holds the same 610 requests, bucket by bucket
    assert metrics.latency.count == 610
    assert dict(metrics.latency.buckets)[0.005] == 234 - 81  # le=0.005 grew from 81 to 234
    assert metrics.latency.buckets[-1][0] == INF


def test_a_restart_counts_from_zero_like_promql_increase():
    # Given a reading before the switch and one from the restarted process on the new build
    before, after = reading("demoapp_t1.txt", 1000.0), reading("demoapp_restarted.txt", 1100.0)
    # When summarized
    metrics = summarize("node1", increase(before, after), SETTINGS, 100.0)
    # Then the new process' counters are taken whole (not negative differences)
    assert (metrics.requests, metrics.errors) == (165, 15)
    assert metrics.latency.count == 165


@pytest.mark.parametrize(("settings", "requests", "errors"), [
    (ScrapeSettings(**{**demo_gate.SCRAPE, "exclude": {}}), 610 + 7 + 1, 10),  # health and metrics routes count
    (ScrapeSettings(**{**demo_gate.SCRAPE, "match": {"path": "/health"}, "exclude": {}}), 7, 0),
    (ScrapeSettings(**{**demo_gate.SCRAPE, "error_codes": "200"}), 610, 600),  # errors: the codes the regex names
])
def test_label_filters_choose_the_series(settings, requests, errors):
    before = reading_from(parse((FIXTURES / "demoapp_t0.txt").read_text()), settings, 0)
    after = reading_from(parse((FIXTURES / "demoapp_t1.txt").read_text()), settings, 60)
    metrics = summarize("n", increase(before, after), settings, 60)
    assert (metrics.requests, metrics.errors) == (requests, errors)


def otel_page(ok: int, failed: int) -> str:
    """A /metrics page as an OpenTelemetry SDK's Prometheus exporter writes http.server.request.duration."""
    lines = ["# TYPE http_server_request_duration_seconds histogram"]
    for code, count in (("200", ok), ("503", failed)):
        labels = f'http_request_method="GET",http_response_status_code="{code}",http_route="/cart"'
        lines += [f'http_server_request_duration_seconds_bucket{{{labels},le="0.1"}} {count * 9 // 10}',
                  f'http_server_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}',
                  f"http_server_request_duration_seconds_sum{{{labels}}} {count * 0.05}",
                  f"http_server_request_duration_seconds_count{{{labels}}} {count}"]
    return "\n".join([*lines, "process_start_time_seconds 1700000000", ""])


def test_the_defaults_read_the_opentelemetry_http_server_metric():
    # Given two /metrics pages of an app instrumented by OpenTelemetry, a minute apart
    before = reading_from(parse(otel_page(100, 0)), ScrapeSettings(), 0)
    after = reading_from(parse(otel_page(1100, 10)), ScrapeSettings(), 60)
    # When the default settings summarize the minute
    metrics = summarize("n", increase(before, after), ScrapeSettings(), 60)
    # Then the requests are the histogram's count, the errors its 5xx, and the latency its buckets
    assert (metrics.requests, metrics.errors) == (1010, 10)
    assert metrics.latency.count == 1010


def test_the_defaults_on_an_app_with_its_own_names_say_which_keys_to_set():
    before, after = (reading_from(parse((FIXTURES / name).read_text()), ScrapeSettings(), t)
                     for name, t in (("demoapp_t0.txt", 0), ("demoapp_t1.txt", 60)))
    metrics = summarize("n", increase(before, after), ScrapeSettings(), 60)
    assert metrics.no_data and "no http_server_request_duration_seconds_count series" in metrics.detail
    assert "sets requests_metric, latency_metric, code_label" in metrics.detail


def test_a_page_without_the_request_metric_is_no_data():
    empty = reading_from(parse("process_start_time_seconds 1\n"), SETTINGS, 0)
    assert summarize("n", increase(empty, empty), SETTINGS, 1).no_data


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pages(*names: str):
    """A getter that serves recorded pages in turn (the last one repeats)."""
    served = []

    def get(url: str):
        served.append(url)
        return Reply(200, (FIXTURES / names[min(len(served) - 1, len(names) - 1)]).read_text())

    get.served = served
    return get


def test_fetch_uses_the_reading_taken_at_the_window_start():
    # Given a host marked at t=1000 and fetched at t=1060
    clock = Clock()
    getter = pages("demoapp_t0.txt", "demoapp_t1.txt")
    provider = ScrapeProvider(SETTINGS, get=getter, clock=clock)
    host = HostRef("node1", url="http://10.0.0.1:8080/")
    provider.mark([host])
    clock.now = 1060.0
    # When the window since the mark is fetched
    metrics = provider.fetch([host], Window(1000.0, 1060.0))["node1"]
    # Then it holds the difference, and the URL asked was the host's /metrics
    assert (metrics.requests, metrics.errors, metrics.seconds) == (610, 10, 60.0)
    assert getter.served == ["http://10.0.0.1:8080/metrics"] * 2
    assert provider.store.nearest("node1", 1060.0, 1) is not None  # this reading is kept for the next look


def test_without_an_earlier_reading_there_is_no_data_but_the_reading_is_kept():
    clock = Clock()
    provider = ScrapeProvider(SETTINGS, get=pages("demoapp_t0.txt", "demoapp_t1.txt"), clock=clock)
    host = HostRef("node1", url="http://10.0.0.1:8080")
    first = provider.fetch([host], Window(900.0, 1000.0))["node1"]
    assert first.no_data and "earlier reading" in first.detail
    clock.now = 1060.0
    assert provider.fetch([host], Window(1000.0, 1060.0))["node1"].requests == 610


def test_a_past_window_is_answered_from_stored_readings_only():
    # Given readings at t=1000 and t=1060, and the clock now much later
    clock = Clock()
    getter = pages("demoapp_t0.txt", "demoapp_t1.txt")
    provider = ScrapeProvider(SETTINGS, get=getter, clock=clock)
    host = HostRef("node1", url="http://10.0.0.1:8080")
    provider.mark([host])
    clock.now = 1060.0
    provider.mark([host])
    clock.now = 5000.0
    # When the past window (a baseline) is fetched
    metrics = provider.fetch([host], Window(1000.0, 1060.0))["node1"]
    # Then no new scrape happened and the stored readings answered
    assert len(getter.served) == 2 and metrics.requests == 610


def test_past_windows_take_the_nearest_readings_within_half_the_window():
    # Given readings taken at looks (t=1000, 1180), not at a baseline slice's edges
    clock = Clock()
    provider = ScrapeProvider(SETTINGS, get=pages("demoapp_t0.txt", "demoapp_t1.txt"), clock=clock)
    host = HostRef("node1", url="http://x")
    provider.mark([host])
    clock.now = 1180.0
    provider.mark([host])
    clock.now = 9000.0
    # When a slice 1050..1150 is asked for, Then the readings around it answer, with their real span
    metrics = provider.fetch([host], Window(1050.0, 1150.0))["node1"]
    assert metrics.requests == 610 and metrics.seconds == 180.0
    # But a slice far from any reading is no data
    assert provider.fetch([host], Window(5000.0, 5100.0))["node1"].no_data


def test_an_unreachable_host_is_reported_as_such_not_as_an_error():
    provider = ScrapeProvider(SETTINGS, clock=Clock())
    metrics = provider.fetch([HostRef("gone", url=free_port_url())], Window(990.0, 1000.0))["gone"]
    assert not metrics.reachable and "cannot reach" in metrics.detail


def test_garbage_metrics_are_no_data_with_the_reason():
    provider = ScrapeProvider(SETTINGS, get=lambda url: Reply(200, "this is { not metrics"), clock=Clock())
    provider.store.add("n", reading("demoapp_t0.txt", 999.0))
    metrics = provider.fetch([HostRef("n", url="http://x")], Window(999.0, 1000.0))["n"]
    assert metrics.no_data and metrics.reachable and "not valid exposition format" in metrics.detail


def test_a_metrics_page_answering_500_is_no_data():
    provider = ScrapeProvider(SETTINGS, get=lambda url: Reply(500, "boom"), clock=Clock())
    metrics = provider.fetch([HostRef("n", url="http://x")], Window(999.0, 1000.0))["n"]
    assert metrics.no_data and metrics.reachable and "HTTP 500" in metrics.detail


def test_readings_persist_in_a_json_file_shared_between_providers(tmp_path):
    # Given one provider (one Ansible task) that marked a host
    path = tmp_path / "readings.json"
    first = ScrapeProvider(ScrapeSettings(**demo_gate.SCRAPE, state_path=str(path)), get=pages("demoapp_t0.txt"),
                           clock=Clock(1000.0))
    first.mark([HostRef("node1", url="http://x")])
    # When another provider (the next task) fetches the window since then
    second = ScrapeProvider(ScrapeSettings(**demo_gate.SCRAPE, state_path=str(path)), get=pages("demoapp_t1.txt"),
                            clock=Clock(1060.0))
    metrics = second.fetch([HostRef("node1", url="http://x")], Window(1000.0, 1060.0))["node1"]
    # Then the first reading was found in the file, and each reading is one JSON line of it
    assert metrics.requests == 610
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["host"], line["at"]) for line in lines] == [("node1", 1000.0), ("node1", 1060.0)]


def _add_readings(path: str, host: str, count: int) -> None:
    store = ReadingStore(path)
    for i in range(count):
        store.add(host, Reading(float(i), None, {}))


def test_processes_adding_readings_side_by_side_lose_none(tmp_path):
    # Given the gate tasks of one wave, each its own process, writing one readings file at once
    import multiprocessing

    path = str(tmp_path / "readings.json")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_add_readings, args=(path, f"node{i}", 40)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    # Then every reading of every process is in the file
    assert [w.exitcode for w in workers] == [0] * 4
    store = ReadingStore(path)
    assert {f"node{i}": len(store.readings(f"node{i}")) for i in range(4)} == {f"node{i}": 40 for i in range(4)}
    assert len(Path(path).read_text().splitlines()) == 160  # every line whole


def test_a_past_window_is_sliced_at_the_readings_kept():
    # Given readings of a host every 15 s from t=1000 to t=1090, and one after the window
    clock = Clock()
    provider = ScrapeProvider(SETTINGS, get=pages("demoapp_t0.txt"), clock=clock)
    host = HostRef("node1", url="http://x")
    for at in (1000.0, 1015.0, 1030.0, 1045.0, 1060.0, 1075.0, 1090.0, 1200.0):
        clock.now = at
        provider.mark([host])
    # When the window 960..1100 is cut into about 7 slices (20 s at least)
    slices = provider.slices([host], Window(960.0, 1100.0), 7)
    # Then each slice starts and ends on a reading inside the window, none shorter than 20 s,
    # the short tail joins the last one, and the window's empty start is not pretended to
    assert [(w.start, w.end) for w in slices] == [(1000.0, 1030.0), (1030.0, 1060.0), (1060.0, 1090.0)]
    # And a window with fewer than two readings has no slices
    assert provider.slices([host], Window(1100.0, 1190.0), 5) == []
    assert provider.slices([host], Window(1040.0, 1050.0), 5) == []


def test_a_corrupt_readings_file_starts_afresh(tmp_path):
    path = tmp_path / "readings.json"
    path.write_text("{not json")
    assert ReadingStore(str(path)).nearest("x", 0, 10) is None


@pytest.mark.parametrize(("settings", "key"), [
    ({"exclude": {"path": "("}}, "exclude.path"),
    ({"error_codes": "["}, "error_codes"),
    ({"metrics_path": "metrics"}, "metrics_path"),
    ({"colour": "blue"}, "colour"),
    ({"match": ["path"]}, "match"),
])
def test_bad_scrape_settings_name_the_key(settings, key):
    with pytest.raises(ConfigError) as err:
        make_provider("scrape", settings, where="lrelease.yml: environments.production.gate.apm", env={})
    assert err.value.key == key and err.value.where.startswith("lrelease.yml")


@pytest.fixture
def demo_apps():
    """Three real demo app processes' HTTP servers, in threads on 127.0.0.1."""
    servers, metrics = [], []
    for i, behaviour in enumerate(({}, {}, {"error_rate": 1.0})):
        m = Metrics(f"1.0.{i}")
        server = Server(("127.0.0.1", 0), make_handler(f"1.0.{i}", {"error_rate": 0.0, "latency_ms": 0.0,
                                                                    **behaviour}, m))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        metrics.append(m)
    yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


def test_end_to_end_against_real_demo_apps_on_loopback(demo_apps):
    import requests

    # Given three demo apps, the third failing every request, and a reading of each
    hosts = [HostRef(f"node{i}", url=url) for i, url in enumerate(demo_apps)]
    provider = make_provider("scrape", demo_gate.SCRAPE, where="test", env={})
    provider.mark(hosts)
    start = provider.store.nearest("node0", 0, 1e12).at
    # When each serves 20 requests and the window is fetched
    session = requests.Session()
    session.trust_env = False
    for url in demo_apps:
        for _ in range(20):
            session.get(url + "/", timeout=5)
    import time

    got = provider.fetch(hosts, Window(start, time.time()))
    # Then each host shows exactly its 20 requests; the third all 5xx; latency histograms too
    assert [got[h.name].requests for h in hosts] == [20, 20, 20]
    assert [got[h.name].errors for h in hosts] == [0, 0, 20]
    assert all(got[h.name].latency.count == 20 for h in hosts)


def test_no_provider_default_names_the_demo_app_only_the_sandbox_config_does():
    # Given every provider's default settings, and the gate the sandbox writes into its lrelease.yml
    from dataclasses import asdict

    from lrelease.apm import datadog, newrelic, prometheus
    from lrelease.sandbox.config import SandboxConfig
    from lrelease.sandbox.fleet import sandbox_gate

    defaults = [asdict(ScrapeSettings()), asdict(prometheus.PrometheusSettings(url="http://x")),
                asdict(datadog.DatadogSettings(base_url="http://x")), newrelic.DEFAULT_NRQL]
    # Then no default mentions the demo app, and the sandbox's config names its metrics itself
    assert "demoapp" not in json.dumps(defaults)
    for provider in ("scrape", "prometheus"):
        settings = sandbox_gate(SandboxConfig(), provider)["provider"]
        assert settings["kind"] == provider and "demoapp_http_requests_total" in json.dumps(settings)


def test_an_openmetrics_metrics_page_is_read_over_http_by_its_content_type():
    # Given an app on loopback that answers /metrics in OpenMetrics (exemplars, # EOF) and
    # counts one more request between two reads
    from tests.unit.loopback import serve
    from tests.unit.test_apm_expfmt import OM_PAGE, OPENMETRICS

    pages_served = [OM_PAGE, OM_PAGE.replace('code="200"} 1027', 'code="200"} 1028')]

    def answer(request):
        return 200, pages_served[min(len(stub.requests), 2) - 1], {"Content-Type": OPENMETRICS}

    settings = ScrapeSettings(requests_metric="demoapp_http_requests_total", code_label="code",
                              latency_metric="demoapp_http_request_duration_seconds")
    with serve(answer) as stub:
        clock = Clock()
        provider = ScrapeProvider(settings, clock=clock)  # its own HTTP client
        host = HostRef("node1", url=stub.url)
        # When it is marked, then fetched a minute later
        provider.mark([host])
        clock.now = 1060.0
        got = provider.fetch([host], Window(1000.0, 1060.0))["node1"]
    # Then the OpenMetrics pages were asked for as acceptable and read: one request, no error
    assert "application/openmetrics-text" in stub.requests[0].headers["Accept"]
    assert (got.no_data, got.requests, got.errors) == (False, 1.0, 0.0), got.detail
