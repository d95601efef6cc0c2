"""Notifications (lrelease.notify): payloads, signatures, filters, scrubbing and bounded delivery,
against real HTTP receivers on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lrelease import notify, secrets
from lrelease.cli.main import cli
from lrelease.config import load_config
from lrelease.errors import ConfigError
from lrelease.notify import ChannelConfig, Event, Notifier
from tests.unit.loopback import hanging, serve
from tests.unit.test_config import GOOD, changed, write_config

KEY = "whsec-test-0123456789"
OK = lambda r: (200, "ok")  # noqa: E731


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    """Short backoffs so retry tests take a fraction of a second (the logic is the same)."""
    monkeypatch.setattr(notify, "BACKOFF", (0.05, 0.1, 0.2))
    yield
    secrets.clear()


def channel(kind="webhook", url_env="HOOK_URL", **kw) -> ChannelConfig:
    return ChannelConfig(kind=kind, url_env=url_env, secret_env="HOOK_KEY" if kind == "webhook" else None, **kw)


def notifier(url: str, *channels: ChannelConfig, drain: float = 5.0, **env: str) -> Notifier:
    env = {"HOOK_URL": url, "HOOK_KEY": KEY, **env}
    return Notifier(channels or (channel(),), env=env, drain_seconds=drain)


def begin(n: Notifier, env="production", reason="") -> None:
    n.begin(rollout_id="r-1", env=env, build="1.4.0", actor="alice", action="deploy", reason=reason)


def test_a_webhook_posts_the_event_signed_over_timestamp_and_raw_body():
    # Given a webhook channel with an HMAC key, and a receiver on loopback
    with serve(OK) as stub:
        n = notifier(stub.url)
        # When a roll-out starts, a gate fails and it ends
        begin(n, reason="nightly")
        n.send(notify.GATE, wave=1, host="node1", verdict="fail", reason="error rate 12% > 1%")
        n.end("rolled_back", 1, "roll-out failed")
        delivery = n.close()
    # Then every event arrived, in order, as JSON with the roll-out's fields
    assert delivery.delivered == 3 and delivery.undelivered == 0
    bodies = [json.loads(r.body) for r in stub.requests]
    assert [b["kind"] for b in bodies] == ["start", "gate", "end"]
    assert bodies[0]["reason"] == "nightly" and bodies[0]["actor"] == "alice"
    assert {bodies[1][k] for k in ("verdict", "host", "reason")} == {"fail", "node1", "error rate 12% > 1%"}
    assert (bodies[2]["status"], bodies[2]["exit_code"]) == ("rolled_back", 1)
    assert bodies[2]["duration_seconds"] >= 0 and bodies[2]["env"] == "production"
    # And each signature is HMAC-SHA256 over "<timestamp>." + the raw body, computed independently here
    for r in stub.requests:
        stamp = r.headers["X-Lrelease-Timestamp"]
        expected = hmac.new(KEY.encode(), f"{stamp}.".encode() + r.body, hashlib.sha256).hexdigest()
        assert r.headers["X-Lrelease-Signature"] == f"sha256={expected}"
        assert abs(int(stamp) - time.time()) < 60
        assert r.headers["X-Lrelease-Event"] == json.loads(r.body)["kind"]
    # And a body changed in transit no longer matches
    r = stub.requests[0]
    forged = hmac.new(KEY.encode(), f"{r.headers['X-Lrelease-Timestamp']}.".encode() + r.body + b" ", hashlib.sha256)
    assert r.headers["X-Lrelease-Signature"] != f"sha256={forged.hexdigest()}"


def test_slack_gets_text_and_a_block_with_the_verdict_and_its_reason():
    # Given a Slack-compatible channel
    with serve(OK) as stub:
        n = notifier(stub.url, channel("slack"))
        # When a gate verdict is sent
        begin(n)
        n.send(notify.GATE, wave=2, host="node3", verdict="inconclusive", reason="too few requests <10>")
        n.close()
    # Then the receiver got {"text", "blocks"}: the text names env, build, verdict, host and reason
    payloads = [json.loads(r.body) for r in stub.requests]
    assert [p["text"] for p in payloads][0].startswith("lrelease production: deploy of 1.4.0 started by alice")
    text = payloads[1]["text"]
    assert "gate INCONCLUSIVE on node3 (wave 2): too few requests &lt;10&gt;" in text  # Slack's escaping
    assert payloads[1]["blocks"] == [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    assert "X-Lrelease-Signature" not in stub.requests[0].headers  # Slack does not verify one


def test_filters_keep_only_the_chosen_environments_and_events():
    # Given a channel for production's start and end only
    with serve(OK) as stub:
        only = channel(environments=("production",), events=("start", "end"))
        for env in ("next", "production"):
            n = notifier(stub.url, only)
            # When a roll-out of each environment starts, has a wave, and ends
            begin(n, env=env)
            n.send(notify.WAVE, wave=1, hosts=("node1",))
            n.end("succeeded", 0)
            n.close()
    # Then only production's start and end were posted
    assert [(json.loads(r.body)["env"], json.loads(r.body)["kind"]) for r in stub.requests] == [
        ("production", "start"), ("production", "end")]


def test_secrets_are_scrubbed_from_every_payload(monkeypatch):
    # Given a secret this process read (an APM key), and a reason that quotes it and a URL password
    monkeypatch.setenv("APM_KEY", "apm-SECRET-value-42")
    secrets.register_env("APM_KEY")
    with serve(OK) as stub:
        for kind in ("webhook", "slack"):
            n = notifier(stub.url, channel(kind))
            # When events carrying them are sent
            begin(n, reason="key apm-SECRET-value-42")
            n.send(notify.ROLLBACK, automatic=True, reason="fetch https://ci:hunter22@ci.example/x failed")
            n.close()
    # Then no body holds them; *** stands in their place
    assert len(stub.requests) == 4
    for r in stub.requests:
        assert b"apm-SECRET-value-42" not in r.body and b"hunter22" not in r.body
        assert b"***" in r.body


def test_the_urls_and_keys_are_registered_as_secrets():
    # Given a webhook whose URL holds a token and whose key is in the environment
    with serve(OK) as stub:
        url = stub.url + "/hooks/T0/B0/tok-abcdef123456"
        notifier(url).close()
    # Then both are scrubbed from any text from now on
    assert secrets.scrub(f"POST {url} with {KEY}") == "POST *** with ***"


def test_a_503_is_retried_until_it_is_delivered():
    # Given a receiver that answers 503 twice, then 200
    answers = iter([503, 503])
    with serve(lambda r: (next(answers, 200), "")) as stub:
        n = notifier(stub.url)
        begin(n)
        delivery = n.close()
    # Then the event was delivered on the third try, the same bytes each time
    assert delivery.delivered == 1 and delivery.undelivered == 0
    assert len(stub.requests) == 3 and len({r.body for r in stub.requests}) == 1


def test_retry_after_is_honoured():
    # Given a receiver that answers 429 with Retry-After: 1 (the backoff alone would wait 0.05 s)
    answers = iter([(429, "slow down", {"Retry-After": "1"})])
    seen: list[float] = []

    def answer(request):
        seen.append(time.monotonic())
        return next(answers, (200, "ok"))

    with serve(answer) as stub:
        n = notifier(stub.url)
        begin(n)
        delivery = n.close()
    # Then the second try came a second later, and it was delivered
    assert delivery.delivered == 1 and len(stub.requests) == 2
    assert seen[1] - seen[0] >= 0.95


def test_retry_after_is_capped_and_reads_http_dates():
    assert notify.retry_after("3600", 0.5) == notify.RETRY_AFTER_CAP
    assert notify.retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 0.5) == 0.0  # in the past: at once
    assert notify.retry_after("soon", 0.5) == 0.5 and notify.retry_after(None, 0.5) == 0.5


def test_a_4xx_is_not_retried_and_a_500_is_given_up_after_the_attempts():
    # Given one receiver refusing (404) and one always failing (500)
    with serve(lambda r: (404, "no")) as refusing, serve(lambda r: (500, "boom")) as failing:
        n = Notifier((channel(url_env="A"), channel(url_env="B")),
                     env={"A": refusing.url, "B": failing.url, "HOOK_KEY": KEY})
        begin(n)
        delivery = n.close()
    # Then the 404 was tried once, the 500 ATTEMPTS times; both count as undelivered
    assert (len(refusing.requests), len(failing.requests)) == (1, notify.ATTEMPTS)
    assert delivery.undelivered == 2 and delivery.delivered == 0


def test_a_full_queue_drops_the_oldest_events_and_counts_them(monkeypatch):
    # Given a queue of 5 and a receiver held on the first event until released
    monkeypatch.setattr(notify, "QUEUE_SIZE", 5)
    release, got_first = threading.Event(), threading.Event()

    def answer(request):
        got_first.set()
        release.wait(10)
        return 200, "ok"

    with serve(answer) as stub:
        n = notifier(stub.url)
        begin(n)  # event 0: in flight, held
        assert got_first.wait(5)
        # When 12 more events come while it is held
        for i in range(1, 13):
            n.send(notify.WAVE, wave=i)
        release.set()
        delivery = n.close()
    # Then the 7 oldest waiting were dropped; the in-flight one and the 5 newest arrived, in order
    waves = [json.loads(r.body).get("wave") for r in stub.requests]
    assert waves == [None, 8, 9, 10, 11, 12]
    assert (delivery.delivered, delivery.dropped, delivery.undelivered) == (6, 7, 7)


def test_a_hanging_receiver_neither_blocks_sending_nor_the_end_beyond_the_bound(caplog):
    # Given one receiver that never answers and one good one
    with hanging() as stuck, serve(OK) as good:
        n = Notifier((channel(url_env="STUCK"), channel(url_env="GOOD")),
                     env={"STUCK": stuck, "GOOD": good.url, "HOOK_KEY": KEY}, drain_seconds=1.0)
        # When a roll-out's events are sent
        t0 = time.monotonic()
        begin(n)
        for i in range(1, 4):
            n.send(notify.WAVE, wave=i)
        n.end("succeeded", 0)
        sent = time.monotonic() - t0
        with caplog.at_level(logging.WARNING, logger="lrelease.notify"):
            t1 = time.monotonic()
            delivery = n.close()
            waited = time.monotonic() - t1
    # Then sending took no time, and the end waited at most the drain bound (plus scheduling)
    assert sent < 0.1
    assert waited < 1.0 + 0.3
    # And the good receiver got every event in order; the stuck ones are counted in one log line
    assert [json.loads(r.body)["kind"] for r in good.requests] == ["start", "wave", "wave", "wave", "end"]
    assert delivery.delivered == 5 and delivery.undelivered == 5
    lines = [r.getMessage() for r in caplog.records if r.name == "lrelease.notify"]
    assert len(lines) == 1 and "5 event(s) not delivered" in lines[0] and "$STUCK" in lines[0]
    assert stuck not in lines[0]


def test_no_channels_costs_nothing():
    n = Notifier(())
    begin(n)
    n.end("succeeded", 0)
    assert not n.active and n.close() == notify.Delivery()


def test_an_unset_variable_is_refused_before_anything_runs():
    with pytest.raises(ConfigError) as err:
        Notifier((channel(),), env={"HOOK_KEY": KEY}, where="lrelease.yml")
    assert str(err.value) == ("lrelease.yml: notifications[0].url_env: environment variable HOOK_URL to be set "
                              "(it holds the secret); it is not")
    with pytest.raises(ConfigError, match="notifications\\[0\\].secret_env: environment variable HOOK_KEY"):
        Notifier((channel(),), env={"HOOK_URL": "http://127.0.0.1:9/x"})
    with pytest.raises(ConfigError, match="to hold an http\\(s\\) URL"):
        Notifier((channel(),), env={"HOOK_URL": "hooks.example.com/x", "HOOK_KEY": KEY})


def test_event_kinds_render_as_one_line_each():
    base = dict(env="next", rollout_id="r-9", build="2.0", actor="bob", action="rollback")
    texts = [notify.slack_text(Event(kind=k, **base, status="halted", exit_code=5, duration_seconds=61.2,
                                     automatic=False, verdict="pass", host="n1", wave=1, reason="why"))
             for k in notify.KINDS]
    assert all("\n" not in t and t.startswith("lrelease next: rollback of 2.0 ") and t.endswith("[r-9]")
               for t in texts)
    assert "rollback asked by bob: why" in texts[notify.KINDS.index("rollback")]
    assert "ended halted (exit 5) after 61s" in texts[notify.KINDS.index("end")]


# -- lrelease.yml ---------------------------------------------------------------------------
def with_notifications(*channels):
    return changed(lambda d: d.update(notifications=list(channels)))


def test_channels_load_with_their_filters(tmp_path):
    path = write_config(tmp_path, with_notifications(
        {"kind": "slack", "url_env": "SLACK_WEBHOOK_URL", "environments": ["production"], "events": ["start", "end"]},
        {"kind": "webhook", "url_env": "HOOK_URL", "secret_env": "HOOK_KEY"}))
    project = load_config(path)
    assert project.notifications == (
        ChannelConfig("slack", "SLACK_WEBHOOK_URL", None, ("production",), ("start", "end")),
        ChannelConfig("webhook", "HOOK_URL", "HOOK_KEY", None, None))
    assert load_config(write_config(tmp_path, GOOD)).notifications == ()


BAD = [
    ("unknown kind", {"kind": "teams", "url_env": "X"}, "notifications[0].kind", "slack or webhook, got 'teams'"),
    ("missing url_env", {"kind": "slack"}, "notifications[0].url_env", "a value (required)"),
    ("literal url", {"kind": "slack", "url_env": "X", "url": "https://hooks.slack.com/services/T/B/xyz"},
     "notifications[0].url", "no URL in this file (a webhook URL is a secret)"),
    ("bad event", {"kind": "slack", "url_env": "X", "events": ["start", "finish"]}, "notifications[0].events[1]",
     "an event: one of start, wave, gate, halt, pause, rollback, end"),
    ("webhook unsigned", {"kind": "webhook", "url_env": "X"}, "notifications[0].secret_env", "HMAC key"),
    ("slack with key", {"kind": "slack", "url_env": "X", "secret_env": "K"}, "notifications[0].secret_env",
     "only webhook requests are signed"),
    ("bad variable name", {"kind": "slack", "url_env": "https://x"}, "notifications[0].url_env",
     "the name of an environment variable"),
    ("unknown environment", {"kind": "slack", "url_env": "X", "environments": ["prod"]},
     "notifications[0].environments[0]", "an environment of this file: one of production, next, got 'prod'"),
]


@pytest.mark.parametrize("case, entry, key, expected", BAD, ids=[c[0] for c in BAD])
def test_a_bad_channel_is_one_line_naming_file_and_key(tmp_path, case, entry, key, expected):
    # Given lrelease.yml with one bad channel
    path = write_config(tmp_path, with_notifications(entry))
    # When it is loaded
    with pytest.raises(ConfigError) as err:
        load_config(path)
    # Then one line names the file, the key and what was expected, and never echoes a URL
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: {key}: "), message
    assert expected in message, message
    assert "hooks.slack.com" not in message


def test_the_cli_refuses_a_literal_url_with_exit_2_and_one_line(tmp_path):
    # Given lrelease.yml with a literal webhook URL
    path = write_config(tmp_path, with_notifications(
        {"kind": "slack", "url_env": "X", "url": "https://hooks.slack.com/services/T/B/xyz"}))
    # When any command reads it
    result = CliRunner().invoke(cli, ["plan", "--env", "production", "--config", str(path)])
    # Then exit 2 and one line, without the URL
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "notifications[0].url: no URL in this file" in lines[0]
    assert "hooks.slack.com" not in result.output + result.stderr


def test_a_channel_that_is_down_is_not_waited_for_at_the_end():
    # Given a receiver that always answers 500, whose first event already failed after its tries
    with serve(lambda r: (500, "boom")) as failing:
        n = notifier(failing.url, drain=5.0)
        begin(n)
        deadline = time.monotonic() + 5
        while len(failing.requests) < notify.ATTEMPTS and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # past its last try: the channel is down
        # When the roll-out ends
        n.end("succeeded", 0)
        t0 = time.monotonic()
        delivery = n.close()
        waited = time.monotonic() - t0
    # Then the end did not wait for it (far less than the 5 s bound), and both events count as undelivered
    assert waited < 0.5
    assert delivery.undelivered == 2


def test_a_channel_down_for_several_events_gets_one_try_per_event(monkeypatch):
    # Given a receiver that always answers 503
    with serve(lambda r: (503, "down")) as failing:
        n = notifier(failing.url, drain=10.0)
        begin(n)
        # When DOWN_AFTER + 2 events are sent and drained (first DOWN_AFTER with retries, then one try each)
        for i in range(notify.DOWN_AFTER + 1):
            n.send(notify.WAVE, wave=i + 1)
        for w in n._workers:  # wait for the worker itself (close would not wait for a channel that is down)
            with w.cond:
                w.closing = True
                w.cond.notify_all()
            w.join(10)
        n.close()
    # Then the first DOWN_AFTER events were tried ATTEMPTS times, the rest once each
    assert len(failing.requests) == notify.DOWN_AFTER * notify.ATTEMPTS + 2


def test_the_receiver_snippet_of_docs_design_md_verifies_a_real_request():
    # Given the verification snippet docs/design.md gives receivers
    text = (Path(__file__).resolve().parents[2] / "docs" / "design.md").read_text()
    section = text[text.index("## Notifications"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    scope: dict = {}
    exec(compile(code, "docs/design.md", "exec"), scope)  # noqa: S102 - our own documentation
    verify = scope["verify"]
    # When a webhook request is delivered
    with serve(OK) as stub:
        n = notifier(stub.url)
        begin(n)
        n.close()
    r = stub.requests[0]
    # Then the snippet accepts it, and refuses a changed body, a wrong key and a stale timestamp
    assert verify(KEY.encode(), r.headers, r.body) is True
    assert verify(KEY.encode(), r.headers, r.body.replace(b"alice", b"mallory")) is False
    assert verify(b"another key", r.headers, r.body) is False
    assert verify(KEY.encode(), r.headers, r.body, tolerance=-1) is False
