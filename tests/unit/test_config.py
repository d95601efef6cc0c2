"""lrelease.yml: loaded into dataclasses, mapped to playbook vars; bad input is one clear line."""

from __future__ import annotations

import copy
import hashlib
import time
from pathlib import Path

import pytest
import yaml

from lrelease.config import BuildNotFound, load_config
from lrelease.errors import ConfigError, ExitCode

ROOT = Path(__file__).resolve().parents[2]
SHA = "a" * 64

GOOD = {
    "version": 1,
    "app": "demoapp",
    "fleet": "inventories/fleet.yml",
    "state_dir": ".lrelease",
    "artifacts": {"source": "dir", "path": "artifacts"},
    "environments": {
        "production": {
            "waves": [1, 1, "50%", "100%"],
            "bake_seconds": 10,
            "gate_timeout_seconds": 30,
            "deploy_root": "/srv/demoapp",
            "service": {"command": "/srv/demoapp/bin/demoapp-service"},
            "health": {"path": "/health", "port": 8080},
            "keep_releases": 5,
            "lb": {"haproxy_socket": "/run/haproxy/admin.sock", "backend": "be_demoapp"},
            "rollback": {"serial": False},
        },
        "next": {"deploy_root": "/srv/demoapp", "service": {"systemd": "demoapp"}},
    },
}


