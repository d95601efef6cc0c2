"""lrelease.secrets: secrets registered when read are masked by value everywhere they go."""

from __future__ import annotations

import json
import secrets as stdlib_secrets
import sqlite3

import pytest

from lrelease import secrets
from lrelease.apm.transport import Http, Secret, Settings
from lrelease.cli import report
from lrelease.cli.progress import _note
from lrelease.config import load_config
from lrelease.errors import ConfigError
from lrelease.runner import EventKind, ProgressEvent, _EventTranslator, RunResult
from lrelease.state import StateStore


@pytest.fixture(autouse=True)
def fresh_registry():
    secrets.clear()
    yield
    secrets.clear()


def token() -> str:
    return "tok" + stdlib_secrets.token_hex(12)


# -- the registry and scrub ---------------------------------------------------------------
def test_a_registered_value_is_masked_wherever_it_appears():
    # Given a registered secret
    value = token()
    secrets.register(value)
    # When text, JSON and nested data carrying it are scrubbed
    text = secrets.scrub(f"GET /x?a={value} failed ({value})")
    data = secrets.scrub_data({"msg": f"bad {value}", "list": [value, 3, None], value: True})
    # Then the value is gone, everything else kept
    assert text == "GET /x?a=*** failed (***)"
    assert data == {"msg": "bad ***", "list": ["***", 3, None], "***": True}


def test_an_unregistered_value_is_left_alone():
    # Given nothing registered, When a text is scrubbed, Then it is unchanged
    assert secrets.scrub("node1: gate passed in 3 s") == "node1: gate passed in 3 s"
    assert secrets.registered() == frozenset()


def test_encoded_spellings_are_masked_too():
    # Given a secret with characters that URLs and JSON escape
    value = 'p@ss/w"rd ' + token()
    secrets.register(value)
    # When it shows up percent-encoded (in a URL) or JSON-escaped (in a stored record)
    from urllib.parse import quote

    url = f"https://u:{quote(value, safe='')}@ci.example/x"
    stored = json.dumps({"msg": value})
    # Then it is masked in both
    assert value not in secrets.scrub(url) and quote(value, safe="") not in secrets.scrub(url)
    assert json.loads(secrets.scrub(stored)) == {"msg": "***"}


def test_a_secret_containing_another_is_masked_whole():
    # Given two secrets, one inside the other
    inner = token()
    outer = inner + "-outer"
    secrets.register(inner)
    secrets.register(outer)
    # When scrubbed, Then the longer is masked as one (no "-outer" tail left)
    assert secrets.scrub(f"[{outer}]") == "[***]"


def test_very_short_values_are_not_scrubbed_everywhere():
    # Given a 3-character value (masking it would garble every message)
    secrets.register("abc")
    # Then it is not registered
    assert secrets.scrub("abc def") == "abc def"


def test_url_credentials_are_masked_even_when_never_registered():
    # Given a URL with user:password@ that nobody registered
    text = "could not fetch https://ci:hunter22@ci.example.com/a.tar.gz: refused"
    # When scrubbed, Then the password is masked, the user and host stay
    assert secrets.scrub(text) == "could not fetch https://ci:***@ci.example.com/a.tar.gz: refused"


# -- URLs --------------------------------------------------------------------------------
def test_register_url_takes_the_password_and_secret_looking_query_values():
    # Given a URL with a password and query parameters, some secret-looking
    pw, tok, key, sig = token(), token(), token(), token()
    url = f"https://ci:{pw}@ci.example.com/a-{{build}}.tar.gz?token={tok}&key={key}&X-Amz-Signature={sig}&page=2"
    # When registered
    shown = secrets.register_url(url)
    # Then it is shown masked: user kept, password and secret values masked, others kept
    assert shown == ("https://ci:***@ci.example.com/a-{build}.tar.gz"
                     "?token=***&key=***&X-Amz-Signature=***&page=2")
    # And every secret value is scrubbed from any later text
    said = secrets.scrub(f"401 for {pw} {tok} {key} {sig}")
    assert said == "401 for *** *** *** ***"
    assert secrets.scrub("page=2") == "page=2"


def test_a_health_path_query_is_registered():
    # Given a health path with a token (a path, not a full URL)
    tok = token()
    # When registered, Then shown masked and scrubbed by value
    assert secrets.register_url(f"/health?token={tok}") == "/health?token=***"
    assert secrets.scrub(f"http://10.0.0.1:8080/health?token={tok} answered 503") == (
        "http://10.0.0.1:8080/health?token=*** answered 503")


def test_a_url_without_credentials_is_shown_as_it_is():
    assert secrets.register_url("http://127.0.0.1:9090") == "http://127.0.0.1:9090"
    assert secrets.registered() == frozenset()


