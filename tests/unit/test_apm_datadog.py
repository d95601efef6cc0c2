"""The datadog provider: recorded v1 query answers, and end to end against the local FAKE of Datadog."""

from __future__ import annotations

import time

import pytest

from lrelease.apm import HostRef, ProviderError, Window, make_provider
from lrelease.apm.datadog import api_base, mean, parse_query_response, total
from tests.fakes.apm import FakeDatadog
from lrelease.errors import ConfigError
from tests.unit.recorded import load_case, recorded

CASES = recorded("datadog")
ENV = {"DD_API_KEY": "dd-api-0123456789", "DD_APP_KEY": "dd-app-9876543210"}
# The app's own metrics (Datadog has no metric names that fit every app: the queries are required).
QUERIES = {"requests_query": "sum:shop.http.requests{host:{host}}.as_count()",
           "errors_query": "sum:shop.http.requests{host:{host},status_class:5xx}.as_count()",
           "latency_queries": {"p95": "p95:shop.http.request.duration{host:{host}}"}}


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_recorded_answers(path):
    case, body = load_case(path)
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(ProviderError) as err:
            parse_query_response(case["status"], body)
        assert expect["error"] in str(err.value)
        return
    series = parse_query_response(case["status"], body)
    if "series" in expect:
        assert len(series) == expect["series"]
    if "total" in expect:
        assert total(series) == expect["total"]
    if "mean" in expect:
        assert mean(series) == pytest.approx(expect["mean"])


@pytest.mark.parametrize(("site", "base"), [
    ("datadoghq.com", "https://api.datadoghq.com"),
    ("app.datadoghq.com", "https://api.datadoghq.com"),
    ("us5.datadoghq.com", "https://api.us5.datadoghq.com"),
    ("datadoghq.eu", "https://api.datadoghq.eu"),
    ("ddog-gov.com", "https://api.ddog-gov.com"),
])
def test_site_to_api_base(site, base):
    assert api_base(site) == base


@pytest.fixture
def fake():
    with FakeDatadog(ENV["DD_API_KEY"], ENV["DD_APP_KEY"]) as dd:
        yield dd


def load(dd: FakeDatadog, host: str, now: float, ok: float, failed: float, durations: list[float]) -> None:
    for minute in range(5):
        at = now - 300 + minute * 60
        dd.add_points("shop.http.requests", {"host": host, "status_class": "2xx"}, [(at, ok)])
        dd.add_points("shop.http.requests", {"host": host, "status_class": "5xx"}, [(at, failed)])
        dd.add_distribution("shop.http.request.duration", {"host": host}, at, durations)


def test_end_to_end_against_the_fake(fake):
    # Given the fake holds 5 minutes of counts and latencies for node1 and node2 only
    now = time.time()
    load(fake, "node1", now, 98, 2, [0.05, 0.08, 0.1, 0.3])
    load(fake, "node2", now, 100, 0, [0.05, 0.06])
    provider = make_provider("datadog", {**QUERIES, "url": fake.url}, where="test", env=ENV)
    # When three hosts are fetched over the window
    got = provider.fetch([HostRef("node1"), HostRef("node2"), HostRef("node3")], Window(now - 400, now))
    # Then counts add up over the points, latency is the p95, and node3 is no data
    assert (got["node1"].requests, got["node1"].errors) == (500, 10)
    assert (got["node2"].requests, got["node2"].errors) == (500, 0)
    assert got["node1"].latency.quantile(0.95) == pytest.approx(0.3)
    assert got["node3"].no_data
    # And every request carried both keys
    assert all(r["api_key"] and r["app_key"] for r in fake.seen)


def test_wrong_keys_are_a_provider_error_without_the_keys(fake):
    env = {"DD_API_KEY": "wrong-api-key-value", "DD_APP_KEY": ENV["DD_APP_KEY"]}
    provider = make_provider("datadog", {**QUERIES, "url": fake.url}, where="test", env=env)
    with pytest.raises(ProviderError) as err:
        provider.fetch([HostRef("node1")], Window(0, 60))
    assert "HTTP 403: Forbidden" in str(err.value)
    assert "wrong-api-key-value" not in str(err.value) and ENV["DD_APP_KEY"] not in str(err.value)