def write_config(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "lrelease.yml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def changed(edit) -> dict:
    data = copy.deepcopy(GOOD)
    edit(data)
    return data


def prod(**kv):
    return lambda d: d["environments"]["production"].update(kv)


def drop(*keys):
    def edit(d):
        target = d
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
    return edit


def test_a_full_config_loads_into_frozen_dataclasses(tmp_path):
    # Given a complete lrelease.yml
    path = write_config(tmp_path, GOOD)
    # When it is loaded
    cfg = load_config(path)
    # Then paths are resolved against its directory and every field is typed
    assert cfg.path == path and cfg.root == tmp_path
    assert cfg.fleet == tmp_path / "inventories" / "fleet.yml"
    assert cfg.db_path == tmp_path / ".lrelease" / "lrelease.db"
    assert cfg.artifacts.source == "dir" and cfg.artifacts.path == tmp_path / "artifacts"
    assert cfg.environment_names == ("production", "next")
    prod_env = cfg.environment("production")
    assert prod_env.waves == (1, 1, "50%", "100%") and prod_env.keep_releases == 5
    with pytest.raises(AttributeError):
        prod_env.keep_releases = 1  # frozen


def test_playbook_vars_are_the_design_variables(tmp_path):
    cfg = load_config(write_config(tmp_path, GOOD))
    # When production's settings become extra vars
    got = cfg.environment("production").playbook_vars()
    # Then they carry the names of docs/design.md
    assert got == {
        "lrelease_waves": [1, 1, "50%", "100%"],
        "lrelease_bake_seconds": 10,
        "lrelease_gate_timeout": 30,
        "lrelease_deploy_root": "/srv/demoapp",
        "lrelease_service_command": "/srv/demoapp/bin/demoapp-service",
        "lrelease_health_path": "/health",
        "lrelease_health_expect_status": [],  # any 2xx
        "lrelease_health_body_json": {},
        "lrelease_health_body_contains": "",
        "lrelease_app_port": 8080,
        "lrelease_keep_releases": 5,
        "lrelease_lb_socket": "/run/haproxy/admin.sock",
        "lrelease_lb_backend": "be_demoapp",
        "lrelease_rollback_min_in_service": "50%",
        "lrelease_gate_kind": "health",  # no gate: section: the health check, said explicitly
        "lrelease_shared_dirs": [],  # no shared: section
        "lrelease_shared_files": [],
        "lrelease_hooks": {},  # no hooks: section
    }


def test_defaults_fill_what_an_environment_leaves_out(tmp_path):
    # Given an environment with only the required keys, and systemd as the service
    got = load_config(write_config(tmp_path, GOOD)).environment("next").playbook_vars()
    # Then the defaults apply, no app port is forced on hosts and no LB is drained
    assert got["lrelease_waves"] == [1, "100%"]
    assert got["lrelease_bake_seconds"] == 10 and got["lrelease_gate_timeout"] == 30
    assert got["lrelease_service_name"] == "demoapp" and "lrelease_service_command" not in got
    assert "lrelease_app_port" not in got
    assert got["lrelease_lb_socket"] == "" and got["lrelease_lb_backend"] == ""
    assert got["lrelease_health_path"] == "/health" and got["lrelease_keep_releases"] == 5


def test_serial_rollback_maps_to_one_host_at_a_time(tmp_path):
    cfg = load_config(write_config(tmp_path, changed(prod(rollback={"serial": True}))))
    assert cfg.environment("production").playbook_vars()["lrelease_rollback_serial"] == 1


def test_minimal_config_uses_default_paths(tmp_path):
    cfg = load_config(write_config(tmp_path, {"version": 1, "app": "demoapp", "environments": {
        "dev": {"deploy_root": "/srv/demoapp/", "service": {"systemd": "demoapp"}}}}))
    assert cfg.fleet == tmp_path / "inventories" / "fleet.yml"
    assert cfg.state_dir == tmp_path / ".lrelease"
    assert cfg.artifacts.path == tmp_path / "artifacts"
    assert cfg.environment("dev").deploy_root == "/srv/demoapp"


def test_the_shipped_example_is_valid():
    cfg = load_config(ROOT / "lrelease.example.yml")
    assert set(cfg.environment_names) >= {"production", "next", "dev"}


def test_unknown_environment_lists_the_known_ones(tmp_path):
    path = write_config(tmp_path, GOOD)
    with pytest.raises(ConfigError) as err:
        load_config(path).environment("staging")
    assert str(err.value) == f"{path}: environments: one of production, next; no environment 'staging'"
    assert err.value.exit_code == ExitCode.USAGE


BAD = [
    # (what is wrong, edit or raw YAML, key, words of the expectation)
    ("no version", drop("version"), "version", "required"),
    ("future version", lambda d: d.update(version=2), "version", "1 (the schema version this lrelease reads), got 2"),
    ("app with spaces", lambda d: d.update(app="demo app"), "app", "lower-case letters"),
    ("unknown top key", lambda d: d.update(colour="blue"), "colour",
     "unknown key; expected one of app, artifacts, environments, fleet, git, notifications, state_dir, version"),
    ("no environments", lambda d: d.update(environments={}), "environments", "at least one"),
    ("environments a list", lambda d: d.update(environments=["production"]), "environments", "a mapping"),
    ("env name with dash", lambda d: d["environments"].update({"pre-prod": {}}), "environments.pre-prod",
     "Ansible group name"),
    ("env not a mapping", lambda d: d["environments"].update(dev=3), "environments.dev", "a mapping"),
    ("no deploy_root", drop("environments", "production", "deploy_root"), "environments.production.deploy_root",
     "required"),
    ("waves empty", prod(waves=[]), "environments.production.waves", "non-empty list such as [1, \"50%\", \"100%\"], got an empty list"),
    ("waves scalar", prod(waves=1), "environments.production.waves", "non-empty list"),
    ("wave zero", prod(waves=[1, 0]), "environments.production.waves[1]", 'percentage "1%" to "100%", or pause between two waves, got 0'),
    ("wave 150%", prod(waves=[1, 1, "150%"]), "environments.production.waves[2]", "got '150%'"),
    ("wave bool", prod(waves=[True]), "environments.production.waves[0]", "got true"),
    ("negative bake", prod(bake_seconds=-1), "environments.production.bake_seconds", ">= 0"),
    ("bake as text", prod(bake_seconds="10s"), "environments.production.bake_seconds", "got '10s'"),
    ("zero gate timeout", prod(gate_timeout_seconds=0), "environments.production.gate_timeout_seconds", "> 0"),
    ("relative deploy_root", prod(deploy_root="srv/app"), "environments.production.deploy_root", "absolute path"),
    ("deploy_root /srv", prod(deploy_root="/srv/"), "environments.production.deploy_root", "of its own"),
    ("deploy_root with ..", prod(deploy_root="/srv/a/../etc"), "environments.production.deploy_root", "absolute"),
    ("two services", prod(service={"command": "/bin/x", "systemd": "x"}), "environments.production.service",
     "exactly one of command or systemd"),
    ("service unknown key", prod(service={"docker": "x"}), "environments.production.service.docker",
     "unknown key"),
    ("relative command", prod(service={"command": "bin/x"}), "environments.production.service.command",
     "absolute path"),
    ("port too big", prod(health={"port": 70000}), "environments.production.health.port", "from 1 to 65535"),
    ("health path", prod(health={"path": "health"}), "environments.production.health.path", "starting with /"),
    ("keep 1", prod(keep_releases=1), "environments.production.keep_releases", "from 2 to 100"),
    ("lb without backend", prod(lb={"haproxy_socket": "/run/a.sock"}), "environments.production.lb.backend",
     "required"),
    ("rollback serial text", prod(rollback={"serial": "yes please"}), "environments.production.rollback.serial",
     "true or false"),
    ("unknown env key", prod(canary=1), "environments.production.canary", "unknown key"),
    ("artifact source", lambda d: d.update(artifacts={"source": "s3"}), "artifacts.source", "'dir' or 'url'"),
    ("url without url", lambda d: d.update(artifacts={"source": "url"}), "artifacts.url", "required"),
    ("url without build", lambda d: d.update(artifacts={"source": "url", "url": "https://ci/x.tar.gz"}),
     "artifacts.url", "{build}"),
    ("url other placeholder", lambda d: d.update(artifacts={"source": "url", "url": "https://ci/{env}/{build}"}),
     "artifacts.url", "no other"),
    ("url ftp", lambda d: d.update(artifacts={"source": "url", "url": "ftp://ci/{build}"}), "artifacts.url",
     "http(s) URL"),
    ("dir with url", lambda d: d.update(artifacts={"source": "dir", "url": "https://x/{build}"}), "artifacts.url",
     "source: dir"),
    ("fleet empty", lambda d: d.update(fleet=""), "fleet", "a path"),
    ("top level list", "- 1\n- 2\n", "(top level)", "a mapping"),
    ("empty file", "", "(top level)", "a mapping"),
    ("yaml syntax", "version: 1\napp: [demoapp\n", "line 3, column 1", "valid YAML"),
    ("duplicate key", "version: 1\nversion: 1\napp: x\n", "line 2, column 1", "appears twice"),
    ("non-string env key", "version: 1\napp: demoapp\nenvironments:\n  no: {}\n", "environments", "string keys"),
]


@pytest.mark.parametrize("case, edit, key, expected", BAD, ids=[c[0] for c in BAD])
def test_bad_config_names_file_key_and_expectation_in_one_line(tmp_path, case, edit, key, expected):
    # Given a config with one mistake
    path = write_config(tmp_path, edit if isinstance(edit, str) else changed(edit))
    # When it is loaded
    with pytest.raises(ConfigError) as err:
        load_config(path)
    # Then the error is one line: file, key, what was expected
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message, message
    assert err.value.where == str(path) and err.value.key == key


SECRETS = [
    (lambda d: d.update(api_key="abc123"), "api_key"),
    (prod(webhook_url="https://hooks.example.com/T000/B000"), "environments.production.webhook_url"),
    (prod(lb={"haproxy_socket": "/a.sock", "backend": "b", "password": "hunter2"}),
     "environments.production.lb.password"),
    (lambda d: d.update(notify={"slack": {"token": "xoxb-1"}}), "notify.slack.token"),
    (lambda d: d.update(apm={"targets": [{"api_key": "k"}]}), "apm.targets[0].api_key"),
]


@pytest.mark.parametrize("edit, key", SECRETS, ids=[k for _, k in SECRETS])
def test_secrets_are_refused_with_a_hint_and_never_echoed(tmp_path, edit, key):
    path = write_config(tmp_path, changed(edit))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: no secrets in this file")
    leaf = key.rsplit(".", 1)[-1].split("]")[-1].lstrip(".")
    assert message.endswith(f"e.g. {leaf}_env: MYAPP_{leaf.upper()}"), message
    for secret in ("abc123", "hooks.example.com", "hunter2", "xoxb-1"):
        assert secret not in message


def test_names_of_environment_variables_are_not_secrets(tmp_path):
    # Given a key naming the variable that holds a secret (a later issue's setting)
    data = changed(lambda d: d.update(api_key_env="DEMOAPP_APM_KEY"))
    # Then it is not refused as a secret, only as a key this version does not know
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, data))
    assert err.value.key == "api_key_env" and "unknown key" in str(err.value)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.yml")
    assert str(err.value) == f"{tmp_path / 'nope.yml'}: (file): an existing lrelease config (lrelease.yml); no such file"


