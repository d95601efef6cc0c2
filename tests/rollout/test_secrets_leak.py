"""Secrets by value, on the sandbox: planted credentials are used, and then found nowhere.

Three secrets, each with a random value, each one that a real roll-out needs:
- a password in the artifact URL (``https://user:password@.../demoapp-{build}.tar.gz``), served
  by an HTTP server on the sandbox bridge that refuses the download without it;
- a token in the health path (``/health?token=...``), which every gate and rollback probe sends;
- an APM token in the environment (``bearer_token_env``) that the Prometheus gate reads (the
  sandbox's Prometheus accepts any bearer token; the gate refuses to run without the variable).

A build whose canary fails its gate is deployed (so the automatic rollback runs too); then every
file under the project's state dir and the kept ansible-runner private dirs, every row of every
table of the state database, the nodes' ledgers and every line the CLI printed are searched.
"""

from __future__ import annotations

import base64
import re
import http.server
import secrets as stdlib_secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import yaml

from lrelease import runner, secrets
from lrelease.sandbox.fleet import sandbox_gate
from tests.rollout.conftest import Project

BASELINE = "1.0.0"
BAD = "3.0.0-bad"
USER = "ci-reader"


class ArtifactServer:
    """Serves the sandbox's artifact dir on the bridge, only with the right basic auth; counts
    the downloads it allowed and the requests it refused."""

    def __init__(self, address: str, directory: Path, password: str) -> None:
        self.expect(password)
        self.allowed, self.refused = [], []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(directory), **kwargs)

            def do_GET(self):  # noqa: N802
                if self.headers.get("Authorization") != server.expected:
                    server.refused.append(self.path)
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="artifacts"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                server.allowed.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def expect(self, password: str) -> None:
        self.expected = "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()

    def __enter__(self) -> ArtifactServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ArgvWatch:
    """Reads every process's command line (what `ps` shows any local user) every 0.2 s while
    active; records each planted value seen, and how many ansible-playbook command lines it read."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.found, self.playbooks = values, set(), 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.done.wait(0.2):
            for path in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    argv = path.read_bytes()
                except OSError:  # the process ended meanwhile
                    continue
                self.playbooks += b"ansible-playbook" in argv
                self.found |= {name for name, value in self.values.items() if value.encode() in argv}

    def __enter__(self) -> ArgvWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=10)


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink())


def leaks(paths: Iterable[Path], values: dict[str, str]) -> list[str]:
    """``name in path`` for every secret value found in the raw bytes of every file."""
    found = []
    for path in paths:
        data = path.read_bytes()
        found += [f"{name} in {path}" for name, value in values.items() if value.encode() in data]
    return found


def database_rows(db_path: Path) -> str:
    db = sqlite3.connect(db_path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(f"{t}: {row!r}" for t in tables for row in db.execute(f'SELECT * FROM "{t}"'))  # noqa: S608
    finally:
        db.close()


@pytest.fixture(params=["prometheus", "http"])
def planted(request, fleet, tmp_path, monkeypatch):
    """A project whose artifact URL, health path and APM gate each carry a random secret, and
    whose runs keep their ansible-runner private dirs under tmp_path/runs. Its gate: the APM gate
    on Prometheus (reads the APM token), or the plain health gate (its evidence has the URL)."""
    secrets.clear()  # this process learns them the way lrelease does: by reading the config
    values = {"artifact password": "pw-" + stdlib_secrets.token_hex(16),
              "health token": "ht-" + stdlib_secrets.token_hex(16),
              "APM token": "apm-" + stdlib_secrets.token_hex(16)}
    monkeypatch.setenv("LRTEST_PROMETHEUS_TOKEN", values["APM token"])
    monkeypatch.setenv(runner.KEEP_RUNS, str(tmp_path / "runs"))
    gate = {**sandbox_gate(fleet.config, "prometheus"), "bake_seconds": 5, "interval_seconds": 5,
            "max_bake_seconds": 20}
    gate["provider"] = {**gate["provider"], "bearer_token_env": "LRTEST_PROMETHEUS_TOKEN"}
    project = Project(fleet, tmp_path, waves=[1, "100%"], bake_seconds=1, gate_timeout_seconds=10,
                      health={"path": f"/health?token={values['health token']}"},
                      **({"gate": gate} if request.param == "prometheus" else {}))
    with ArtifactServer(fleet.config.gateway, fleet.config.artifacts_dir, values["artifact password"]) as server:
        data = yaml.safe_load(project.path.read_text())
        data["artifacts"] = {
            "source": "url", "checksums": str(fleet.config.artifacts_dir),
            "url": f"http://{USER}:{values['artifact password']}@{fleet.config.gateway}:{server.port}/{{app}}-{{build}}.tar.gz"}
        project.path.write_text(yaml.safe_dump(data, sort_keys=False))
        yield project, values, server, request.param
    secrets.clear()


def test_planted_secrets_are_used_and_then_found_nowhere(planted, tmp_path):
    project, values, server, gate_kind = planted
    project.build(BAD, health_fail=True, error_rate=0.2)
    outputs = []

    # Given the plan and a dry run, which show the health path
    for args in (("plan", "--env", "production"), ("deploy", "--env", "production", "--build", BAD, "--dry-run")):
        result = project.cli(*args)
        assert result.exit_code == 0, result.output
        outputs.append((args[0], result.stdout + result.stderr))
    assert "/health?token=***" in outputs[0][1]

    # When a build whose canary fails its gate is deployed (text output: the progress lines)
    with ArgvWatch(values) as argv:
        deploy = project.cli("deploy", "--env", "production", "--build", BAD, "--yes")
    outputs.append(("deploy", deploy.stdout + deploy.stderr))
    # Then it was rolled back (exit 1): the canary failed its gate and went back to the baseline
    assert deploy.exit_code == 1, deploy.output
    assert project.current("node1") == BASELINE and project.serving("node1") == BASELINE
    # And the secrets were really used: every host downloaded the artifact with the password
    # (and a request without it was refused), the gate judged with Prometheus
    assert len(server.allowed) >= len(project.nodes), (server.allowed, server.refused)
    assert server.refused, "get_url sends the password only when challenged; the server must challenge"
    rollout = project.json("history", "--limit", "1")["rollouts"][0]
    assert rollout["status"] == "rolled_back"
    [gate] = rollout["gates"]
    assert gate["verdict"] == "fail"
    if gate_kind == "prometheus":
        assert gate["evidence"]["provider"] == "prometheus"
    else:  # the health gate's evidence names the URL it probed: recorded, masked
        assert gate["evidence"]["url"].endswith("/health?token=***"), gate["evidence"]["url"]

    # When the roll-out is looked at afterwards
    for args in (("show", rollout["id"]), ("show", rollout["id"], "--json"), ("history",),
                 ("history", "--json")):
        result = project.cli(*args)
        assert result.exit_code == 0, result.output
        outputs.append((args[0], result.stdout + result.stderr))

    # Then no secret was on any process's command line while it ran (ansible-playbook's included), ...
    assert argv.playbooks > 0 and argv.found == set()
    # ... no secret is in any output, ...
    printed = [f"{name} in `{cmd}` output" for cmd, text in outputs for name, value in values.items()
               if value in text]
    assert printed == []
    # ... in any file of the state dir (the database and its WAL included) or of the nodes' ledgers,
    state = project.path.parent / "state"
    ledgers = [project.cfg.node_root(project.cfg.find_node(n)) / ".lrelease" for n in project.nodes]
    assert leaks(files_under(state, *ledgers), values) == []
    # ... in any row of any table of the state database,
    rows = database_rows(state / "lrelease.db")
    assert [name for name, value in values.items() if value in rows] == []
    assert rollout["id"] in rows and ("token=***" in rows or gate_kind == "prometheus")
    # ... nor in anything ansible-runner wrote (command, stdout, every job event kept)
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) >= 2, runs  # the deploy and the rollback, at least
    kept = list(files_under(*runs))
    assert any(p.parent.name == "job_events" for p in kept)
    assert leaks(kept, values) == []

    # (the search itself finds a planted value where one is: lrelease.yml holds two of them)
    assert leaks([project.path], values) == [f"{name} in {project.path}" for name in ("artifact password", "health token")]


def searched_everywhere(project: Project, tmp_path: Path, values: dict[str, str], outputs: list[str]) -> list[str]:
    """Where any planted value was found: CLI output, state dir files, database rows, kept runs."""
    state = project.path.parent / "state"
    rows = database_rows(state / "lrelease.db")
    return ([f"{name} in output" for text in outputs for name, value in values.items() if value in text]
            + leaks(files_under(state, tmp_path / "runs"), values)
            + [f"{name} in a database row" for name, value in values.items() if value in rows])


@pytest.mark.parametrize("planted", ["http"], indirect=True)
def test_a_refused_download_says_why_without_the_password(planted, tmp_path):
    project, values, server, _ = planted
    # Given an artifact server that no longer accepts the password in the artifact URL
    server.expect("rotated-" + stdlib_secrets.token_hex(8))
    project.build("3.1.0")
    # When that build is deployed
    deploy = project.cli("deploy", "--env", "production", "--build", "3.1.0", "--yes")
    # Then staging fails before any host switched (exit 1, every host still on the baseline) ...
    assert deploy.exit_code == 1, deploy.output
    assert {n: project.current(n) for n in project.nodes} == {n: BASELINE for n in project.nodes}
    assert server.refused and not server.allowed
    # ... and the failure says what failed, with the URL masked
    said = re.search(r"downloading http://ci-reader:\*\*\*@[0-9.]+:[0-9]+/\S+-3\.1\.0\.tar\.gz failed: HTTP 401",
                     " ".join(deploy.stderr.split()))  # (rich wraps long lines)
    assert said, deploy.stderr
    shown = project.cli("show", project.json("history", "--limit", "1")["rollouts"][0]["id"], "--json")
    assert "failed: HTTP 401" in shown.stdout
    # And no planted value is anywhere
    assert searched_everywhere(project, tmp_path, values, [deploy.stdout, deploy.stderr, shown.stdout]) == []
