"""The prometheus provider: recorded API answers (documented envelope) and a stub server on 127.0.0.1."""

from __future__ import annotations

import math

import pytest

from lrelease.apm import HostRef, ProviderError, Window, make_provider
from lrelease.apm.prometheus import (
    DEFAULT_ERRORS,
    DEFAULT_REQUESTS,
    buckets_from,
    parse_query_response,
    render,
    single_value,
)
from lrelease.errors import ConfigError
from tests.unit.loopback import free_port_url, serve
from tests.unit.recorded import load_case, recorded

CASES = recorded("prometheus")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_recorded_answers(path):
    # Given a recorded /api/v1/query answer
    case, body = load_case(path)
    expect = case["expect"]
    # When it is parsed
    if "error" in expect:
        # Then an error shape is a ProviderError naming what went wrong
        with pytest.raises(ProviderError) as err:
            parse_query_response(case["status"], body)
        assert expect["error"] in str(err.value) and str(err.value).startswith("prometheus: ")
        return
    vector = parse_query_response(case["status"], body)
    # Then the samples, the single value (None = no data, never 0) and any histogram come out
    if "samples" in expect:
        assert [[labels, value] for labels, value in vector] == expect["samples"]
    if "single" in expect:
        assert single_value(vector) == expect["single"]
    if "buckets" in expect:
        lat = buckets_from(vector)
        assert [[le if le != math.inf else "inf", c] for le, c in lat.buckets] == expect["buckets"]
        assert lat.quantile(0.95) * 1000 == pytest.approx(expect["p95_ms"], abs=0.01)


def test_templates_get_the_host_escaped_and_the_window_in_whole_seconds():
    query = render('x{node="{host}"}[{window}s]', 'we"ird\\node', Window(100.0, 160.4))
    assert query == 'x{node="we\\"ird\\\\node"}[61s]'
    assert "or (0 * sum(increase(" in DEFAULT_ERRORS  # zero errors only when the host has traffic


def test_the_default_queries_follow_the_conventions():
    # Given a host named like a DNS name (dots are regex metacharacters)
    query = render(DEFAULT_REQUESTS, "web-1.shop.example", Window(0.0, 60.0))
    # Then the default reads OpenTelemetry's request-duration histogram's count, on Prometheus'
    # instance label (the target "<host>:<port>"), the host's dots escaped for the regex
    assert query == ('sum(increase(http_server_request_duration_seconds_count'
                     '{instance=~"web\\\\-1\\\\.shop\\\\.example(:[0-9]+)?"}[60s]))')
    assert 'http_response_status_code=~"5.."' in DEFAULT_ERRORS


def answers(by_query):
    """A stub Prometheus: answers each query by the first key it contains; checks nothing else."""
    def answer(request):
        if request.path != "/api/v1/query":
            return 404, "not found"
        for needle, value in by_query.items():
            if needle in request.query["query"]:
                result = [] if value is None else value
                return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}
        return 400, {"status": "error", "errorType": "bad_data", "error": "unexpected query"}
    return answer


def vec(value, **labels):
    return {"metric": labels, "value": [1712345678.0, str(value)]}


def test_fetch_end_to_end_against_a_stub_prometheus():
    # Given a Prometheus that knows node1 (traffic, errors, latency) and nothing of node2
    by_query = {'_bucket{instance=~"node1(:[0-9]+)?"}': [vec(500, le="0.1"), vec(600, le="+Inf")],
                'instance=~"node1(:[0-9]+)?",http_response_status_code=~"5.."': [vec(3)],
                '_count{instance=~"node1(:[0-9]+)?"}[': [vec(600)],
                'instance=~"node2': None}  # the first needle a query contains answers it
    with serve(answers(by_query)) as stub:
        provider = make_provider("prometheus", {"url": stub.url}, where="test", env={})
        # When both are fetched over a window
        got = provider.fetch([HostRef("node1"), HostRef("node2")], Window(1000.0, 1060.0))
    # Then node1 has numbers and node2 is no data (an empty result is never zero)
    assert (got["node1"].requests, got["node1"].errors, got["node1"].latency.count) == (600, 3, 600)
    assert got["node2"].no_data and "no requests series" in got["node2"].detail
    # And each query was evaluated at the window's end
    assert {r.query["time"] for r in stub.requests} == {"1060.000"}


def test_bearer_token_comes_from_the_environment_and_is_sent_as_a_header():
    seen = []

    def answer(request):
        seen.append(request.headers.get("Authorization"))
        return 200, {"status": "success", "data": {"resultType": "vector", "result": []}}

    with serve(answer) as stub:
        provider = make_provider("prometheus", {"url": stub.url, "bearer_token_env": "PROM_TOKEN"},
                                 where="test", env={"PROM_TOKEN": "s3cr3t-token"})
        provider.fetch([HostRef("n")], Window(0.0, 60.0))
    assert seen == ["Bearer s3cr3t-token"]
    assert "s3cr3t" not in repr(provider)


def test_basic_auth_and_an_auth_failure_without_leaking_the_password():
    def answer(request):
        return 401, "Unauthorized: " + request.headers.get("Authorization", "")  # a server echoing the header

    with serve(answer) as stub:
        provider = make_provider("prometheus", {"url": stub.url, "basic_user_env": "PU", "basic_password_env": "PP"},
                                 where="test", env={"PU": "ops", "PP": "hunter2-password"})
        with pytest.raises(ProviderError) as err:
            provider.fetch([HostRef("n")], Window(0.0, 60.0))
    assert "HTTP 401" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_prometheus_down_is_a_provider_error_not_no_data():
    provider = make_provider("prometheus", {"url": free_port_url()}, where="test", env={})
    with pytest.raises(ProviderError) as err:
        provider.fetch([HostRef("n")], Window(0.0, 60.0))
    assert "cannot reach" in str(err.value)


@pytest.mark.parametrize(("settings", "env", "key"), [
    ({}, {}, "url"),
    ({"url": "ftp://x"}, {}, "url"),
    ({"url": "http://user:pw@prom:9090"}, {}, "url"),
    ({"url": "http://p", "requests_query": "sum(x)"}, {}, "requests_query"),
    ({"url": "http://p", "bearer_token_env": "TOKEN"}, {}, "bearer_token_env"),  # not set
    ({"url": "http://p", "bearer_token_env": "not a name"}, {"x": "y"}, "bearer_token_env"),
    ({"url": "http://p", "token": "abc"}, {}, "token"),  # secrets never in the file
    ({"url": "http://p", "timeout": 0}, {}, "timeout"),
])
def test_bad_settings_name_the_key(settings, env, key):
    with pytest.raises(ConfigError) as err:
        make_provider("prometheus", settings, where="lrelease.yml: gate.apm", env=env)
    assert err.value.key == key
    assert "abc" not in str(err.value)


def test_an_unknown_provider_kind_is_refused():
    with pytest.raises(ConfigError) as err:
        make_provider("zabbix", {}, where="lrelease.yml", env={})
    assert err.value.key == "provider" and "scrape" in str(err.value)