# -- artifacts ----------------------------------------------------------------------------
def make_artifact(tmp_path: Path, build: str, data: bytes = b"tarball") -> str:
    art = tmp_path / "artifacts"
    art.mkdir(exist_ok=True)
    (art / f"demoapp-{build}.tar.gz").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (art / f"demoapp-{build}.tar.gz.sha256").write_text(f"{digest}  demoapp-{build}.tar.gz\n")
    return digest


def test_artifact_from_dir_reads_the_sha256_file(tmp_path):
    # Given an artifacts dir with a build and its checksum file (sha256sum format)
    digest = make_artifact(tmp_path, "1.1.0")
    cfg = load_config(write_config(tmp_path, GOOD))
    # When the build is looked up
    ref = cfg.artifact_for("1.1.0")
    # Then it points at the tarball with the recorded sha256
    assert ref.build == "1.1.0" and ref.sha256 == digest
    assert ref.path == tmp_path / "artifacts" / "demoapp-1.1.0.tar.gz" and ref.url is None
    assert ref.playbook_vars() == {"lrelease_build": "1.1.0", "lrelease_artifact_sha256": digest,
                                   "lrelease_artifact": str(ref.path), "lrelease_artifact_format": "tar.gz",
                                   "lrelease_artifact_strip_components": "auto"}


