"""The http gate decides from recorded answers: a fake clock and canned responses, no network."""

from __future__ import annotations

import pytest
import requests

from lrelease.errors import ConfigError
from lrelease.gate import GateRequest, Verdict, evaluate, register
from lrelease.gate import health


class FakeClock:
    """time.monotonic + time.sleep that only move when the gate sleeps."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def answers(*replies):
    """A getter that plays back (status, body) pairs or exceptions, then repeats the last one."""
    seen: list[str] = []

    def get(url: str, timeout: float):
        seen.append(url)
        reply = replies[min(len(seen) - 1, len(replies) - 1)]
        if isinstance(reply, Exception):
            raise reply
        return reply

    get.seen = seen
    return get


def decide(request, get, clock):
    return health.decide(request, get=get, clock=clock, sleep=clock.sleep)


def test_healthy_host_passes_after_the_bake():
    # Given a host whose /health answers 200
    clock, get = FakeClock(), answers((200, '{"status": "pass"}'))
    request = GateRequest(host="node1", url="http://n1/health", bake_seconds=5, timeout=10)
    # When the gate judges it
    result = decide(request, get, clock)
    # Then it passes after baking 5 s, on the first probe, with that probe as evidence
    assert result.verdict is Verdict.PASS and result.passed
    assert clock.slept == [5]
    assert result.evidence["probes"] == 1 and result.evidence["status_counts"] == {"200": 1}
    assert result.evidence["samples"][0]["body"] == '{"status": "pass"}'


def test_unhealthy_host_fails_when_the_timeout_passes():
    # Given a host that keeps answering 503
    clock, get = FakeClock(), answers((503, '{"status": "fail", "version": "1.2.0"}'))
    request = GateRequest(host="node1", url="http://n1/health", bake_seconds=0, timeout=3, interval=1)
    # When the gate judges it
    result = decide(request, get, clock)
    # Then it fails after polling for the whole timeout, and says what it saw
    assert result.verdict is Verdict.FAIL and not result.passed
    assert result.evidence["probes"] == 4  # at 0, 1, 2 and 3 s
    assert result.evidence["status_counts"] == {"503": 4}
    assert "HTTP 503" in result.reason and '"version": "1.2.0"' in result.reason
    assert result.to_dict()["verdict"] == "fail"


def test_a_host_that_recovers_in_time_passes():
    # Given a host that refuses connections, then answers 500, then 200
    clock = FakeClock()
    get = answers(requests.ConnectionError("refused"), (500, "boom"), (200, "ok"))
    request = GateRequest(host="node1", url="http://n1/health", timeout=10, interval=0.5)
    # When the gate judges it
    result = decide(request, get, clock)
    # Then it passes on the third probe, and the evidence keeps the error and the 500
    assert result.passed
    assert result.evidence["status_counts"] == {"error": 1, "500": 1, "200": 1}
    assert "ConnectionError" in result.evidence["samples"][0]["error"]


def test_consecutive_successes_are_required_when_asked():
    # Given a flapping host and a gate that wants 2 good answers in a row
    clock = FakeClock()
    get = answers((200, "ok"), (503, "no"), (200, "ok"), (503, "no"))
    request = GateRequest(host="n", url="http://n/health", timeout=5, params={"successes": 2})
    # When the gate judges it
    result = decide(request, get, clock)
    # Then one good answer at a time is not enough
    assert result.verdict is Verdict.FAIL


def test_long_bodies_are_truncated_in_the_evidence():
    clock, get = FakeClock(), answers((503, "x" * 5000))
    result = decide(GateRequest(host="n", url="http://n/health", timeout=0), get, clock)
    body = result.evidence["samples"][0]["body"]
    assert len(body) == health.BODY_LIMIT + 3 and body.endswith("...")


def test_the_gate_uses_the_environments_health_check():
    # Given a /healthz answering {"ok": false} with 200, then {"ok": true}, and a gate wanting ok: true
    clock = FakeClock()
    get = answers((200, '{"ok": false}'), (200, '{"ok": true}'))
    request = GateRequest(host="node1", url="http://n1/healthz", timeout=5,
                          params={"body_json": {"field": "ok", "values": [True]}})
    # When the gate judges it
    result = decide(request, get, clock)
    # Then the first answer does not pass (a 200 is not enough), the second does; the evidence
    # says what was wanted and why the first did not pass
    assert result.passed and result.evidence["probes"] == 2
    assert result.evidence["expect"] == "HTTP 2xx, JSON ok to be true"
    assert [(s["ok"], s["detail"]) for s in result.evidence["samples"]] == [
        (False, "HTTP 200 but ok is false, expected true"), (True, "HTTP 200, ok is true")]
    assert result.reason.startswith("http://n1/healthz answered HTTP 200, ok is true (1 in a row)")


def test_a_failing_gate_says_what_the_last_answer_lacked():
    clock, get = FakeClock(), answers((200, "degraded"))
    request = GateRequest(host="n", url="http://n/health", timeout=1, params={"body_contains": "OK"})
    result = decide(request, get, clock)
    assert result.verdict is Verdict.FAIL
    assert result.reason.endswith("last answer HTTP 200 but the body does not contain 'OK': degraded")


def test_by_default_any_2xx_passes_and_other_codes_only_when_listed():
    clock = FakeClock()
    assert decide(GateRequest(host="n", url="u", timeout=0), answers((204, "")), clock).passed
    not_listed = decide(GateRequest(host="n", url="u", timeout=0, params={"expect_status": [200]}),
                        answers((204, "")), clock)
    assert not not_listed.passed and not_listed.evidence["expect_status"] == [200]


@pytest.mark.parametrize(("params", "key"), [
    ({"expect_status": [99]}, "expect_status"),
    ({"body_json": {"field": "ok"}}, "body_json"),
    ({"successes": 0}, "successes"),
    ({"request_timeout": 0}, "request_timeout"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_gate_settings_are_refused_with_the_key(params, key):
    with pytest.raises(ConfigError) as err:
        health.decide(GateRequest(host="n", url="http://n/health", params=params), get=answers((200, "")))
    assert err.value.key == key


def test_negative_timings_are_refused():
    with pytest.raises(ConfigError) as err:
        GateRequest(host="n", url="u", bake_seconds=-1)
    assert err.value.key == "bake_seconds"


def test_deciders_are_pluggable_by_name(monkeypatch):
    # Given a decider registered under its own name (how the APM gate plugs in)
    from lrelease import gate

    monkeypatch.setattr(gate, "_DECIDERS", dict(gate._DECIDERS))
    register("always-fail", lambda req: gate.GateResult(Verdict.FAIL, {"host": req.host}, "no"))
    # When a gate asks for it by name
    result = evaluate(GateRequest(host="node9", url="u"), "always-fail")
    # Then that decider judged the host; an unknown name is refused
    assert result.verdict is Verdict.FAIL and result.evidence == {"host": "node9"}
    with pytest.raises(ConfigError):
        evaluate(GateRequest(host="n", url="u"), "nope")


def test_the_port_decider_waits_for_a_listener():
    # Given a port that listens (a real socket on loopback) and one that does not
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        # When each is checked
        up = evaluate(GateRequest(host="n", url=f"tcp://127.0.0.1:{port}", timeout=1), "port")
    finally:
        listener.close()
    clock = FakeClock()
    down = health.decide_port(GateRequest(host="n", url=f"tcp://127.0.0.1:{port}", timeout=2, interval=1),
                              clock=clock, sleep=clock.sleep)
    # Then the listener passes at once and the closed port fails after the timeout
    assert up.passed and up.evidence["attempts"] == 1
    assert down.verdict is Verdict.FAIL and down.evidence["attempts"] == 3 and "refused" in down.reason.lower()


def test_the_port_decider_wants_a_tcp_url():
    with pytest.raises(ConfigError) as err:
        health.decide_port(GateRequest(host="n", url="http://x/health"))
    assert err.value.key == "url"
