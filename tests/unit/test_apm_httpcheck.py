"""The http provider: each host's health answer, judged by the environment's health check
(lrelease.healthcheck; recorded RFC health-check-draft and Spring Boot answers)."""

from __future__ import annotations

import threading

import pytest

from lrelease.apm import HostRef, ProviderError, Window, make_provider
from lrelease.apm.httpcheck import HealthCheckProvider, HealthCheckSettings, parse_health
from lrelease.apm.transport import Unreachable
from lrelease.errors import ConfigError
from lrelease.healthcheck import BodyJson, HealthCheck
from tests.unit.loopback import free_port_url, serve
from tests.unit.recorded import load_case, recorded

CASES = recorded("health")
# What a user of the RFC draft or Spring writes to have the body's own verdict count too.
STATUS_FIELD = HealthCheck(body_json=BodyJson("status", ("pass", "warn", "UP")))


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_recorded_answers_by_status_code_and_by_status_field(path):
    # Given a recorded answer
    case, body = load_case(path)
    # When it is judged by the default check (any 2xx) and by a check of the body's "status" field
    by_code, by_field = parse_health(case["status"], body), parse_health(case["status"], body, STATUS_FIELD)
    # Then each gives the recorded verdict, and keeps the HTTP status
    assert (by_code.status, by_field.status) == (case["expect"]["status"], case["expect"]["status_field"])
    assert by_code.http_status == by_field.http_status == case["status"]


def test_end_to_end_the_environment_check_decides():
    # Given three hosts: one answering {"ok": true}, one {"ok": false}, one not listening
    def answer(request):
        return (200, {"ok": True}) if request.path == "/good/healthz" else (200, {"ok": False})

    with serve(answer) as stub:
        # When the provider checks them with body_json {field: ok, values: [true]} on /healthz
        provider = make_provider("http", {"path": "/healthz", "body_json": {"field": "ok", "values": [True]}},
                                 where="t", env={})
        got = provider.fetch([HostRef("a", url=stub.url + "/good"), HostRef("b", url=stub.url + "/bad"),
                              HostRef("c", url=free_port_url())], Window(0, 1))
    # Then the first passes, the second fails saying what came and what was wanted, the third is unreachable
    assert got["a"].health.status == "pass" and got["a"].no_data
    assert got["b"].health.failing and got["b"].health.detail == "HTTP 200 but ok is false, expected true"
    assert got["c"].health.failing and not got["c"].reachable


def test_by_default_any_2xx_passes_whatever_the_body():
    # Given a /health answering 204 with no body, and one answering 200 with {"status": "fail"}
    with serve(lambda r: (204, "") if r.path == "/a/health" else (200, {"status": "fail"})) as stub:
        # When the provider checks them with no settings
        got = make_provider("http", {}, where="t", env={}).fetch(
            [HostRef("a", url=stub.url + "/a"), HostRef("b", url=stub.url + "/b")], Window(0, 1))
    # Then both pass: the status code decides unless a body rule is given
    assert [got[h].health.status for h in "ab"] == ["pass", "pass"]


def test_a_host_without_a_url_is_a_provider_error():
    with pytest.raises(ProviderError):
        make_provider("http", {}, where="t", env={}).fetch([HostRef("a")], Window(0, 1))


@pytest.mark.parametrize(("settings", "key"), [
    ({"path": "health"}, "path"),
    ({"expect_status": [99]}, "expect_status"),
    ({"expect_status": "200"}, "expect_status"),
    ({"body_json": {"field": "status"}}, "body_json"),
    ({"warn_fails": True}, "warn_fails"),
])
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(ConfigError) as err:
        make_provider("http", settings, where="t", env={})
    assert err.value.key == key


def test_a_wave_s_hosts_are_checked_at_the_same_time_and_a_silent_one_does_not_hold_up_the_others():
    # Given six hosts whose checks can only all finish if they run at the same time (each waits at a
    # barrier for the five others: one after another, the first would wait until the barrier's
    # timeout and break it), and a seventh that does not answer at all
    hosts = [HostRef(f"h{i}", url=f"http://h{i}.test") for i in range(6)]
    together = threading.Barrier(len(hosts), timeout=10)
    threads: set[str] = set()

    def get(url: str, timeout: float) -> tuple[int, str]:
        if "silent" in url:
            raise Unreachable("http", "cannot reach http://silent.test/health: timed out")
        threads.add(threading.current_thread().name)
        together.wait()
        return 200, "{}"

    provider = HealthCheckProvider(HealthCheckSettings(), get=get)
    # When one fetch checks them all
    got = provider.fetch([*hosts, HostRef("silent", url="http://silent.test")], Window(0.0, 1.0))
    # Then every answering host passed, each in its own thread, and the silent one is unreachable
    assert {h.name: got[h.name].health.status for h in hosts} == {h.name: "pass" for h in hosts}
    assert not together.broken and len(threads) == len(hosts)
    assert got["silent"].reachable is False and got["silent"].health.status == "fail"
    # And the results come in the hosts' order
    assert list(got) == [*(h.name for h in hosts), "silent"]