def test_unknown_build_is_a_usage_error_naming_the_missing_file(tmp_path):
    make_artifact(tmp_path, "1.1.0")
    cfg = load_config(write_config(tmp_path, GOOD))
    with pytest.raises(BuildNotFound) as err:
        cfg.artifact_for("1.2.3")
    assert str(err.value) == "build 1.2.3 not found: no artifacts/demoapp-1.2.3.tar.gz"
    assert err.value.exit_code == ExitCode.USAGE == 2


@pytest.mark.parametrize("checksum, words", [
    (None, "has no checksum: no readable artifacts/demoapp-1.0.0.tar.gz.sha256"),
    ("", "does not start with a sha256"),
    ("not-a-digest  demoapp-1.0.0.tar.gz\n", "does not start with a sha256"),
])
def test_missing_or_malformed_checksum_file_is_refused(tmp_path, checksum, words):
    make_artifact(tmp_path, "1.0.0")
    sha_file = tmp_path / "artifacts" / "demoapp-1.0.0.tar.gz.sha256"
    if checksum is None:
        sha_file.unlink()
    else:
        sha_file.write_text(checksum)
    with pytest.raises(BuildNotFound) as err:
        load_config(write_config(tmp_path, GOOD)).artifact_for("1.0.0")
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("build", ["../etc/passwd", "", "a/b", "-rf", "x" * 65])
def test_build_ids_cannot_escape_the_artifacts_dir(tmp_path, build):
    cfg = load_config(write_config(tmp_path, GOOD))
    with pytest.raises(BuildNotFound, match="is not a build id"):
        cfg.artifact_for(build)


