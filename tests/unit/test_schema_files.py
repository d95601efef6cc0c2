"""The JSON Schemas of lrelease.yml and the fleet file: one description of every key, for editors,
the reference page and the loader; a file with several mistakes reports all of them at once."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from lrelease.apm import datadog, newrelic, prometheus, scrape
from lrelease.cli.main import cli
from lrelease.config import load_config
from lrelease.errors import ConfigError, ConfigErrors
from lrelease.fleet import load_fleet
from lrelease.gate.judge_config import ErrorCheck, JudgeConfig, LatencyCheck
from lrelease.schema import load_yaml_mapping
from lrelease.schema_check import SCHEMA_DIR, problems
from lrelease.schema_doc import NAME, schema_keys
from tests.unit import test_config, test_fleet

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {"lrelease": ROOT / "lrelease.example.yml", "fleet": ROOT / "inventories" / "fleet.example.yml"}


# -- the schemas themselves -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["lrelease", "fleet"])
def test_the_schemas_are_valid_draft_2020_12(name):
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", ["lrelease", "fleet"])
def test_every_key_says_what_it_does_and_what_is_expected(name):
    # Given every key the schema accepts
    keys = schema_keys(name)
    assert len(keys) > (100 if name == "lrelease" else 5)
    # Then each has a description (editors show it) and a short "expected" text (errors show it)
    for key in keys:
        assert key.node.get("description"), f"{key.path} has no description"
        assert key.node.get("errorMessage"), f"{key.path} has no errorMessage (the expected text)"


# -- the examples ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lrelease", "fleet"])
def test_the_schema_accepts_the_shipped_example(name):
    data = yaml.safe_load(EXAMPLES[name].read_text())
    assert [str(e) for e in problems(data, name, str(EXAMPLES[name]))] == []


_COMMENTED_KEY = re.compile(r"^(\s*)#\s?(\s*(?:-\s+)?[A-Za-z_][A-Za-z0-9_]*:(?:\s.*)?)$")
_KEY_LINE = re.compile(r"^(\s*)(-\s+)?([A-Za-z_][A-Za-z0-9_]*):(.*)$")


def example_keys(text: str) -> set[tuple[str, ...]]:
    """The key paths written in an example, live or commented out. A commented-out key is a line
    whose '#' sits where the key would be indented (``      # port: 8080`` under ``health:``); the
    marker is stripped and the line read like any other. Prose comments (not ``word:`` right after
    the '#') are dropped. Flow mappings on a line (``{command: [...], run_once: true}``) count."""
    paths: set[tuple[str, ...]] = set()
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines():
        commented = _COMMENTED_KEY.match(raw)
        line = commented.group(1) + commented.group(2) if commented else raw
        if line.lstrip().startswith("#"):
            continue
        line = re.sub(r"\s+#.*$", "", line)
        match = _KEY_LINE.match(line)
        if not match:
            continue
        indent = len(match.group(1)) + len(match.group(2) or "")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(k for _, k in stack), match.group(3))
        paths.add(path)
        rest = match.group(4).strip()
        if rest.startswith("{"):
            try:
                _flow_paths(yaml.safe_load(rest), path, paths)
            except yaml.YAMLError:
                pass
        stack.append((indent, match.group(3)))
    return paths


def _flow_paths(value, path: tuple[str, ...], out: set) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            out.add((*path, str(k)))
            _flow_paths(v, (*path, str(k)), out)
    elif isinstance(value, list):
        for item in value:
            _flow_paths(item, path, out)


def _written(schema_path: str, written: set[tuple[str, ...]]) -> bool:
    want = schema_path.replace("[]", "").split(".")
    return any(len(p) == len(want) and all(w in (NAME, g) for w, g in zip(want, p)) for p in written)


def test_the_comment_reader_sees_live_and_commented_keys_only():
    # Given a snippet with live keys, a commented alternative, a flow mapping and prose
    text = ("a:\n  b: 1            # trailing words: not a key\n  # c: 2\n  d: {e: 1, f: [{g: 2}]}\n"
            "# Prose here: not a key either\n  # h:\n  #   - i: 1\n  #     j: 2\n")
    # Then the paths are the keys, wherever they sit
    assert example_keys(text) == {("a",), ("a", "b"), ("a", "c"), ("a", "d"), ("a", "d", "e"), ("a", "d", "f"),
                                  ("a", "d", "f", "g"), ("a", "h"), ("a", "h", "i"), ("a", "h", "j")}
    assert _written("a.<name>.e", {("a", "d", "e")}) and not _written("a.c.e", {("a", "d", "e")})


@pytest.mark.parametrize("name", ["lrelease", "fleet"])
def test_the_example_holds_every_key_the_schema_accepts(name):
    # Given the example file, commented-out keys included (see example_keys)
    written = example_keys(EXAMPLES[name].read_text())
    # Then every key of the schema is in it (a new key cannot ship without its example)
    missing = [k.path for k in schema_keys(name) if not _written(k.path, written)]
    assert missing == [], f"{EXAMPLES[name].name} lacks: {', '.join(missing)}"


# -- the malformed configs of the test suite --------------------------------------------------
# What a JSON Schema cannot say; config.py and fleet.py refuse these after the schema passed.
SEMANTIC = {
    "url with a bad IPv6 host": "a URL that parses",
    "url port out of range": "a port from 1 to 65535",
    "url port zero": "a port from 1 to 65535",
    "APM url with a bad IPv6 host": "a URL that parses",
    "APM url port out of range": "a port from 1 to 65535",
}
CONFIG_CASES = [(c[0], c[1], c[2]) for c in test_config.BAD + test_config.HOSTILE if callable(c[1])]
FLEET_CASES = [(c[0], c[1], c[2]) for c in test_fleet.BAD + test_fleet.HOSTILE]


def _refused_by_the_loader(tmp_path: Path, text: str, key: str) -> bool:
    """True when the YAML loader refuses ``text`` (aliases, .nan, 2**63, a key twice...) before
    any schema sees it; then it must name ``key`` itself."""
    path = tmp_path / "file.yml"
    path.write_text(text)
    try:
        load_yaml_mapping(path, "file")
    except ConfigError as err:
        assert err.key == key, str(err)
        return True
    return False


@pytest.mark.parametrize("case, edit, key", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_the_schema_rejects_the_malformed_configs_of_the_suite(tmp_path, case, edit, key):
    # Given a malformed lrelease.yml of tests/unit/test_config.py
    data = test_config.changed(edit)
    if _refused_by_the_loader(tmp_path, yaml.safe_dump(data), key):
        return
    # When it is checked against the schema
    found = problems(data, "lrelease", "lrelease.yml")
    # Then the schema itself names the key (or the case is one only the semantic checks can see)
    if case in SEMANTIC:
        assert found == [], [str(e) for e in found]
    else:
        assert [e.key for e in found] == [key], [str(e) for e in found]


@pytest.mark.parametrize("edit, key", test_config.SECRETS, ids=[k for _, k in test_config.SECRETS])
def test_the_schema_also_rejects_the_secret_keys_of_the_suite(edit, key):
    # (load_config refuses them earlier, naming the secret's own key without echoing it)
    found = problems(test_config.changed(edit), "lrelease", "lrelease.yml")
    assert len(found) == 1 and key.startswith(found[0].key), [str(e) for e in found]


@pytest.mark.parametrize("case, text, key", FLEET_CASES, ids=[c[0] for c in FLEET_CASES])
def test_the_schema_rejects_the_malformed_fleets_of_the_suite(tmp_path, case, text, key):
    if _refused_by_the_loader(tmp_path, text, key):
        return
    found = problems(yaml.safe_load(text), "fleet", "fleet.yml")
    if key.rsplit(".", 1)[-1] in ("ansible_password", "ansible_become_pass"):
        assert found == []  # a var's name is the user's: the secret check refuses it, before the schema
    else:
        assert [e.key for e in found] == [key], [str(e) for e in found]


def test_a_value_ending_in_a_newline_fails_the_schema_itself():
    # ECMA-262 patterns: $ is the end of the text, so "demoapp\n" does not match ^[a-z]...$
    data = test_config.changed(lambda d: d.update(app="demoapp\n"))
    assert [e.key for e in problems(data, "lrelease", "x")] == ["app"]


# -- several mistakes at once ---------------------------------------------------------------
THREE_MISTAKES = """\
version: 1
app: Demo App
environments:
  production:
    waves: [1, 0, "100%"]
    deploy_root: /srv/demoapp
    service: {command: /srv/demoapp/bin/demoapp-service}
    health: {port: 70000}
"""


def test_a_config_with_three_mistakes_reports_three_lines(tmp_path):
    # Given an lrelease.yml with three mistakes
    path = tmp_path / "lrelease.yml"
    path.write_text(THREE_MISTAKES)
    # When it is loaded
    with pytest.raises(ConfigErrors) as err:
        load_config(path)
    # Then all three are reported, in file order, each naming the file, the key and what was expected
    assert [str(e) for e in err.value.errors] == [
        f"{path}: app: a name of lower-case letters, digits, '-' and '_' (e.g. demoapp), got 'Demo App'",
        f"{path}: environments.production.waves[1]: an integer from 1 to 10000 or a percentage \"1%\" to "
        "\"100%\", or pause between two waves, got 0",
        f"{path}: environments.production.health.port: an integer from 1 to 65535, got 70000",
    ]
    assert str(err.value).splitlines() == [str(e) for e in err.value.errors]
    # And it is still a ConfigError (exit 2) carrying the first one's key
    assert isinstance(err.value, ConfigError) and err.value.key == "app" and err.value.exit_code == 2


def test_the_cli_prints_each_mistake_on_its_own_line_and_changes_nothing(tmp_path):
    path = tmp_path / "lrelease.yml"
    path.write_text(THREE_MISTAKES)
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(cli, ["plan", "--env", "production", "--config", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"lrelease: error: {path}: ") for line in lines), lines
    assert [line.split(": ")[3] for line in lines] == ["app", "environments.production.waves[1]",
                                                        "environments.production.health.port"]
    assert sorted(tmp_path.rglob("*")) == before


def test_one_mistake_is_a_plain_config_error(tmp_path):
    path = tmp_path / "lrelease.yml"
    path.write_text(THREE_MISTAKES.replace("Demo App", "demoapp").replace("0, ", "").replace("70000", "8080")
                    .replace("waves:", "wavez:"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert type(err.value) is ConfigError and err.value.key == "environments.production.wavez"
    assert "unknown key; expected one of " in str(err.value) and "\n" not in str(err.value)


def test_a_misspelt_key_is_not_also_reported_missing(tmp_path):
    # Given deploy_root misspelt: the unknown key is the mistake, not a missing deploy_root
    path = tmp_path / "lrelease.yml"
    path.write_text(THREE_MISTAKES.replace("deploy_root", "deploy_rot"))
    with pytest.raises(ConfigErrors) as err:
        load_config(path)
    keys = [e.key for e in err.value.errors]
    assert "environments.production.deploy_rot" in keys and "environments.production.deploy_root" not in keys


def test_what_sits_under_a_bad_name_is_not_looked_at(tmp_path):
    # Given an environment with a bad name, and two mistakes in its body
    path = tmp_path / "lrelease.yml"
    path.write_text(THREE_MISTAKES.replace("app: Demo App", "app: demoapp").replace("  production:", "  pre-prod:"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    # Then the name is the one line: the wave and the port under it are not reported as well
    assert type(err.value) is ConfigError and err.value.key == "environments.pre-prod"


def test_a_secret_is_reported_alone_and_never_echoed(tmp_path):
    # Given a token in the file and a structural mistake too
    path = tmp_path / "lrelease.yml"
    path.write_text(THREE_MISTAKES + "token: xoxb-secret-1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "token" and "xoxb-secret-1" not in str(err.value) and "\n" not in str(err.value)


def test_a_fleet_with_several_mistakes_reports_each(tmp_path):
    path = tmp_path / "fleet.yml"
    path.write_text("nodes:\n  node1: {environment: Production, address: 198.18.77.11}\n"
                    "  node2: {environment: production, address: web 2, tags: [Canary]}\n")
    with pytest.raises(ConfigErrors) as err:
        load_fleet(path)
    assert [e.key for e in err.value.errors] == ["nodes.node1.environment", "nodes.node2.address",
                                                 "nodes.node2.tags[0]"]


def test_a_url_is_never_echoed_in_a_schema_error():
    data = test_config.changed(lambda d: d.update(artifacts={"source": "url", "url": "https://u:pw@ci/x.tar.gz"}))
    [err] = problems(data, "lrelease", "x")
    assert err.key == "artifacts.url" and "pw@" not in str(err)


# -- defaults: the schema says what the code does ----------------------------------------------
def _node(path: str) -> dict:
    for key in schema_keys("lrelease"):
        if key.path == path:
            return dict(key.node)
    raise AssertionError(f"no {path} in the schema")


def _provider_default(kind: str, setting: str):
    for key in schema_keys("lrelease"):
        if key.path.endswith(f"gate.provider.{setting}") and key.only_with == f"kind: {kind}":
            return key.node.get("default")
    raise AssertionError(f"no {kind} setting {setting}")


def test_the_schema_defaults_are_the_codes_defaults(tmp_path):
    # Given a minimal environment (every optional key left out)
    path = tmp_path / "lrelease.yml"
    path.write_text("version: 1\napp: demoapp\nenvironments:\n  dev:\n    deploy_root: /srv/demoapp\n"
                    "    service: {systemd: demoapp}\n")
    cfg = load_config(path)
    env = cfg.environment("dev")
    e = "environments.<name>"
    assert list(env.waves) == _node(f"{e}.waves")["default"]
    assert env.bake_seconds == _node(f"{e}.bake_seconds")["default"]
    assert env.gate_timeout_seconds == _node(f"{e}.gate_timeout_seconds")["default"]
    assert env.keep_releases == _node(f"{e}.keep_releases")["default"]
    assert env.health_path == _node(f"{e}.health.path")["default"]
    assert env.rollback_min_in_service == _node(f"{e}.rollback.min_in_service")["default"]
    assert env.rollback_serial == _node(f"{e}.rollback.serial")["default"]
    assert cfg.fleet == tmp_path / _node("fleet")["default"]
    assert cfg.state_dir == tmp_path / _node("state_dir")["default"]
    assert cfg.artifacts.path == tmp_path / _node("artifacts.path")["default"]
    # And the gate's judge and providers
    judge, errors, latency = JudgeConfig(), ErrorCheck(), LatencyCheck()
    for name in ("max_bake_seconds", "interval_seconds", "policy", "alpha", "beta", "min_requests"):
        assert getattr(judge, name) == _node(f"{e}.gate.{name}")["default"], name
    for name in ("compare", "margin", "detect_ratio", "floor", "max_rate"):
        assert getattr(errors, name) == _node(f"{e}.gate.errors.{name}")["default"], name
    for name in ("compare", "quantile", "margin", "detect", "floor_ms", "max_ms", "method"):
        assert getattr(latency, name) == _node(f"{e}.gate.latency.{name}")["default"], name
    s = scrape.ScrapeSettings()
    for name in ("requests_metric", "latency_metric", "code_label", "error_codes", "metrics_path",
                 "start_time_metric", "timeout", "tolerance", "sample_seconds", "state_path"):
        assert getattr(s, name) == _provider_default("scrape", name), name
    assert dict(s.match) == _provider_default("scrape", "match")
    assert dict(s.exclude) == _provider_default("scrape", "exclude")
    p = prometheus.PrometheusSettings(url="http://x")
    for name in ("requests_query", "errors_query", "latency_query", "timeout"):
        assert getattr(p, name) == _provider_default("prometheus", name), name
    d = datadog.DatadogSettings(base_url="x")
    for name in ("requests_query", "errors_query", "timeout"):  # "" in the code: required, no default
        assert (getattr(d, name) or None) == _provider_default("datadog", name), name
    n = newrelic.NewRelicSettings(account_id=1)
    for name in ("nrql", "timeout"):
        assert getattr(n, name) == _provider_default("newrelic", name), name


def test_problems_do_not_change_the_data():
    data = test_config.changed(lambda d: d.update(app="Demo App"))
    before = copy.deepcopy(data)
    problems(data, "lrelease", "x")
    assert data == before
