"""The health check's rules (lrelease.healthcheck): what passes, what a failure says, what the
settings may be; and the check as lrelease.yml writes it (health: and gate: provider http)."""

from __future__ import annotations

import textwrap

import pytest

from lrelease.config import load_config
from lrelease.errors import ConfigError
from lrelease.healthcheck import BodyJson, HealthCheck, parse_check
from lrelease.schema import Checker


def rules(**settings) -> HealthCheck:
    return parse_check(Checker("lrelease.yml"), settings, "health")


# -- what passes ---------------------------------------------------------------------------
def test_by_default_any_2xx_passes_whatever_the_body():
    # Given the default check (no settings)
    check = rules()
    # When answers of several codes and bodies are judged
    verdicts = {code: check.judge(code, body).ok
                for code, body in [(200, '{"ok": true}'), (204, ""), (299, "fine"), (199, ""), (300, ""), (503, "")]}
    # Then exactly the 2xx pass, and a /healthz answering {"ok": true} with 200 is healthy
    assert verdicts == {200: True, 204: True, 299: True, 199: False, 300: False, 503: False}


def test_a_status_failure_names_the_codes_wanted_and_the_body_that_came():
    # Given the default check and a check for 200 or 204
    # When a 503 and a 201 are judged
    down = rules().judge(503, '{"status": "fail",\n "output": "db down"}')
    created = rules(expect_status=[200, 204]).judge(201, "")
    # Then each says what came and what was wanted, on one line
    assert not down.ok and down.detail == 'HTTP 503, expected 2xx: {"status": "fail", "output": "db down"}'
    assert not created.ok and created.detail == "HTTP 201, expected 200 or 204 (empty body)"
    assert rules(expect_status=[200, 204]).judge(204, "").ok


def test_body_json_follows_a_dotted_path_and_compares_json_values():
    # Given a check that checks.db must be "ok" or "up"
    check = rules(body_json={"field": "checks.db", "values": ["ok", "up"]})
    # When answers with the field up, down, missing, or a body that is not JSON are judged
    up = check.judge(200, '{"checks": {"db": "up", "cache": "down"}}')
    down = check.judge(200, '{"checks": {"db": "down"}}')
    missing = check.judge(200, '{"checks": {}}')
    text = check.judge(200, "OK")
    # Then only the first passes; each failure names the field, the values wanted and what came
    assert up.ok and up.detail == 'HTTP 200, checks.db is "up"'
    assert not down.ok and down.detail == 'HTTP 200 but checks.db is "down", expected "ok" or "up"'
    assert not missing.ok and missing.detail == (
        'HTTP 200 but the body has no checks.db (expected checks.db to be "ok" or "up"): {"checks": {}}')
    assert not text.ok and text.detail == (
        'HTTP 200 but the body is not JSON (expected checks.db to be "ok" or "up"): OK')


@pytest.mark.parametrize(("values", "body", "ok"), [
    ([True], '{"ok": true}', True),
    ([True], '{"ok": 1}', False),  # true is not 1
    ([1], '{"ok": true}', False),
    ([1], '{"ok": 1.0}', True),  # 1 is 1.0
    (["1"], '{"ok": 1}', False),  # "1" is not 1
    ([None], '{"ok": null}', True),
    ([None], '{}', False),  # absent is not null
])
def test_values_are_compared_as_json_values(values, body, ok):
    assert rules(body_json={"field": "ok", "values": values}).judge(200, body).ok is ok


def test_a_number_in_the_path_indexes_a_list():
    check = rules(body_json={"field": "checks.1.status", "values": ["pass"]})
    assert check.judge(200, '{"checks": [{"status": "fail"}, {"status": "pass"}]}').ok
    assert not check.judge(200, '{"checks": [{"status": "pass"}]}').ok


def test_body_contains_wants_the_substring():
    check = rules(body_contains="OK")
    assert check.judge(200, "status: OK").ok
    miss = check.judge(200, "status: degraded")
    assert not miss.ok and miss.detail == "HTTP 200 but the body does not contain 'OK': status: degraded"


def test_every_rule_must_hold_and_the_status_is_checked_first():
    # Given a check with a status list and both body rules
    check = rules(expect_status=[200], body_json={"field": "status", "values": ["pass"]}, body_contains="pass")
    # When a 503 carries a passing body, and a 200 carries a failing one
    # Then both fail, the first on its status
    assert check.judge(503, '{"status": "pass"}').detail.startswith("HTTP 503, expected 200")
    assert not check.judge(200, '{"status": "warn", "note": "pass"}').ok
    assert check.judge(200, '{"status": "pass"}').ok