def test_an_unparsable_url_does_not_raise():
    # Given a URL whose port is not a number (urlsplit would raise on .port)
    shown = secrets.register_url("http://u:pw1234@host:notaport/x")
    # Then it is still masked by pattern
    assert "pw1234" not in shown


@pytest.mark.parametrize("name, secret", [
    ("token", True), ("access_token", True), ("api_key", True), ("key", True), ("apikey", True),
    ("password", True), ("sig", True), ("X-Amz-Signature", True), ("auth", True),
    ("page", False), ("build", False), ("keyboard", False), ("monkey", False)])
def test_which_query_parameters_count_as_secret(name, secret):
    assert secrets.secret_param(name) is secret


# -- environment and extra vars -------------------------------------------------------------
def test_an_api_key_read_from_the_environment_is_registered(monkeypatch):
    # Given an API key in the environment, named by a provider's settings
    value = token()
    monkeypatch.setenv("LRTEST_APM_KEY", value)
    # When the provider reads it
    secret = Secret.from_env({"LRTEST_APM_KEY": value}, "LRTEST_APM_KEY", where="lrelease.yml", key="api_key_env")
    # Then its repr never shows it and any later text is scrubbed of it
    assert value not in repr(secret)
    assert secrets.scrub(f"vendor said: bad key {value}") == "vendor said: bad key ***"


def test_checking_settings_registers_the_real_variable_not_the_stand_in(monkeypatch):
    # Given a key in the environment, and the settings check's stand-in environment
    value = token()
    monkeypatch.setenv("LRTEST_APM_KEY", value)
    # When the settings are checked with an environment that answers "placeholder"
    Secret.from_env({"LRTEST_APM_KEY": "placeholder"}, "LRTEST_APM_KEY", where="w", key="k")
    # Then the real value is registered, the stand-in is not
    assert secrets.scrub(f"{value} placeholder") == "*** placeholder"


def test_http_errors_are_scrubbed_of_registered_secrets_too():
    # Given a provider session and a secret it did not send (a URL token registered elsewhere)
    tok = token()
    secrets.register(tok)
    http = Http("prometheus", 1.0, [Secret("own" + token(), "X")])
    # When an error text carries it, Then it is masked
    assert tok not in str(http.fail(f"echoed {tok}"))


def test_a_settings_url_registers_its_query_secret():
    tok = token()
    Settings({"url": f"http://127.0.0.1:9090?token={tok}"}, "lrelease.yml: gate", ("url",)).url("url")
    assert secrets.scrub(tok) == "***"


def test_extra_vars_holding_a_secret_move_to_the_environment():
    # Given extra vars, one a URL with a registered password, one nested
    pw = token()
    secrets.register(pw)
    extravars = {"lrelease_artifact_url": f"https://ci:{pw}@ci/x.tar.gz", "lrelease_build": "1.0",
                 "lrelease_gate_apm": {"provider_settings": {"url": f"http://p?token={pw}"}}}
    # When prepared for the command line
    out, env = secrets.vars_via_env(extravars)
    # Then no value on the command line holds the secret; the environment does, under fixed names
    assert pw not in json.dumps(out)
    assert out["lrelease_build"] == "1.0"
    assert out["lrelease_artifact_url"] == "{{ lookup('ansible.builtin.env', 'LRELEASE_SECRET_VAR_LRELEASE_ARTIFACT_URL') }}"
    assert out["lrelease_gate_apm"].endswith("| from_json }}")
    assert env["LRELEASE_SECRET_VAR_LRELEASE_ARTIFACT_URL"] == extravars["lrelease_artifact_url"]
    assert json.loads(env["LRELEASE_SECRET_VAR_LRELEASE_GATE_APM"]) == extravars["lrelease_gate_apm"]


# -- the call sites --------------------------------------------------------------------------
def test_the_database_never_holds_a_registered_secret(tmp_path):
    # Given a registered secret, and a failure message and evidence that carry it
    tok = token()
    secrets.register(tok)
    store = StateStore(tmp_path / "lrelease.db")
    store.start_rollout("production", "1.0", "deploy", "ci", rollout_id="r1", plan={"note": f"x{tok}x"})
    store.record_host("r1", "node1", "failed", {"msg": f"GET http://n1/health?token={tok} -> 503"})
    store.record_gate("r1", 1, "node1", "fail", {"url": f"http://n1/health?token={tok}", "samples": [{"e": tok}]})
    store.close()
    # When every row of every table is read raw
    db = sqlite3.connect(tmp_path / "lrelease.db")
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    dump = "\n".join(repr(row) for t in tables for row in db.execute(f"SELECT * FROM {t}"))  # noqa: S608
    # Then the secret is nowhere, and the masked records are there
    assert tok not in dump
    assert "token=***" in dump


