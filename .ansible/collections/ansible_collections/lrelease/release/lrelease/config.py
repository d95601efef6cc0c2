"""The project config, ``lrelease.yml``: loaded, validated, turned into frozen dataclasses.

Schema (version 1; ``lrelease.example.yml`` at the repository root is the commented copy)::

    version: 1                        # required; the schema version
    app: demoapp                      # required; [a-z][a-z0-9_-]*, names the artifacts
    fleet: inventories/fleet.yml      # default; the fleet file, relative to lrelease.yml
    state_dir: .lrelease              # default; SQLite state etc., relative to lrelease.yml
    artifacts:                        # default {source: dir, path: artifacts}
      source: dir                     # dir: <path>/<app>-<build>.<format> + .<format>.sha256
      path: artifacts                 #   relative to lrelease.yml
      # source: url                   # url: hosts download it themselves
      # url: "https://ci.example.com/{app}/{app}-{build}.tar.gz"   # {app} {build} only
      # checksums: checksums          #   optional dir of <app>-<build>.<format>.sha256 files
      format: tar.gz                  # default; tar.gz | tar.zst | zip | binary (<app>-<build>, no
                                      #   extension: installed as releases/<build>/<app>, mode 0755)
      strip_components: auto          # default; auto | 0..8: leading directories dropped from every
                                      #   member (auto: exactly one top directory and nothing else)
    environments:                     # required; names: [a-z][a-z0-9_]* (Ansible group names)
      production:
        waves: [1, 1, "50%", "100%"]  # default [1, "100%"]; ints 1..10000 or "N%" (1..100)
        bake_seconds: 10              # default 10; >= 0 (every duration: finite, <= 86400)
        gate_timeout_seconds: 30      # default 30; > 0
        deploy_root: /srv/demoapp     # required; an absolute path of its own (schema.SAFE_PATH_RE)
        service: {command: /srv/demoapp/bin/demoapp-service}   # required; or {shell: "..."} (run
                                      # by /bin/sh -c, action as "$1"), or {systemd: unit, unit_file:
                                      # deploy/unit.service} (a file of the release; optional)
        health: {path: /health, port: 8080}   # default path /health; port optional (see below);
                                      # expect_status ("2xx" or [codes]), body_json {field, values},
                                      # body_contains: lrelease.healthcheck
        keep_releases: 5              # default 5; 2..100 (current and previous always stay)
        lb: {haproxy_socket: /run/haproxy/admin.sock, backend: be_demoapp}  # optional
        rollback:                     # a fleet rollback keeps capacity in service:
          min_in_service: "50%"       #   default "50%"; a host count >= 0 or "N%" (0..100) of the
                                      #   play's hosts (rounded up); as few parallel groups as allow it
          serial: false               #   default false; true: one host at a time (wins)
        inventory: inventories/production.yml   # optional: an Ansible inventory source used
                                                # instead of the one generated from the fleet
        shared: {dirs: [log], files: [.env]}   # optional; kept in <deploy_root>/shared (lrelease.hooks)
        hooks: {before_switch: [{command: [bin/migrate], run_once: true}]}   # optional (lrelease.hooks)
        captain: optional             # default optional: a release captain, once set, owns the roll-outs;
                                      # required: none starts without one (lrelease.policies)
        requires: {env: next, soak: 30m}   # optional: a build must first be proven on that other
                                      # environment (soak default 30m; d/h/m/s); lrelease.policies
        nightly: false                # default false; true: `lrelease nightly` acts here (lrelease.nightly)
        kind: release                 # default release; development: also takes feature branches' builds
                                      # (`deploy --branch`); no window, requires: or required captain there
    git:                              # default {}: release branches and builds (lrelease.branches, .builds)
      repository: .                   # default: the directory of lrelease.yml
      integration_branch: main        # default main
      release_branch: "release/{version}"   # default; tag: "v{version}", remote: origin
      build_command: [make, dist]     # default none: an argv list ({version}, {app} replaced)
      build_artifact: "dist/{app}-{version}.tar.gz"   # default; build_timeout_seconds: 1800
      feature_version: "0.0.0-{branch}.{short}"   # default: `deploy --branch`'s build id

``health.port`` becomes the extra var ``lrelease_app_port``, which wins over every host var;
leave it out when the port differs per host (``vars: {lrelease_app_port: ...}`` in the fleet).

Secrets never live in this file: a key that looks like one (``api_key``, ``token``,
``password``, ``webhook_url``...) is refused, at any depth; name an environment variable
instead (``api_key_env: DEMOAPP_APM_KEY``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrelease import schema_check, secrets, window
from lrelease.errors import ConfigError, ExitCode, LreleaseError, raise_all
from lrelease.fleet import Fleet, load_fleet
from lrelease.gate.settings import GateSettings, parse_gate
from lrelease.healthcheck import KEYS as HEALTH_CHECK_KEYS
from lrelease.healthcheck import HealthCheck, parse_check
from lrelease.hooks import Hook, hooks_var, parse_hooks, parse_shared, renamed_keys
from lrelease.notify import CHANNEL_KINDS, KINDS, ChannelConfig
from lrelease.plan import PAUSE, WaveSpec, check_wave, split_pauses
from lrelease.schema import (ENV_NAME_EXPECTED, ENV_NAME_RE, SAFE_PATH_EXPECTED, Checker, join, load_yaml_mapping,
                             plain_text, safe_path, show, url_problem)
from lrelease.window import Window

if TYPE_CHECKING:
    from lrelease.branches import GitSettings

CONFIG_NAME = "lrelease.yml"
SCHEMA_VERSION = 1
# Whole-string patterns (fullmatch; the \Z also guards a .match): the safe sets of docs/design.md.
APP_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}\Z")
BUILD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z")
_UNIT_RE = re.compile(r"[A-Za-z0-9@._:-]{1,255}\Z")
_BACKEND_RE = re.compile(r"[A-Za-z0-9._:-]{1,127}\Z")
_SHA256_RE = re.compile(r"[0-9a-f]{64}\Z")
_MAX_KEEP_RELEASES = 100
_SYSTEM_DIRS = {"", "/", "/srv", "/opt", "/usr", "/etc", "/var", "/home", "/root", "/tmp", "/bin", "/lib"}
_DURATION_RE = re.compile(r"(?=\d)(?:(\d{1,3})d)?(?:(\d{1,4})h)?(?:(\d{1,6})m)?(?:(\d{1,7})s)?\Z")
DURATION_EXPECTED = "a duration such as 30m, 1h30m, 45s or 2d (d, h, m, s; at most 30 days)"
MAX_DURATION = 30 * 86400
CAPTAIN_MODES = ("optional", "required")
# kind: release (the default) takes builds of release branches; development also takes builds of
# feature branches (`deploy --branch`) and may have no window, no requires: and no required captain.
ENV_KINDS = ("release", "development")
SECRET_HINT = "name an environment variable that holds it instead, e.g. {key}_env: MYAPP_{KEY}"


class BuildNotFound(LreleaseError):
    """The build asked for has no artifact (or no checksum); a usage error (exit 2)."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class ArtifactRef:
    """Where one build's artifact is and the sha256 it must have."""

    build: str
    sha256: str
    path: Path | None = None  # source: dir (a file on the controller)
    url: str | None = None  # source: url (downloaded by the hosts)
    format: str = "tar.gz"  # artifacts.format
    strip_components: int | str = "auto"  # artifacts.strip_components

    def playbook_vars(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lrelease_build": self.build, "lrelease_artifact_sha256": self.sha256}
        if self.path is not None:
            out["lrelease_artifact"] = str(self.path)
        else:
            out["lrelease_artifact_url"] = str(self.url)
        out["lrelease_artifact_format"] = self.format
        out["lrelease_artifact_strip_components"] = self.strip_components
        return out


@dataclass(frozen=True)
class ArtifactSource:
    source: str  # "dir" or "url"
    path: Path | None = None  # dir: absolute
    url: str | None = None  # url: template with {app} and {build}
    checksums: Path | None = None  # url: optional dir of .sha256 files, absolute
    format: str = "tar.gz"  # tar.gz | tar.zst | zip | binary (ARTIFACT_FORMATS)
    strip_components: int | str = "auto"  # "auto" or 0..MAX_STRIP_COMPONENTS

    def file_name(self, app: str, build: str) -> str:
        """``<app>-<build>.<format>``; a binary has no extension (``<app>-<build>``)."""
        return f"{app}-{build}" if self.format == "binary" else f"{app}-{build}.{self.format}"


@dataclass(frozen=True)
class LoadBalancer:
    haproxy_socket: str
    backend: str


def parse_duration(text: str) -> float | None:
    """Seconds in ``30m``, ``1h30m``, ``45s``, ``2d`` (at most 30 days), or None if it is not one."""
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    d, h, m, sec = (int(g or 0) for g in match.groups())
    seconds = ((d * 24 + h) * 60 + m) * 60 + sec
    return float(seconds) if seconds <= MAX_DURATION else None


def show_duration(seconds: float) -> str:
    """``1h30m`` for 5400 seconds: the shape :func:`parse_duration` reads."""
    seconds = int(round(seconds))
    parts = [(seconds // 86400, "d"), (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "m"), (seconds % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


@dataclass(frozen=True)
class Requirement:
    """``requires:``: a build must be proven on ``env`` (every host ran it ``soak_seconds`` after
    its roll-out there succeeded, and it was not rolled back since) before it goes here."""

    env: str
    soak_seconds: float = 1800.0

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "soak": show_duration(self.soak_seconds), "soak_seconds": self.soak_seconds}


@dataclass(frozen=True)
class EnvironmentConfig:
    """One environment of ``lrelease.yml``; see the module docstring for each field."""

    name: str
    waves: tuple[WaveSpec, ...]
    bake_seconds: float
    gate_timeout_seconds: float
    deploy_root: str
    service_command: str | tuple[str, ...] | None  # a path, or an argv list (path, then arguments)
    service_systemd: str | None
    health_path: str
    health_port: int | None
    keep_releases: int
    lb: LoadBalancer | None
    rollback_serial: bool
    inventory: Path | None  # None: the inventory generated from the fleet
    gate: GateSettings | None = None  # None: the gate checks the health endpoint only
    rollback_min_in_service: int | str = "50%"  # hosts kept in service by a rollback: a count or "N%"
    health_check: HealthCheck = HealthCheck()  # what a healthy answer is (health.expect_status, body_*)
    shared_dirs: tuple[str, ...] = ()  # shared.dirs: relative paths kept in <deploy_root>/shared, linked in
    shared_files: tuple[str, ...] = ()  # shared.files: the same, for files
    hooks: tuple[Hook, ...] = ()  # hooks: commands at the points of lrelease.hooks.POINTS
    service_shell: str | None = None  # service.shell: run by /bin/sh -c with the action as "$1"
    service_unit_file: str | None = None  # service.unit_file (with systemd): a path inside the release
    captain: str = "optional"  # optional: a captain, once set, owns the roll-outs; required: none without one
    requires: Requirement | None = None  # the environment a build must be proven on first
    window: Window | None = None  # the deploy window: None, always open
    pauses: tuple[int, ...] = ()  # waves after which a roll-out awaits promotion (`pause` in waves, pause_after_canary)
    nightly: bool = False  # `lrelease nightly` acts here (lrelease/nightly.py); False: it leaves it alone
    kind: str = "release"  # ENV_KINDS: development also takes feature branches (`deploy --branch`)

    def playbook_vars(self) -> dict[str, Any]:
        """The extra vars of docs/design.md that come from this environment's settings."""
        out: dict[str, Any] = {
            "lrelease_waves": list(self.waves),
            "lrelease_bake_seconds": self.bake_seconds,
            "lrelease_gate_timeout": self.gate_timeout_seconds,
            "lrelease_deploy_root": self.deploy_root,
            "lrelease_health_path": self.health_path,
            "lrelease_keep_releases": self.keep_releases,
            "lrelease_lb_socket": self.lb.haproxy_socket if self.lb else "",
            "lrelease_lb_backend": self.lb.backend if self.lb else "",
            "lrelease_rollback_min_in_service": self.rollback_min_in_service,
        }
        if self.rollback_serial:
            out["lrelease_rollback_serial"] = 1
        if self.service_command is not None:
            cmd = self.service_command
            out["lrelease_service_command"] = cmd if isinstance(cmd, str) else list(cmd)
        elif self.service_shell is not None:
            out["lrelease_service_shell"] = self.service_shell
        else:
            out["lrelease_service_name"] = self.service_systemd
            if self.service_unit_file is not None:
                out["lrelease_service_unit_file"] = self.service_unit_file
        if self.health_port is not None:
            out["lrelease_app_port"] = self.health_port
        out.update(self.health_check.to_vars())
        # Always explicit, so that deploy.yml never falls back to the health check unnoticed.
        out["lrelease_gate_kind"] = self.gate.kind if self.gate is not None else "health"
        if self.gate is not None and self.gate.kind == "apm":
            out["lrelease_gate_apm"] = self.gate.to_vars()
        elif self.gate is not None:  # provider http: the health check after the gate's bake
            out["lrelease_bake_seconds"] = self.gate.bake_seconds
        out["lrelease_shared_dirs"] = list(self.shared_dirs)
        out["lrelease_shared_files"] = list(self.shared_files)
        out["lrelease_hooks"] = hooks_var(self.hooks)
        return out


@dataclass(frozen=True)
class ProjectConfig:
    path: Path  # the lrelease.yml read, absolute
    version: int
    app: str
    fleet: Path  # absolute
    state_dir: Path  # absolute
    artifacts: ArtifactSource
    environments: tuple[EnvironmentConfig, ...]
    notifications: tuple[ChannelConfig, ...] = ()  # lrelease.notify: where roll-out events go
    git: GitSettings | None = None  # lrelease.branches: the `git:` section (None: its defaults)

    @property
    def root(self) -> Path:
        """The directory of lrelease.yml; relative paths in it start here."""
        return self.path.parent

    @property
    def db_path(self) -> Path:
        return self.state_dir / "lrelease.db"

    @property
    def environment_names(self) -> tuple[str, ...]:
        return tuple(env.name for env in self.environments)

    def environment(self, name: str) -> EnvironmentConfig:
        for env in self.environments:
            if env.name == name:
                return env
        known = ", ".join(self.environment_names)
        raise ConfigError(str(self.path), "environments", f"one of {known}; no environment {name!r}")

    def load_fleet(self) -> Fleet:
        """The fleet file this config names; a missing one is reported against lrelease.yml.
        Every node's environment must be one of this config's (a typo would otherwise drop
        the node from its environment's roll-outs without a word)."""
        if not self.fleet.exists():
            raise ConfigError(str(self.path), "fleet", f"an existing fleet file; no such file: {self._show(self.fleet)}")
        fleet = load_fleet(self.fleet)
        for node in fleet.nodes:
            if node.environment not in self.environment_names:
                raise ConfigError(str(fleet.path), f"nodes.{node.name}.environment",
                                  f"an environment of {self.path.name} ({', '.join(self.environment_names)}), "
                                  f"got {node.environment!r}")
        return fleet

    def artifact_for(self, build: str, sha256: str | None = None) -> ArtifactRef:
        """The artifact of ``build`` and the sha256 it must have: ``sha256`` when given (it
        then overrides any checksum file), else read from ``<app>-<build>.<format>.sha256`` (next
        to the artifact for source ``dir``, which must exist; in ``checksums`` for source
        ``url``). Nothing is hashed here: the playbook checks the artifact against it on the
        controller before any host changes. Raises BuildNotFound (exit 2)."""
        if not isinstance(build, str) or not BUILD_RE.fullmatch(build):
            raise BuildNotFound(f"build {build!r} is not a build id: letters, digits, '.', '_', '+', '-'")
        src = self.artifacts
        name = src.file_name(self.app, build)
        layout = {"format": src.format, "strip_components": src.strip_components}
        if src.source == "dir":
            assert src.path is not None
            artifact = src.path / name
            if not artifact.is_file():
                raise BuildNotFound(f"build {build} not found: no {self._show(artifact)}")
            digest = sha256 or self._read_sha256(build, artifact.with_name(name + ".sha256"))
            return ArtifactRef(build=build, sha256=_check_sha(build, digest), path=artifact, **layout)
        assert src.url is not None
        url = src.url.replace("{app}", self.app).replace("{build}", build)
        if sha256 is None:
            if src.checksums is None:
                raise BuildNotFound(f"build {build}: no sha256 for {url}; give one or set artifacts.checksums")
            sha256 = self._read_sha256(build, src.checksums / (name + ".sha256"))
        return ArtifactRef(build=build, sha256=_check_sha(build, sha256), url=url, **layout)

    def _read_sha256(self, build: str, path: Path) -> str:
        try:
            words = path.read_text(encoding="ascii").split()
        except (OSError, UnicodeDecodeError):
            raise BuildNotFound(f"build {build} has no checksum: no readable {self._show(path)}") from None
        if not words or not _SHA256_RE.fullmatch(words[0].lower()):
            raise BuildNotFound(f"build {build}: {self._show(path)} does not start with a sha256 (64 hex digits)")
        return words[0].lower()

    def _show(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def _check_sha(build: str, digest: str) -> str:
    if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest.lower()):
        raise BuildNotFound(f"build {build}: sha256 must be 64 hex digits, got {digest!r}")
    return digest.lower()


# -- loading ------------------------------------------------------------------------------
def load_config(path: str | Path) -> ProjectConfig:
    """Read and validate ``lrelease.yml``; raises ConfigError (exit 2) naming file and key: a
    secret-looking key alone; then every structural mistake at once (ConfigErrors, against
    lrelease/schemas/lrelease.schema.json); then the semantic checks below, first error only."""
    path = Path(path).absolute()
    data = load_yaml_mapping(path, "lrelease config (lrelease.yml)")
    check = Checker(str(path))
    check.no_secrets(data, "", SECRET_HINT)
    raise_all(renamed_keys(data, str(path)))  # a hook's `on:`, now run_on (YAML 1.1 reads a bare on as true)
    schema_check.check(data, "lrelease", str(path))
    check.mapping(data, "", required=("version", "app", "environments"),
                  optional=("fleet", "state_dir", "artifacts", "notifications", "git"))
    version = data["version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        check.fail("version", f"{SCHEMA_VERSION} (the schema version this lrelease reads), got {show(version)}")
    app = check.string(data["app"], "app", pattern=APP_RE,
                       describe="a name of lower-case letters, digits, '-' and '_' (e.g. demoapp)")
    root = path.parent
    fleet = _rel_path(check, data.get("fleet", "inventories/fleet.yml"), "fleet", root)
    state_dir = _rel_path(check, data.get("state_dir", ".lrelease"), "state_dir", root)
    if not _can_be_dir(state_dir):
        check.fail("state_dir", f"a directory (or where one can be made), got a file in the way: {state_dir}")
    artifacts = _artifacts(check, data.get("artifacts", {"source": "dir", "path": "artifacts"}), root)
    envs = check.mapping(data["environments"], "environments", example="{production: {...}}")
    if not envs:
        check.fail("environments", "at least one environment (e.g. production)")
    environments = tuple(_environment(check, name, value, root) for name, value in envs.items())
    _check_requires(check, environments)
    notifications = _notifications(check, data.get("notifications", []), tuple(envs))
    from lrelease.branches import parse_git  # it imports this module

    git = parse_git(check, data.get("git", {}), root)
    return ProjectConfig(path=path, version=version, app=app, fleet=fleet, state_dir=state_dir,
                         artifacts=artifacts, environments=environments, notifications=notifications, git=git)


_ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")


def _notifications(check: Checker, value: Any, env_names: tuple[str, ...]) -> tuple[ChannelConfig, ...]:
    """``notifications: [{kind, url_env, secret_env, environments, events}]`` (lrelease.notify). Only
    the *names* of the variables live here: a URL is a secret (whoever has it can post), so a
    literal ``url`` is refused. The variables are read when a roll-out starts."""
    if not isinstance(value, list):
        check.fail("notifications", f"a list of channels such as [{{kind: slack, url_env: SLACK_WEBHOOK_URL}}], "
                                    f"got {show(value)}")
    out = []
    for i, item in enumerate(value):
        key = join("notifications", i)
        ch = check.mapping(item, key, required=("kind",),
                           optional=("url_env", "secret_env", "environments", "events", "url"),
                           example="{kind: slack, url_env: SLACK_WEBHOOK_URL}")
        if "url" in ch:
            check.fail(join(key, "url"), "no URL in this file (a webhook URL is a secret): name the environment "
                                         "variable that holds it, e.g. url_env: SLACK_WEBHOOK_URL")
        kind = ch["kind"]
        if kind not in CHANNEL_KINDS:
            check.fail(join(key, "kind"), f"one of {', '.join(CHANNEL_KINDS)}, got {show(kind)}")
        if "url_env" not in ch:
            check.fail(join(key, "url_env"), "a value (required): the environment variable holding the URL, "
                                             "e.g. SLACK_WEBHOOK_URL")
        url_env = check.string(ch["url_env"], join(key, "url_env"), pattern=_ENV_VAR_RE,
                               describe="the name of an environment variable, e.g. SLACK_WEBHOOK_URL")
        secret_env = None
        if kind == "webhook" and "secret_env" not in ch:
            check.fail(join(key, "secret_env"), "a value (required with kind webhook): the environment variable "
                                                "holding the HMAC key that signs each request")
        if "secret_env" in ch:
            if kind != "webhook":
                check.fail(join(key, "secret_env"), "nothing with kind slack (only webhook requests are signed)")
            secret_env = check.string(ch["secret_env"], join(key, "secret_env"), pattern=_ENV_VAR_RE,
                                      describe="the name of an environment variable, e.g. LRELEASE_WEBHOOK_SECRET")
        envs = _names(check, ch, join(key, "environments"), "environments", env_names, "an environment of this file")
        events = _names(check, ch, join(key, "events"), "events", KINDS, "an event")
        for name in (url_env, secret_env):  # scrubbed by value from here on, if set in this process
            if name:
                secrets.register_env(name)
        out.append(ChannelConfig(kind=kind, url_env=url_env, secret_env=secret_env, environments=envs, events=events))
    return tuple(out)


def _names(check: Checker, ch: dict, key: str, field: str, allowed: tuple[str, ...],
           what: str) -> tuple[str, ...] | None:
    if field not in ch:
        return None
    value = ch[field]
    if not isinstance(value, list) or not value:
        check.fail(key, f"a non-empty list of {field} ({', '.join(allowed)}), got {show(value)}")
    for i, name in enumerate(value):
        if name not in allowed:
            check.fail(join(key, i), f"{what}: one of {', '.join(allowed)}, got {show(name)}")
    return tuple(value)


def _rel_path(check: Checker, value: Any, key: str, root: Path) -> Path:
    """A path on the controller, relative to lrelease.yml or absolute; spaces are fine, control
    characters (newline, NUL...) and Jinja delimiters are not (it may reach a playbook)."""
    text = check.string(value, key, test=plain_text,
                        describe="a path (relative to lrelease.yml or absolute) without control characters, "
                                 "{{ }} or {% %}")
    return (root / text).resolve()


def _can_be_dir(path: Path) -> bool:
    """``path`` is a directory, or its nearest existing ancestor is (mkdir -p would work)."""
    for p in (path, *path.parents):
        if p.exists():
            return p.is_dir()
    return True


def _artifacts(check: Checker, value: Any, root: Path) -> ArtifactSource:
    key = "artifacts"
    check.mapping(value, key, required=("source",), optional=("path", "url", "checksums", *_LAYOUT_KEYS),
                  example="{source: dir, path: artifacts}")
    layout = _artifact_layout(check, value, key)
    source = value["source"]
    if source == "dir":
        for extra in ("url", "checksums"):
            if extra in value:
                check.fail(join(key, extra), "no such key with source: dir (path, format, strip_components)")
        path = _rel_path(check, value.get("path", "artifacts"), join(key, "path"), root)
        return ArtifactSource(source="dir", path=path, **layout)
    if source == "url":
        if "path" in value:
            check.fail(join(key, "path"), "no such key with source: url (url, checksums, format, strip_components)")
        if "url" not in value:
            check.fail(join(key, "url"), 'a URL (required with source: url), e.g. "https://ci/{app}-{build}.tar.gz"')
        secrets.register_url(value["url"])  # its user:password@ or token=, scrubbed by value from here on
        url = check.string(value["url"], join(key, "url"), test=_url_template_ok,
                           describe="an http(s) URL containing {build} (and optionally {app}), no other {...}")
        problem = url_problem(url.replace("{app}", "app").replace("{build}", "1.0.0"))
        if problem:
            check.fail(join(key, "url"), f"an http(s) URL: {problem}")  # not echoed: it may hold a password
        checksums = None
        if "checksums" in value:
            checksums = _rel_path(check, value["checksums"], join(key, "checksums"), root)
        return ArtifactSource(source="url", url=url, checksums=checksums, **layout)
    return check.fail(join(key, "source"), f"'dir' or 'url', got {source!r}")


ARTIFACT_FORMATS = ("tar.gz", "tar.zst", "zip", "binary")
MAX_STRIP_COMPONENTS = 8
_LAYOUT_KEYS = ("format", "strip_components")


def _artifact_layout(check: Checker, value: dict, key: str) -> dict[str, Any]:
    """``format`` (default tar.gz) and ``strip_components`` (default auto: an archive holding exactly
    one top directory and nothing else is unpacked without it); the stage role unpacks by them."""
    fmt = value.get("format", "tar.gz")
    if not isinstance(fmt, str) or fmt not in ARTIFACT_FORMATS:
        check.fail(join(key, "format"), f"one of {', '.join(ARTIFACT_FORMATS)}, got {show(fmt)}")
    strip = value.get("strip_components", "auto")
    is_count = isinstance(strip, int) and not isinstance(strip, bool) and 0 <= strip <= MAX_STRIP_COMPONENTS
    if strip != "auto" and not is_count:
        check.fail(join(key, "strip_components"),
                   f"auto or an integer from 0 to {MAX_STRIP_COMPONENTS} (leading directories dropped from every "
                   f"member of the archive), got {show(strip)}")
    if fmt == "binary" and "strip_components" in value:
        check.fail(join(key, "strip_components"), "nothing with format: binary (a single file, not an archive)")
    return {"format": fmt, "strip_components": strip}


def _url_template_ok(url: str) -> bool:
    if not re.fullmatch(r"https?://[^/\s]+/\S*", url) or "{build}" not in url:
        return False
    return set(re.findall(r"\{[^}]*\}", url)) <= {"{app}", "{build}"}


_ENV_KEYS = ("waves", "bake_seconds", "gate_timeout_seconds", "deploy_root", "service", "health",
             "keep_releases", "lb", "rollback", "inventory", "gate", "shared", "hooks", "captain", "requires",
             "window", "pause_after_canary", "nightly", "kind")


def _environment(check: Checker, name: str, value: Any, root: Path) -> EnvironmentConfig:
    key = join("environments", name)
    if not ENV_NAME_RE.fullmatch(name):
        check.fail(key, f"an environment name of {ENV_NAME_EXPECTED}")
    env = check.mapping(value, key, required=("deploy_root", "service"),
                        optional=tuple(k for k in _ENV_KEYS if k not in ("deploy_root", "service")),
                        example="{deploy_root: /srv/demoapp, service: {command: ...}}")
    waves, pauses = _waves(check, env.get("waves", [1, "100%"]), join(key, "waves"))
    if check.boolean(env.get("pause_after_canary", False), join(key, "pause_after_canary")):
        pauses = tuple(sorted({1, *pauses}))
    bake = check.number(env.get("bake_seconds", 10), join(key, "bake_seconds"))
    gate_timeout = check.number(env.get("gate_timeout_seconds", 30), join(key, "gate_timeout_seconds"),
                                exclusive=True)
    deploy_root = check.string(env["deploy_root"], join(key, "deploy_root"), test=_deploy_root_ok,
                               describe=f"{SAFE_PATH_EXPECTED}, of its own (not a system directory), "
                                        "e.g. /srv/demoapp")
    command, shell, systemd, unit_file = _service(check, env["service"], join(key, "service"))
    health_path, health_port, health_check = _health(check, env.get("health", {}), join(key, "health"))
    keep = check.integer(env.get("keep_releases", 5), join(key, "keep_releases"), minimum=2,
                         maximum=_MAX_KEEP_RELEASES)
    lb = _lb(check, env["lb"], join(key, "lb")) if env.get("lb") is not None else None
    rollback_serial, min_in_service = _rollback(check, env.get("rollback", {}), join(key, "rollback"))
    inventory = None
    if "inventory" in env:
        inventory = _rel_path(check, env["inventory"], join(key, "inventory"), root)
    gate = None
    if env.get("gate") is not None:
        gate = parse_gate(check, env["gate"], join(key, "gate"), default_bake=bake)
    shared_dirs, shared_files = parse_shared(check, env.get("shared", {}), join(key, "shared"))
    hooks = parse_hooks(check, env.get("hooks", {}), join(key, "hooks"), root)  # controller hooks run in root
    captain = env.get("captain", "optional")
    if captain not in CAPTAIN_MODES:
        check.fail(join(key, "captain"), f"optional or required, got {show(captain)}")
    requires = _requires(check, env["requires"], join(key, "requires")) if env.get("requires") is not None else None
    window = _window(check, env["window"], join(key, "window")) if env.get("window") is not None else None
    nightly = check.boolean(env.get("nightly", False), join(key, "nightly"))
    kind = env.get("kind", "release")
    if kind not in ENV_KINDS:
        check.fail(join(key, "kind"), f"release or development, got {show(kind)}")
    if kind == "development":
        for policy, present in (("window", window is not None), ("requires", requires is not None),
                                ("captain", captain == "required")):
            if present:
                check.fail(join(key, policy), "nothing with kind: development (a development environment takes "
                                              "feature branches: no window, no requires:, no required captain)")
    return EnvironmentConfig(
        name=name, waves=waves, bake_seconds=bake, gate_timeout_seconds=gate_timeout,
        deploy_root=_deploy_root(deploy_root), service_command=command, service_systemd=systemd,
        service_shell=shell, service_unit_file=unit_file,
        health_path=health_path, health_port=health_port, keep_releases=keep, lb=lb,
        rollback_serial=rollback_serial, inventory=inventory, gate=gate, rollback_min_in_service=min_in_service,
        shared_dirs=shared_dirs, shared_files=shared_files, hooks=hooks, health_check=health_check,
        captain=captain, requires=requires, window=window, pauses=pauses, nightly=nightly, kind=kind)


def _requires(check: Checker, value: Any, key: str) -> Requirement:
    req = check.mapping(value, key, required=("env",), optional=("soak",), example="{env: next, soak: 30m}")
    env = check.string(req["env"], join(key, "env"), pattern=ENV_NAME_RE,
                       describe=f"an environment name of {ENV_NAME_EXPECTED}")
    soak = parse_duration(req.get("soak", "30m"))
    if soak is None:
        check.fail(join(key, "soak"), f"{DURATION_EXPECTED}, got {show(req.get('soak'))}")
    return Requirement(env, soak)


def _check_requires(check: Checker, environments: tuple[EnvironmentConfig, ...]) -> None:
    """Each ``requires.env`` names another environment of this file, and no chain comes back."""
    names = {env.name: env for env in environments}
    for env in environments:
        if env.requires is None:
            continue
        key = join(join(join("environments", env.name), "requires"), "env")
        if env.requires.env == env.name:
            check.fail(key, f"another environment than {env.name} itself")
        if env.requires.env not in names:
            check.fail(key, f"one of the environments of this file ({', '.join(sorted(names))}), "
                            f"got {env.requires.env!r}")
        seen, step = [env.name], names[env.requires.env]
        while step.requires is not None and step.name not in seen:
            seen.append(step.name)
            step = names[step.requires.env]
        if step.name in seen:
            check.fail(key, f"no loop of requires, got {' -> '.join([*seen, step.name])}")


def _waves(check: Checker, value: Any, key: str) -> tuple[tuple[WaveSpec, ...], tuple[int, ...]]:
    """The ``serial`` values and the pauses between them (``pause``: after which wave)."""
    if not isinstance(value, list) or not value:
        check.fail(key, f'a non-empty list such as [1, "50%", "100%"], got {show(value)}')
    for i, item in enumerate(value):
        if item == PAUSE:
            continue
        try:
            check_wave(item)
        except ValueError as exc:
            check.fail(join(key, i), f"{exc}, or pause between two waves, got {show(item)}")
    try:
        return split_pauses(value)
    except ValueError as exc:
        check.fail(key, f"{exc}, got [{', '.join(show(v) for v in value)}]")


def _window(check: Checker, value: Any, key: str) -> Window:
    win = check.mapping(value, key, required=("timezone",), optional=("weekly", "freeze"),
                        example='{timezone: Europe/Amsterdam, weekly: ["Sun-Thu 22:00-06:00"]}')
    try:
        zone = window.parse_zone(win["timezone"])
    except ValueError as exc:
        check.fail(join(key, "timezone"), f"{exc}, got {show(win['timezone'])}")
    parsed = []
    for name, parse in (("weekly", window.parse_rule), ("freeze", window.parse_freeze)):
        items = win.get(name, [])
        if not isinstance(items, list):
            check.fail(join(key, name), f"a list, got {show(items)}")
        out = []
        for i, item in enumerate(items):
            try:
                out.append(parse(item))
            except ValueError as exc:
                check.fail(join(join(key, name), i), f"{exc}, got {show(item)}")
        parsed.append(tuple(out))
    return window.Window(zone, *parsed)


_MIN_IN_SERVICE_PCT_RE = re.compile(r"(100|[1-9]?[0-9])%")
_MAX_IN_SERVICE = 999_999  # rollback.yml reads a count of up to six digits


def _rollback(check: Checker, value: Any, key: str) -> tuple[bool, int | str]:
    """``rollback: {serial, min_in_service}``: one host at a time, or the hosts (a count or a
    percentage of the play's hosts) a fleet rollback keeps in service; rollback.yml turns the
    latter into its group size."""
    rb = check.mapping(value, key, optional=("serial", "min_in_service"),
                       example='{min_in_service: "50%"} or {serial: true}')
    serial = check.boolean(rb.get("serial", False), join(key, "serial"))
    keep = rb.get("min_in_service", "50%")
    count_ok = isinstance(keep, int) and not isinstance(keep, bool) and 0 <= keep <= _MAX_IN_SERVICE
    if not count_ok and not (isinstance(keep, str) and _MIN_IN_SERVICE_PCT_RE.fullmatch(keep)):
        check.fail(join(key, "min_in_service"), f'a host count from 0 to {_MAX_IN_SERVICE} or a percentage of the '
                   f'environment\'s hosts from "0%" to "100%", got {show(keep)}')
    return serial, keep


def _deploy_root(path: str) -> str:
    return "/" + "/".join(p for p in path.split("/") if p)


def _deploy_root_ok(path: str) -> bool:
    if not safe_path(path) or any(p in (".", "..") for p in path.split("/")):
        return False
    return _deploy_root(path) not in _SYSTEM_DIRS


_MAX_SHELL = 4096
# A path inside the release: relative, of safe characters, no `.` or `..` component.
_RELEASE_PATH_RE = re.compile(r"(?!\.{1,2}(/|\Z))[A-Za-z0-9._+@-]+(/(?!\.{1,2}(/|\Z))[A-Za-z0-9._+@-]+)*\Z")
_OTHER_UNIT_TYPES = (".socket", ".timer", ".target", ".mount", ".automount", ".path", ".slice", ".scope",
                     ".swap", ".device")


def _service(check: Checker, value: Any, key: str) -> tuple[str | tuple[str, ...] | None, str | None, str | None,
                                                              str | None]:
    """``service``: exactly one of ``command`` (argv, no shell), ``shell`` (a string run by /bin/sh -c
    with the action as "$1": the only place lrelease uses a shell) or ``systemd`` (a unit; with an
    optional ``unit_file`` inside the release). Returns (command, shell, systemd, unit_file)."""
    example = '{command: /srv/demoapp/bin/demoapp-service}, {shell: "cd /opt/shop && exec ./shop-ctl"} or ' \
              "{systemd: demoapp}"
    check.mapping(value, key, optional=("command", "shell", "systemd", "unit_file"), example=example)
    kinds = [k for k in ("command", "shell", "systemd") if k in value]
    if len(kinds) != 1:
        check.fail(key, f"exactly one of command, shell or systemd, e.g. {example}")
    if "unit_file" in value and kinds != ["systemd"]:
        check.fail(join(key, "systemd"), "a value (required with unit_file: a unit file goes with a systemd unit)")
    if "command" in value:
        return _command(check, value["command"], join(key, "command")), None, None, None
    if "shell" in value:
        shell = check.string(value["shell"], join(key, "shell"),
                             test=lambda t: plain_text(t) and len(t) <= _MAX_SHELL and t.strip() != "",
                             describe=f"a shell command line (one line of at most {_MAX_SHELL} characters, no "
                                      "{{ }} or {% %}), run by /bin/sh -c with the action (restart, stop) as \"$1\"")
        return None, shell, None, None
    unit = check.string(value["systemd"], join(key, "systemd"), pattern=_UNIT_RE,
                        describe="a systemd unit name, e.g. demoapp")
    unit_file = None
    if "unit_file" in value:
        unit_file = check.string(value["unit_file"], join(key, "unit_file"), pattern=_RELEASE_PATH_RE,
                                 describe="a path inside the release (relative, letters, digits, '.', '_', '+', "
                                          "'@', '-' and '/', no '..'), e.g. deploy/shop.service")
        if unit.endswith(_OTHER_UNIT_TYPES):
            check.fail(join(key, "systemd"), f"a service unit (e.g. shop or shop.service) when unit_file is set, "
                                             f"got {show(unit)}")
    return None, None, unit, unit_file


_ARG_RE = re.compile(r"[A-Za-z0-9._+@%=:,/-]{1,256}\Z")  # one argument: no whitespace, shell or Jinja characters
_COMMAND_EXPECTED = ("the path of a script taking start|stop|restart|status, or an argv list: that path first, then "
                     "its arguments (each letters, digits and . _ + @ % = : , / -), e.g. [/usr/bin/env, APP_ENV=prod, "
                     "/opt/shop/bin/shop-service]; the roles append the action (restart, stop)")


def _command(check: Checker, value: Any, key: str) -> str | tuple[str, ...]:
    """``service.command``: a path, or an argv list (path, then arguments), never a shell line."""
    if isinstance(value, str):
        return check.string(value, key, test=safe_path, describe=f"{SAFE_PATH_EXPECTED}: {_COMMAND_EXPECTED}")
    if not isinstance(value, list) or not value or len(value) > 32:
        check.fail(key, f"{_COMMAND_EXPECTED}, got {show(value)}")
    check.string(value[0], join(key, 0), test=safe_path, describe=f"{SAFE_PATH_EXPECTED}: the executable")
    for i, arg in enumerate(value[1:], start=1):
        check.string(arg, join(key, i), pattern=_ARG_RE, describe="one argument: letters, digits and . _ + @ % = : , / -")
    return tuple(value)


def _health(check: Checker, value: Any, key: str) -> tuple[str, int | None, HealthCheck]:
    """``health: {path, port, expect_status, body_json, body_contains}``; the rules: lrelease.healthcheck."""
    check.mapping(value, key, optional=("path", "port", *HEALTH_CHECK_KEYS),
                  example='{path: /healthz, port: 8080, expect_status: "2xx"}')
    secrets.register_url(value.get("path"))  # a token= in its query
    path = check.string(value.get("path", "/health"), join(key, "path"),
                        test=_health_path_ok, describe="a URL path starting with /, e.g. /health")
    port = None
    if "port" in value:
        port = check.integer(value["port"], join(key, "port"), minimum=1, maximum=65535)
    return path, port, parse_check(check, value, key)


def _lb(check: Checker, value: Any, key: str) -> LoadBalancer:
    check.mapping(value, key, required=("haproxy_socket", "backend"),
                  example="{haproxy_socket: /run/haproxy/admin.sock, backend: be_demoapp}")
    sock = check.string(value["haproxy_socket"], join(key, "haproxy_socket"),
                        test=safe_path, describe=f"{SAFE_PATH_EXPECTED}: the HAProxy admin socket")
    backend = check.string(value["backend"], join(key, "backend"), pattern=_BACKEND_RE,
                           describe="an HAProxy backend name, e.g. be_demoapp")
    return LoadBalancer(haproxy_socket=sock, backend=backend)


_URL_PATH_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*\Z")


def _health_path_ok(path: str) -> bool:
    """A URL path (and query) of RFC 3986 characters: no whitespace, braces or control characters."""
    return _URL_PATH_RE.fullmatch(path) is not None