def test_url_artifacts_take_the_checksum_given_or_from_the_checksums_dir(tmp_path):
    data = changed(lambda d: d.update(artifacts={"source": "url", "checksums": "sums",
                                                 "url": "https://ci.example.com/{app}/{app}-{build}.tar.gz"}))
    cfg = load_config(write_config(tmp_path, data))
    # Given a checksum on the command line
    ref = cfg.artifact_for("2.0.0", sha256=SHA.upper())
    assert ref.url == "https://ci.example.com/demoapp/demoapp-2.0.0.tar.gz" and ref.path is None
    assert ref.sha256 == SHA and ref.playbook_vars()["lrelease_artifact_url"] == ref.url
    # Given none: read from the checksums dir, and refused when it is not there
    with pytest.raises(BuildNotFound, match="has no checksum"):
        cfg.artifact_for("2.0.0")
    (tmp_path / "sums").mkdir()
    (tmp_path / "sums" / "demoapp-2.0.0.tar.gz.sha256").write_text("b" * 64 + "\n")
    assert cfg.artifact_for("2.0.0").sha256 == "b" * 64
    with pytest.raises(BuildNotFound, match="64 hex digits"):
        cfg.artifact_for("2.0.0", sha256="123")


def test_load_fleet_reports_a_missing_fleet_against_lrelease_yml(tmp_path):
    path = write_config(tmp_path, GOOD)
    with pytest.raises(ConfigError) as err:
        load_config(path).load_fleet()
    assert str(err.value) == f"{path}: fleet: an existing fleet file; no such file: inventories/fleet.yml"


def test_load_fleet_refuses_a_node_in_an_environment_lrelease_yml_does_not_have(tmp_path):
    # Given a fleet where one node's environment is misspelt
    path = write_config(tmp_path, GOOD)
    fleet = tmp_path / "inventories" / "fleet.yml"
    fleet.parent.mkdir()
    fleet.write_text("nodes:\n  node1: {environment: production, address: 10.0.0.1}\n"
                     "  node2: {environment: prodution, address: 10.0.0.2}\n")
    # Then loading it through the config names the node, instead of leaving it out of production
    with pytest.raises(ConfigError) as err:
        load_config(path).load_fleet()
    assert str(err.value) == (f"{fleet}: nodes.node2.environment: an environment of lrelease.yml "
                              "(production, next), got 'prodution'")
    fleet.write_text("nodes:\n  node1: {environment: production, address: 10.0.0.1}\n")
    assert load_config(path).load_fleet().hosts("production") == ("node1",)