def test_runner_events_and_gate_records_are_scrubbed():
    # Given a registered token and the events of a failed gate and a failed task carrying it
    tok = token()
    secrets.register(tok)
    seen: list[ProgressEvent] = []
    result = RunResult()
    translate = _EventTranslator(result, seen.append)
    url = f"http://n1:8080/health?token={tok}"
    translate({"event": "runner_on_failed", "event_data": {
        "host": "node1", "task": "lrelease gate", "role": "",
        "res": {"msg": f"gate failed on node1: {url} answered 503", "evidence": {"url": url}}}})
    translate({"event": "runner_on_failed", "event_data": {
        "host": "node2", "task": "Download the artifact", "role": "lrelease_stage", "res": {"msg": f"401 for {tok}"}}})
    # Then neither the events nor the run's result hold it
    assert tok not in repr(seen) and tok not in repr(result)
    assert result.gates[0]["evidence"]["url"] == "http://n1:8080/health?token=***"


def test_progress_lines_and_the_report_are_scrubbed(tmp_path):
    # Given a registered token and a record stored before it was known (an older lrelease)
    tok = token()
    store = StateStore(tmp_path / "lrelease.db")
    store.start_rollout("production", "1.0", "deploy", "ci", rollout_id="r1", reason=f"see {tok}")
    store.record_host("r1", "node1", "gate_failed", {"reason": f"health?token={tok} failed", "wave": 1})
    store.record_gate("r1", 1, "node1", "fail", {"gate": "http", "url": f"http://n1/health?token={tok}"})
    secrets.register(tok)
    # When shown as a progress line, as `show` text and as `show --json`
    note = _note(ProgressEvent(EventKind.HOST_FAILED, "node1", 1, {"msg": f"fetch {tok} failed"}))
    rollout, events, gates = store.rollout("r1"), store.host_events("r1"), store.gates("r1")
    text = "\n".join(line.text.plain for line in report.report(rollout, events, gates))
    as_json = json.dumps(report.to_json(rollout, events, gates))
    # Then the token is in none of them
    assert note == "fetch *** failed"
    assert tok not in text and "token=***" in text
    assert tok not in as_json


def test_a_config_error_about_a_url_registers_its_password_first(tmp_path):
    # Given an lrelease.yml whose artifact URL (with a password) is invalid (no {build})
    pw = token()
    (tmp_path / "lrelease.yml").write_text(
        "version: 1\napp: demoapp\n"
        f"artifacts: {{source: url, url: 'https://ci:{pw}@ci.example.com/demoapp.tar.gz'}}\n"
        "environments: {production: {deploy_root: /srv/demoapp, service: {command: /srv/demoapp/bin/x}}}\n")
    # When loaded, Then the error, as printed, does not show the password
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "lrelease.yml")
    assert pw not in secrets.scrub(str(err.value))  # as the CLI prints it


def test_loading_a_config_registers_url_credentials_and_health_tokens(tmp_path):
    # Given an lrelease.yml with an artifact URL password and a health path token
    pw, tok = token(), token()
    (tmp_path / "lrelease.yml").write_text(
        "version: 1\napp: demoapp\n"
        f"artifacts: {{source: url, url: 'https://ci:{pw}@ci.example.com/{{app}}-{{build}}.tar.gz'}}\n"
        "environments: {production: {deploy_root: /srv/demoapp, service: {command: /srv/demoapp/bin/x},"
        f" health: {{path: '/health?token={tok}'}}}}}}\n")
    # When loaded
    project = load_config(tmp_path / "lrelease.yml")
    # Then both are registered (and the config still holds the real values for the hosts)
    assert secrets.scrub(f"{pw} {tok}") == "*** ***"
    assert tok in project.environment("production").health_path
    assert secrets.mask_url(project.environment("production").health_path) == "/health?token=***"


def test_a_reason_or_actor_holding_a_registered_secret_is_stored_scrubbed(tmp_path):
    # Given a registered token that someone pasted into the reason and the actor
    tok = token()
    secrets.register(tok)
    store = StateStore(tmp_path / "lrelease.db")
    # When the roll-out is recorded
    store.start_rollout("production", "1.0", "deploy", f"ci {tok}", rollout_id="r1", reason=f"see {tok}")
    # Then the raw rows hold the mask, not the token
    raw = sqlite3.connect(tmp_path / "lrelease.db").execute("SELECT actor, reason FROM rollouts").fetchone()
    assert raw == ("ci ***", "see ***")