@pytest.mark.parametrize(("status", "body", "times", "message"), [
    # rate limited on every attempt: retried, then the last answer is the error
    (429, {"errors": ["Too many requests"]}, 4, "HTTP 429: Too many requests (after 4 attempts in"),
    (200, {"status": "error", "error": "Query timed out", "series": []}, 1, "query failed: Query timed out"),
])
def test_error_shapes_from_the_fake(fake, status, body, times, message):
    fake.fail_next(status, body, times=times)
    provider = make_provider("datadog", {**QUERIES, "url": fake.url}, where="test", env=ENV)
    with pytest.raises(ProviderError) as err:
        provider.fetch([HostRef("node1")], Window(0, 60))
    assert message in str(err.value)


def test_a_bad_query_template_is_the_fakes_400(fake):
    provider = make_provider("datadog", {**QUERIES, "url": fake.url, "requests_query": "sum:x{host:{host}"},
                             where="t", env=ENV)
    with pytest.raises(ProviderError) as err:
        provider.fetch([HostRef("node1")], Window(0, 60))
    assert "HTTP 400: Error parsing query" in str(err.value)


def test_errors_missing_is_zero_only_when_asked(fake):
    now = time.time()
    fake.add_points("shop.http.requests", {"host": "node1", "status_class": "2xx"}, [(now - 10, 50)])
    settings = {**QUERIES, "url": fake.url, "latency_queries": None}
    assert make_provider("datadog", settings, where="t", env=ENV).fetch(
        [HostRef("node1")], Window(now - 60, now))["node1"].errors == 0
    strict = make_provider("datadog", {**settings, "errors_missing_is_zero": False}, where="t", env=ENV)
    assert strict.fetch([HostRef("node1")], Window(now - 60, now))["node1"].no_data


def test_a_server_echoing_the_key_cannot_leak_it_into_the_error():
    # Given a misbehaving server that quotes the request's key back in its error
    from tests.unit.loopback import serve

    def answer(request):
        return 400, {"errors": [f"bad key {request.headers.get('DD-API-KEY')} for this org"]}

    with serve(answer) as stub:
        provider = make_provider("datadog", {**QUERIES, "url": stub.url}, where="t", env=ENV)
        # When the query fails, Then the error says so without the key
        with pytest.raises(ProviderError) as err:
            provider.fetch([HostRef("node1")], Window(0, 60))
    assert "bad key *** for this org" in str(err.value)
    assert ENV["DD_API_KEY"] not in str(err.value)


def test_keys_never_show_in_reprs():
    provider = make_provider("datadog", QUERIES, where="t", env=ENV)
    text = repr(provider) + repr(provider.__dict__)
    assert ENV["DD_API_KEY"] not in text and ENV["DD_APP_KEY"] not in text


@pytest.mark.parametrize(("settings", "env", "key"), [
    (QUERIES, {"DD_API_KEY": "x"}, "app_key_env"),
    ({**QUERIES, "site": "datadog.example.com"}, ENV, "site"),
    ({**QUERIES, "api_key": "abc"}, ENV, "api_key"),
    ({**QUERIES, "latency_queries": {"p95x": "p95:m{host:{host}}"}}, ENV, "latency_queries.p95x"),
    ({**QUERIES, "latency_unit": "us"}, ENV, "latency_unit"),
])
def test_bad_settings_name_the_key(settings, env, key):
    with pytest.raises(ConfigError) as err:
        make_provider("datadog", settings, where="lrelease.yml: gate.apm", env=env)
    assert err.value.key == key


@pytest.mark.parametrize("missing", ["requests_query", "errors_query", "latency_queries"])
def test_the_queries_are_required_with_an_example(missing):
    # Given datadog settings without one of the queries (no metric names fit every app)
    settings = {k: v for k, v in QUERIES.items() if k != missing}
    # When the provider is built, Then one line names the key, shows an example and says why
    with pytest.raises(ConfigError) as err:
        make_provider("datadog", settings, where="lrelease.yml: environments.production.gate.provider", env=ENV)
    assert err.value.key == missing
    assert "e.g." in err.value.expected and err.value.expected.endswith(
        "no default: Datadog's metric names depend on the integration (required)")
