"""The newrelic provider: recorded NerdGraph answers, and end to end against the local FAKE of New Relic."""

from __future__ import annotations

import time

import pytest

from lrelease.apm import HostRef, ProviderError, Window, make_provider
from tests.fakes.apm import FakeNewRelic, Transaction
from lrelease.apm.newrelic import (
    ENDPOINTS,
    metrics_from_rows,
    parse_nrql_response,
    render,
)
from lrelease.errors import ConfigError
from tests.unit.recorded import load_case, recorded

CASES = recorded("newrelic")
KEY = "NRAK-0123456789ABCDEF"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_recorded_answers(path):
    case, body = load_case(path)
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(ProviderError) as err:
            parse_nrql_response(case["status"], body)
        assert expect["error"] in str(err.value)
        return
    rows = parse_nrql_response(case["status"], body)
    assert len(rows) == expect["rows"]
    got = metrics_from_rows(rows, [HostRef(h) for h in case["hosts"]], 60.0)
    for host, want in expect["metrics"].items():
        if want.get("no_data"):
            assert got[host].no_data
        else:
            assert (got[host].requests, got[host].errors) == (want["requests"], want["errors"])
            assert got[host].latency.quantile(0.95) == want["p95"]


def test_nrql_gets_quoted_hosts_and_millisecond_bounds():
    nrql = render("WHERE host IN ({hosts}) SINCE {start_ms} UNTIL {end_ms}", [HostRef("a"), HostRef("b", query_name="b.lan")],
                  Window(1.5, 2.0))
    assert nrql == "WHERE host IN ('a', 'b.lan') SINCE 1500 UNTIL 2000"
    with pytest.raises(ProviderError):
        render("{hosts}", [HostRef("x' OR 1=1 --")], Window(0, 1))


@pytest.fixture
def fake():
    with FakeNewRelic(KEY, 1234567) as nr:
        yield nr


def test_end_to_end_against_the_fake(fake):
    # Given transactions for node1 (2% 5xx) and node2, none for node3
    now = time.time()
    fake.add([Transaction(now - 100 + i * 0.5, "node1", 0.01 * (i % 20 + 1), "503" if i % 50 == 0 else "200")
              for i in range(100)])
    fake.add([Transaction(now - 100 + i, "node2", 0.02) for i in range(50)])
    provider = make_provider("newrelic", {"url": fake.url + "/graphql", "account_id": 1234567}, where="t",
                             env={"NEW_RELIC_API_KEY": KEY})
    # When all three are fetched in one NRQL query
    got = provider.fetch([HostRef("node1"), HostRef("node2"), HostRef("node3")], Window(now - 200, now))
    # Then requests, errors and percentiles come back per host, and node3 is no data
    assert (got["node1"].requests, got["node1"].errors) == (100, 2)
    assert got["node1"].latency.quantile(0.95) == pytest.approx(0.19)
    assert (got["node2"].requests, got["node2"].errors) == (50, 0)
    assert got["node3"].no_data
    assert len(fake.seen) == 1 and fake.seen[0]["api_key"]


def test_a_bad_key_is_a_provider_error_without_the_key(fake):
    provider = make_provider("newrelic", {"url": fake.url + "/graphql", "account_id": 1234567}, where="t",
                             env={"NEW_RELIC_API_KEY": "NRAK-WRONG-KEY-VALUE"})
    with pytest.raises(ProviderError) as err:
        provider.fetch([HostRef("node1")], Window(0, 60))
    assert "HTTP 401" in str(err.value) and "BAD_API_KEY" in str(err.value)
    assert "NRAK-WRONG" not in str(err.value)


def test_graphql_errors_inside_http_200_are_provider_errors(fake):
    # Given a query the API rejects (a syntax error comes back with HTTP 200)
    provider = make_provider("newrelic", {"url": fake.url + "/graphql", "account_id": 1234567,
                                          "nrql": "SELEKT nonsense WHERE {hosts} {start_ms} {end_ms}"},
                             where="t", env={"NEW_RELIC_API_KEY": KEY})
    # When fetched, Then it is an error, never data
    with pytest.raises(ProviderError) as err:
        provider.fetch([HostRef("node1")], Window(0, 60))
    assert "HTTP 200, GraphQL error: INVALID_INPUT: NRQL Syntax Error" in str(err.value)


def test_an_account_without_access_is_a_provider_error(fake):
    provider = make_provider("newrelic", {"url": fake.url + "/graphql", "account_id": 42}, where="t",
                             env={"NEW_RELIC_API_KEY": KEY})
    with pytest.raises(ProviderError) as err:
        provider.fetch([HostRef("node1")], Window(0, 60))
    assert "FORBIDDEN" in str(err.value)


def test_regions_pick_the_documented_endpoints():
    us = make_provider("newrelic", {"account_id": 1}, where="t", env={"NEW_RELIC_API_KEY": KEY})
    eu = make_provider("newrelic", {"account_id": 1, "region": "eu"}, where="t", env={"NEW_RELIC_API_KEY": KEY})
    assert us.settings.endpoint == ENDPOINTS["us"] == "https://api.newrelic.com/graphql"
    assert eu.settings.endpoint == "https://api.eu.newrelic.com/graphql"
    assert KEY not in repr(us)


@pytest.mark.parametrize(("settings", "key"), [
    ({}, "account_id"),
    ({"account_id": 1, "region": "apac"}, "region"),
    ({"account_id": 1, "nrql": "SELECT count(*) FROM Transaction"}, "nrql"),
    ({"account_id": 1, "api_key": KEY}, "api_key"),
])
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(ConfigError) as err:
        make_provider("newrelic", settings, where="lrelease.yml: gate.apm", env={"NEW_RELIC_API_KEY": KEY})
    assert err.value.key == key and KEY not in str(err.value)