# -- bad input: names, paths, numbers, YAML (issue 8) ---------------------------------------
P = "environments.production"
HOSTILE = [
    # (what is wrong, edit, key, words of the expectation): each got through before
    ("app ends in a newline", lambda d: d.update(app="demoapp\n"), "app", "lower-case letters"),
    ("env name ends in a newline", lambda d: d["environments"].update({"next\n": d["environments"].pop("next")}),
     "environments.'next\\n'", "Ansible group name"),
    ("wave ends in a newline", prod(waves=[1, "50%\n"]), f"{P}.waves[1]", 'percentage "1%" to "100%"'),
    ("wave of a billion hosts", prod(waves=[10**9]), f"{P}.waves[0]", "an integer from 1 to 10000"),
    ("unit ends in a newline", prod(service={"systemd": "demoapp\n"}), f"{P}.service.systemd", "systemd unit"),
    ("backend ends in a newline", prod(lb={"haproxy_socket": "/run/a.sock", "backend": "be\n"}), f"{P}.lb.backend",
     "HAProxy backend"),
    ("deploy_root with a space", prod(deploy_root="/srv/demo app"), f"{P}.deploy_root", "letters, digits"),
    ("deploy_root with ;", prod(deploy_root="/srv/demoapp;reboot"), f"{P}.deploy_root", "letters, digits"),
    ("deploy_root with $()", prod(deploy_root="/srv/$(id)"), f"{P}.deploy_root", "letters, digits"),
    ("deploy_root with a backtick", prod(deploy_root="/srv/`id`"), f"{P}.deploy_root", "letters, digits"),
    ("deploy_root with {{ }}", prod(deploy_root="/srv/{{ lookup('pipe', 'id') }}"), f"{P}.deploy_root",
     "letters, digits"),
    ("deploy_root with {% %}", prod(deploy_root="/srv/{% if 1 %}a{% endif %}"), f"{P}.deploy_root",
     "letters, digits"),
    ("deploy_root ends in a newline", prod(deploy_root="/srv/demoapp\n"), f"{P}.deploy_root", "letters, digits"),
    ("command with arguments in one string", prod(service={"command": "/srv/demoapp/bin/svc --fast"}),
     f"{P}.service.command", "or an argv list"),
    ("argv list with a shell argument", prod(service={"command": ["/usr/bin/env", "$(id)"]}), f"{P}.service.command[1]",
     "one argument"),
    ("argv list with a space in an argument", prod(service={"command": ["/usr/bin/env", "A=b c"]}),
     f"{P}.service.command[1]", "one argument"),
    ("argv list with a relative executable", prod(service={"command": ["env", "x"]}), f"{P}.service.command[0]",
     "the executable"),
    ("empty argv list", prod(service={"command": []}), f"{P}.service.command", "or an argv list"),
    ("argv list with a number", prod(service={"command": ["/usr/bin/env", 3]}), f"{P}.service.command[1]",
     "one argument"),
    ("command with ;", prod(service={"command": "/srv/demoapp/bin/svc;reboot"}), f"{P}.service.command",
     "letters, digits"),
    ("command with a newline", prod(service={"command": "/srv/demoapp/bin/svc\nreboot"}), f"{P}.service.command",
     "letters, digits"),
    ("socket with a space", prod(lb={"haproxy_socket": "/run/ha proxy.sock", "backend": "b"}),
     f"{P}.lb.haproxy_socket", "letters, digits"),
    ("health path with {{ }}", prod(health={"path": "/health{{ x }}"}), f"{P}.health.path", "a URL path"),
    ("health path ends in a newline", prod(health={"path": "/health\n"}), f"{P}.health.path", "a URL path"),
    ("bake NaN", prod(bake_seconds=float("nan")), f"{P}.bake_seconds", "a finite number"),
    ("bake infinite", prod(bake_seconds=float("inf")), f"{P}.bake_seconds", "a finite number"),
    ("gate timeout -inf", prod(gate_timeout_seconds=float("-inf")), f"{P}.gate_timeout_seconds", "a finite number"),
    ("bake of a year", prod(bake_seconds=365 * 86400), f"{P}.bake_seconds", "<= 86400 (seconds)"),
    ("bake of 10**30", prod(bake_seconds=10**30), f"{P}.bake_seconds", "a number below 2**63"),
    ("keep a billion", prod(keep_releases=10**9), f"{P}.keep_releases", "from 2 to 100"),
    ("url with a bad IPv6 host", lambda d: d.update(artifacts={"source": "url", "url": "http://[::1/{build}"}),
     "artifacts.url", "a URL that parses"),
    ("url port out of range", lambda d: d.update(artifacts={"source": "url", "url": "http://h:99999/{build}"}),
     "artifacts.url", "a URL that parses"),
    ("url port zero", lambda d: d.update(artifacts={"source": "url", "url": "http://h:0/{build}"}),
     "artifacts.url", "a port from 1 to 65535"),
    ("url ends in a newline", lambda d: d.update(artifacts={"source": "url", "url": "https://ci/{build}\n"}),
     "artifacts.url", "http(s) URL"),
    ("APM url with a bad IPv6 host", prod(gate={"provider": {"kind": "prometheus", "url": "http://[::1"}}),
     f"{P}.gate.provider", "url: an http:// or https:// URL: a URL that parses"),
    ("APM url port out of range", prod(gate={"provider": {"kind": "prometheus", "url": "http://h:99999"}}),
     f"{P}.gate.provider", "url: an http:// or https:// URL: a URL that parses"),
    ("state_dir with a newline", lambda d: d.update(state_dir=".lrelease\n"), "state_dir", "without control"),
    ("fleet with {{ }}", lambda d: d.update(fleet="{{ x }}.yml"), "fleet", "without control characters, {{ }}"),
]