def test_long_bodies_are_cut_in_a_failure():
    detail = rules().judge(500, "x" * 5000).detail
    assert detail.endswith("...") and len(detail) < 260


# -- settings ------------------------------------------------------------------------------
@pytest.mark.parametrize(("settings", "key", "expected"), [
    ({"expect_status": "200"}, "health.expect_status", '"2xx" (any 200..299) or a list of HTTP status codes'),
    ({"expect_status": []}, "health.expect_status", "a list of HTTP status codes (100..599)"),
    ({"expect_status": [99]}, "health.expect_status", "got a list"),
    ({"expect_status": [True]}, "health.expect_status", "such as [200, 204]"),
    ({"body_json": "status"}, "health.body_json", "a mapping such as {field: status, values: [ok, up]}"),
    ({"body_json": {"field": "status"}}, "health.body_json", "both field and values"),
    ({"body_json": {"field": "status", "values": []}}, "health.body_json.values", "a list of 1 to 32 values"),
    ({"body_json": {"field": "status", "values": "ok"}}, "health.body_json.values", "got 'ok'"),
    ({"body_json": {"field": "status", "values": [{"a": 1}]}}, "health.body_json.values[0]", "a string"),
    ({"body_json": {"field": "a..b", "values": [1]}}, "health.body_json.field", "a dotted path"),
    ({"body_json": {"field": "s", "values": [1], "case": "x"}}, "health.body_json.case", "unknown key"),
    ({"body_contains": "{{ lookup('env', 'HOME') }}"}, "health.body_contains", "no control characters, {{ }}"),
    ({"body_contains": 5}, "health.body_contains", "a substring of the body"),
])
def test_bad_settings_name_the_key_and_what_was_expected(settings, key, expected):
    with pytest.raises(ConfigError) as err:
        rules(**settings)
    assert (err.value.where, err.value.key) == ("lrelease.yml", key)
    assert expected in err.value.expected


def test_the_settings_travel_as_extra_vars_and_back_unchanged():
    # Given a check with every rule
    check = HealthCheck((200, 204), BodyJson("checks.db", ("ok", 1, True, None)), "OK")
    # When it becomes settings again, or extra vars
    again = rules(**check.to_params())
    # Then nothing is lost, and the defaults become the extra vars' "not set" values
    assert again == check
    assert HealthCheck().to_vars() == {"lrelease_health_expect_status": [], "lrelease_health_body_json": {},
                                       "lrelease_health_body_contains": ""}
    assert rules(**HealthCheck().to_params()) == HealthCheck()


# -- in lrelease.yml -----------------------------------------------------------------------
def write(tmp_path, env: str) -> str:
    path = tmp_path / "lrelease.yml"
    path.write_text("version: 1\napp: shop\nenvironments:\n  production:\n"
                    "    deploy_root: /opt/shop\n    service: {command: /opt/shop/bin/shop-ctl}\n"
                    + textwrap.indent(textwrap.dedent(env), "    "))
    return str(path)


def test_an_environment_health_check_becomes_the_playbooks_extra_vars(tmp_path):
    # Given an environment whose /healthz answers {"checks": {"db": "up"}}
    path = write(tmp_path, """\
        health:
          path: /healthz
          port: 9310
          expect_status: [200]
          body_json: {field: checks.db, values: [ok, up]}
          body_contains: checks
        """)
    # When the config is loaded
    env = load_config(path).environment("production")
    # Then the check is the environment's, and the playbooks get it as extra vars
    assert env.health_check == HealthCheck((200,), BodyJson("checks.db", ("ok", "up")), "checks")
    got = env.playbook_vars()
    assert (got["lrelease_health_path"], got["lrelease_app_port"]) == ("/healthz", 9310)
    assert got["lrelease_health_expect_status"] == [200]
    assert got["lrelease_health_body_json"] == {"field": "checks.db", "values": ["ok", "up"]}
    assert got["lrelease_health_body_contains"] == "checks"


