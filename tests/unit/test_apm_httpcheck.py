"""The http provider: health answers (RFC health-check draft, Spring Boot) judged by code and body."""

from __future__ import annotations

import pytest

from lrelease.apm import HostRef, ProviderError, Window, make_provider
from lrelease.apm.httpcheck import HealthCheckSettings, parse_health
from lrelease.errors import ConfigError
from tests.unit.loopback import free_port_url, serve
from tests.unit.recorded import load_case, recorded

CASES = recorded("health")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_recorded_answers(path):
    case, body = load_case(path)
    health = parse_health(case["status"], body)
    assert health.status == case["expect"]["status"]
    assert health.http_status == case["status"]


@pytest.mark.parametrize(("settings", "status", "body", "expected"), [
    (HealthCheckSettings(warn_fails=True), 200, '{"status": "warn"}', "fail"),
    (HealthCheckSettings(require_body_status=False), 200, "OK", "pass"),
    (HealthCheckSettings(require_body_status=False), 503, "OK", "fail"),
    (HealthCheckSettings(expect_status=(200, 429)), 429, '{"status": "pass"}', "pass"),
])
def test_settings_change_the_rules(settings, status, body, expected):
    assert parse_health(status, body, settings).status == expected


def test_end_to_end_the_code_and_the_body_are_both_checked():
    # Given two hosts: one healthy, one answering 200 with a failing body
    def answer(request):
        return (200, {"status": "UP"}) if request.path == "/ok/health" else (200, {"status": "fail"})

    with serve(answer) as stub:
        provider = make_provider("http", {}, where="t", env={})
        got = provider.fetch([HostRef("a", url=stub.url + "/ok"), HostRef("b", url=stub.url + "/bad"),
                              HostRef("c", url=free_port_url())], Window(0, 1))
    # Then the first passes, the second fails on its body, the third is unreachable
    assert got["a"].health.status == "pass" and got["a"].no_data
    assert got["b"].health.failing and "body says fail" in got["b"].health.detail
    assert got["c"].health.failing and not got["c"].reachable


def test_a_host_without_a_url_is_a_provider_error():
    with pytest.raises(ProviderError):
        make_provider("http", {}, where="t", env={}).fetch([HostRef("a")], Window(0, 1))


@pytest.mark.parametrize(("settings", "key"), [
    ({"path": "health"}, "path"),
    ({"expect_status": [99]}, "expect_status"),
    ({"expect_status": "200"}, "expect_status"),
    ({"warn_fails": "yes"}, "warn_fails"),
])
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(ConfigError) as err:
        make_provider("http", settings, where="t", env={})
    assert err.value.key == key