@pytest.mark.parametrize("case, edit, key, expected", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_values_are_refused_in_one_line(tmp_path, case, edit, key, expected):
    # Given a config with a value that a shell, Jinja, Ansible or a file name would misread
    path = write_config(tmp_path, changed(edit))
    # When it is loaded, Then it is refused: one line naming the file, the key and what was expected
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message, message


RAW = [
    # (what is wrong, the YAML text, key, words of the expectation)
    ("a number of 5000 digits", "version: 1\napp: demoapp\nx: " + "9" * 5000 + "\n", "x", "a number below 2**63"),
    ("a float that overflows", "version: 1\nbake: 1.0e+400\n", "bake", "a finite number"),
    (".nan", "version: .nan\n", "version", "a finite number"),
    ("a date that is not one", "version: 1\nwhen: 2020-13-45\n", "when", "a real date"),
    ("an explicit int that is not one", "version: !!int 1.5\n", "version", "an integer"),
    ("an alias", "version: 1\na: &x [1]\nb: *x\n", "b", "no YAML aliases"),
    ("a merge of an alias", "version: 1\na: &x {k: 1}\nb: {<<: *x}\n", "b.<<", "no YAML aliases"),
    ("a recursive alias", "version: 1\na: &x [*x]\n", "a[0]", "no YAML aliases"),
    ("33 levels of nesting", "version: 1\nx: " + "[" * 33 + "]" * 33 + "\n", "x" + "[0]" * 31,
     "at most 32 levels of nesting"),
    ("900 levels of nesting", "version: 1\nx: " + "[" * 900 + "]" * 900 + "\n", "x" + "[0]" * 31,
     "at most 32 levels of nesting"),
    ("2000 levels of nesting", "version: 1\nx: " + "[" * 2000 + "]" * 2000 + "\n", "line 2, column 1003",
     "valid YAML (exceeded maximum nesting depth)"),
]


@pytest.mark.parametrize("case, text, key, expected", RAW, ids=[c[0] for c in RAW])
def test_yaml_that_would_crash_or_explode_is_one_line(tmp_path, case, text, key, expected):
    # Given a file PyYAML alone would crash on, expand exponentially or recurse into
    path = write_config(tmp_path, text)
    # When it is loaded, Then one line names the file, the key and what was expected
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message, message


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    # Given a "billion laughs": 12 levels of 4 aliases each (16 million leaves once expanded)
    lines = ["version: 1", "app: demoapp", "x0: &a0 [lol, lol]"]
    lines += [f"x{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 13)]
    path = write_config(tmp_path, "\n".join(lines) + "\n")
    # When it is loaded
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        load_config(path)
    # Then the first alias is refused before anything is expanded
    assert time.monotonic() - started < 1.0
    assert str(err.value) == f"{path}: x1[0]: no YAML aliases (*name) or merges of them; write the value out"


@pytest.mark.parametrize("case, make, expected", [
    ("a directory", lambda p: p.mkdir(), "a lrelease config (lrelease.yml), got a directory"),
    ("a device", lambda p: p.symlink_to("/dev/null"), "a lrelease config (lrelease.yml) that is a regular file"),
    ("over 16 MiB", lambda p: p.write_text("version: 1\n" + "#" * (16 << 20)), "of at most 16384 KiB"),
    ("not UTF-8", lambda p: p.write_bytes(b"version: 1\napp: \xff\n"), "readable UTF-8"),
])
def test_a_config_that_is_no_regular_small_text_file_is_one_line(tmp_path, case, make, expected):
    path = tmp_path / "lrelease.yml"
    make(path)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: (file): {expected}" or expected in str(err.value)
    assert str(err.value).startswith(f"{path}: (file): ") and "\n" not in str(err.value)


def test_a_state_dir_that_is_a_file_is_refused(tmp_path):
    # Given state_dir naming a file (or a path under one)
    (tmp_path / "state").write_text("not a directory\n")
    for state_dir in ("state", "state/deeper"):
        path = write_config(tmp_path, changed(lambda d, s=state_dir: d.update(state_dir=s)))
        # Then loading names the key, instead of a crash when the database is opened
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert str(err.value).startswith(f"{path}: state_dir: a directory (or where one can be made)")


@pytest.mark.parametrize("build", ["1.0.0\n", "1.0.0\n\n", "1.0.0 ", "1.0.0\x00"])
def test_a_build_id_with_a_trailing_newline_is_not_a_build_id(tmp_path, build):
    make_artifact(tmp_path, "1.0.0")
    cfg = load_config(write_config(tmp_path, GOOD))
    with pytest.raises(BuildNotFound, match="is not a build id"):
        cfg.artifact_for(build)


def test_a_checksum_with_a_trailing_newline_is_not_a_checksum(tmp_path):
    make_artifact(tmp_path, "1.0.0")
    cfg = load_config(write_config(tmp_path, GOOD))
    with pytest.raises(BuildNotFound, match="64 hex digits"):
        cfg.artifact_for("1.0.0", sha256=SHA + "\n")


CLI_BAD = [
    ("a number of 5000 digits", "version: " + "9" * 5000 + "\n", "version: a number below 2**63"),
    ("900 levels of nesting", "version: 1\nx: " + "[" * 900 + "]" * 900 + "\n", "at most 32 levels of nesting"),
    ("a bad URL", yaml.safe_dump(changed(lambda d: d.update(
        artifacts={"source": "url", "url": "http://[::1/{build}"}))), "artifacts.url: an http(s) URL: a URL that parses"),
    ("a port out of range", yaml.safe_dump(changed(lambda d: d.update(
        artifacts={"source": "url", "url": "http://h:99999/{build}"}))),
     "artifacts.url: an http(s) URL: a URL that parses"),
    ("a bake of .inf", yaml.safe_dump(changed(prod(bake_seconds=float("inf")))), "bake_seconds: a finite number"),
]


@pytest.mark.parametrize("case, text, expected", CLI_BAD, ids=[c[0] for c in CLI_BAD])
def test_the_cli_answers_bad_input_with_one_line_and_exit_2(tmp_path, case, text, expected):
    from click.testing import CliRunner

    from lrelease.cli.main import cli

    # Given a project whose lrelease.yml is bad in a way that used to end in a traceback
    path = write_config(tmp_path, text)
    before = sorted(tmp_path.rglob("*"))
    # When `lrelease plan` reads it
    result = CliRunner().invoke(cli, ["plan", "--env", "production", "--config", str(path)])
    # Then: exit 2, one line naming the file and the key, nothing written
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"lrelease: error: {path}: "), result.stderr
    assert expected in result.stderr, result.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_a_service_command_may_be_an_argv_list_handed_to_the_roles_as_a_list(tmp_path):
    # Given a service run through /usr/bin/env with an environment variable
    data = copy.deepcopy(GOOD)
    data["environments"]["production"]["service"] = {"command": ["/usr/bin/env", "APP_ENV=prod",
                                                                 "/srv/demoapp/bin/demoapp-service"]}
    # When loaded, Then the playbooks get the argv list as it is
    got = load_config(write_config(tmp_path, data)).environment("production").playbook_vars()
    assert got["lrelease_service_command"] == ["/usr/bin/env", "APP_ENV=prod", "/srv/demoapp/bin/demoapp-service"]