def test_a_mistake_in_the_health_check_names_the_file_and_the_key(tmp_path):
    path = write(tmp_path, "health: {body_json: {field: ok, values: []}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.where == path and err.value.key == "environments.production.health.body_json.values"


def test_the_http_provider_is_the_health_only_gate_after_the_gates_bake(tmp_path):
    # Given a gate: section naming the http provider with its own bake
    path = write(tmp_path, "bake_seconds: 5\ngate: {provider: http, bake_seconds: 40}\n")
    # When it is loaded
    env = load_config(path).environment("production")
    # Then the gate is the health check (kind health), after the gate's bake; no APM settings travel
    assert env.gate is not None and (env.gate.provider, env.gate.kind) == ("http", "health")
    got = env.playbook_vars()
    assert got["lrelease_bake_seconds"] == 40 and "lrelease_gate_apm" not in got


@pytest.mark.parametrize(("gate", "key", "expected"), [
    ("{provider: http, policy: halt}", "gate.policy", "not a setting of the http gate"),
    ("{provider: {kind: http, path: /x}}", "gate.provider.path", "kind"),  # the schema's words, or ours
    ("{provider: htp}", "gate.provider", "one of scrape, prometheus, datadog, newrelic, http, got 'htp'"),
])
def test_the_http_gate_refuses_what_it_does_not_use(tmp_path, gate, key, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f"gate: {gate}\n"))
    assert err.value.key == f"environments.production.{key}" and expected in err.value.expected


# -- the example file's commented gate section is valid as written ---------------------------
def example_gates() -> list[tuple[str, str]]:
    """The commented ``gate:`` section of lrelease.example.yml, uncommented, once per provider
    block (the judge's keys with each): [(kind, YAML of the gate mapping)]."""
    from pathlib import Path

    lines = (Path(__file__).resolve().parents[2] / "lrelease.example.yml").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("    # gate:")))
    live = []
    for line in lines[start + 1:]:
        if not line.startswith("    #   "):
            if line.strip().startswith("#") and not line.startswith("    #"):
                continue  # a comment continuing the line above
            break
        live.append("  " + line[len("    #   "):])
    blocks: dict[str, list[str]] = {}
    judge: list[str] = []
    current: list[str] | None = None
    for line in live:
        if line.startswith("  provider:") and line.strip() == "provider:":
            current = []
            blocks[str(len(blocks))] = current
        elif not line.startswith("    ") and current is not None and not line.startswith("  provider"):
            current = None
        if current is not None:
            current.append(line)
        elif not line.startswith("  provider"):
            judge.append(line)
    out = []
    for block in blocks.values():
        kind = next(b.split(":", 1)[1].split("#")[0].strip() for b in block if b.strip().startswith("kind:"))
        out.append((kind, "\n".join(block + judge)))
    return out


def test_the_examples_gate_section_loads_for_every_provider(tmp_path):
    # Given the example's commented gate section, one provider block at a time
    gates = example_gates()
    assert sorted(kind for kind, _ in gates) == ["datadog", "newrelic", "prometheus", "prometheus", "scrape"]
    for kind, gate in gates:
        # When it is uncommented into an environment
        path = write(tmp_path, "gate:\n" + gate + "\n")
        # Then it loads, with that provider and the judge's keys as written
        env = load_config(path).environment("production")
        assert env.gate is not None and env.gate.provider == kind, kind
        assert env.gate.judge_config().max_bake_seconds == 1800 and env.gate.judge["policy"] == "halt"


def test_plan_times_the_http_gate_as_the_health_check_with_the_gates_bake(tmp_path):
    # Given an environment whose gate is the http provider with its own bake
    from lrelease.plan import GateTiming

    env = load_config(write(tmp_path, "bake_seconds: 5\ngate: {provider: http, bake_seconds: 40}\n")
                      ).environment("production")
    # When plan estimates its gate
    timing = GateTiming.for_environment(env)
    # Then it is the health check (no APM looks) after the gate's 40 s
    assert (timing.kind, timing.bake_seconds, timing.bake_from) == ("http", 40.0, "gate.bake_seconds")


@pytest.mark.parametrize(("gate", "key", "expected"), [
    ({"provider": {"kind": "http", "path": "/x"}}, "gate.provider.path", "no settings with kind http"),
    ({"provider": "http", "max_bake_seconds": 60}, "gate.max_bake_seconds", "not a setting of the http gate"),
])
def test_the_gate_settings_themselves_refuse_what_the_http_gate_does_not_use(gate, key, expected):
    # (lrelease.yml is checked against the JSON Schema first; these are the checks behind it)
    from lrelease.gate.settings import parse_gate

    with pytest.raises(ConfigError) as err:
        parse_gate(Checker("lrelease.yml"), gate, "gate", default_bake=10)
    assert err.value.key == key and expected in err.value.expected
