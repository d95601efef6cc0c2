"""CLI conventions ops engineers expect: --json keeps progress on stderr, tables outside a terminal
never cut an id or a value and dates carry their year and zone, -v reaches Ansible, --help gives
examples and the exit codes, `lrelease help TOPIC`, and shell completion."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from lrelease import runner
from lrelease.cli.helptext import EXIT_CODES, TOPICS
from lrelease.cli.main import cli
from lrelease.cli.tables import print_table, table, when
from lrelease.errors import ExitCode
from lrelease.rollout import FleetStatus, HostState, Outcome, Releaser
from lrelease.runner import EventKind, ProgressEvent
from lrelease.state import StateStore
from tests.unit.test_cli_errors import example_project

ROOT = Path(__file__).resolve().parents[2]
LRELEASE = str(Path(sys.executable).parent / "lrelease")
NARROW = {"COLUMNS": "40"}  # CliRunner's output is not a terminal
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


# -- 1. --json: the outcome alone on stdout, the progress on stderr --------------------------------
def test_with_json_stdout_is_the_one_outcome_and_stderr_has_a_line_per_step(tmp_path, monkeypatch):
    # Given a deploy whose run reports staging, a wave, a gate verdict (with brackets) and its end
    def deploy(self, env, build, reason="", sha256=None):
        for event in (ProgressEvent(EventKind.PLAY_STARTED, None, None, {"play": "lrelease stage"}),
                      ProgressEvent(EventKind.HOST_STAGED, "node1", None, {"current": "1.3.0"}),
                      ProgressEvent(EventKind.WAVE_STARTED, None, 1, {"wave": 1, "hosts": ["node1"]}),
                      ProgressEvent(EventKind.GATE_PASSED, "node1", 1,
                                    {"verdict": "pass", "reason": "[status 200] answered " + "x" * 80})):
            self.on_event(event)
        return Outcome("3f2a9c1b2d4e", env, build, "deploy", "succeeded", ExitCode.OK, "every host on 1.4.0")
    monkeypatch.setattr(Releaser, "artifact", lambda self, build, sha256=None: None)
    monkeypatch.setattr(Releaser, "deploy", deploy)
    # When it runs with --json on a narrow, non-terminal output
    result = CliRunner(env=NARROW).invoke(cli, ["deploy", "--env", "production", "--build", "1.4.0", "--yes",
                                                "--json", "--config", str(example_project(tmp_path))])
    # Then stdout parses whole as the outcome
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert (outcome["schema"], outcome["rollout_id"], outcome["status"]) == ("lrelease.outcome/v1", "3f2a9c1b2d4e",
                                                                            "succeeded")
    # And stderr holds one plain line per step, none wrapped, the brackets shown as they are
    assert result.stderr.splitlines() == ["staging", "node1: staged", "wave 1: node1",
                                          "node1: gate passed — [status 200] answered " + "x" * 80]


# -- 2. tables and dates ---------------------------------------------------------------------------
def test_when_carries_the_year_and_the_zone():
    assert when("2026-11-30T00:41:07.123Z") == "2026-11-30 00:41 UTC"
    assert when("2026-11-30T01:41:07+01:00", seconds=True) == "2026-11-30 00:41:07 UTC"
    assert when("2026-11-30T00:41:07") == "2026-11-30 00:41 UTC"  # as stored: UTC
    assert when(None) == "-"


def printed_table(*, terminal: bool, width: int) -> str:
    buffer = io.StringIO()
    t = table("history", ("id", "reason"))
    t.add_row("3f2a9c1b2d4e5f6a7b8c9d0e", "the canary's p95 doubled after the cache change")
    print_table(Console(file=buffer, width=width, force_terminal=terminal, color_system=None), t)
    return buffer.getvalue()


def test_outside_a_terminal_a_table_prints_each_row_whole_on_one_line():
    text = printed_table(terminal=False, width=30)
    row = next(line for line in text.splitlines() if "3f2a9c" in line)
    assert "3f2a9c1b2d4e5f6a7b8c9d0e" in row and "after the cache change" in row
    assert "…" not in text


def test_on_a_narrow_terminal_an_id_folds_onto_the_next_line_and_is_never_cut():
    text = printed_table(terminal=True, width=30)
    assert all(len(line) <= 30 for line in text.splitlines())
    assert "…" not in text
    cells = "".join(re.findall(r"│ (\S*)\s*│", text))  # the id column, line by line
    assert cells.startswith("3f2a9c1b2d4e5f6a7b8c9d0e")


def test_history_outside_a_terminal_keeps_ids_whole_and_dates_with_year_and_zone(tmp_path):
    # Given two recorded roll-outs, one with a long reason
    config = example_project(tmp_path)
    (tmp_path / ".lrelease").mkdir()
    with StateStore(tmp_path / ".lrelease" / "lrelease.db") as store:
        ids = []
        for build, reason in (("1.3.0", "weekly"), ("1.4.0", "the new checkout flow, after the load test passed")):
            r = store.start_rollout("production", build, "deploy", "ops", reason=reason)
            store.finish_rollout(r.id, "succeeded", 0)
            ids.append(r.id)
            stamp = when(r.started_at)
    # When history prints to a 40-column non-terminal
    result = CliRunner(env=NARROW).invoke(cli, ["history", "--env", "production", "--config", str(config)])
    # Then each roll-out is one line: its whole id, its reason whole, its start with year and zone
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    for rid in ids:
        [row] = [line for line in result.output.splitlines() if rid in line]
        assert stamp in row and re.search(r"20\d\d-\d\d-\d\d \d\d:\d\d UTC", row), row
    assert any("the new checkout flow, after the load test passed" in line for line in result.output.splitlines())


def test_status_outside_a_terminal_shows_whole_checksums_and_dates_with_the_year(tmp_path, monkeypatch):
    # Given the hosts' answers (the status playbook's) and a last roll-out
    last = {"id": "3f2a9c1b2d4e", "action": "deploy", "build": "1.4.0", "status": "succeeded", "actor": "ops",
            "started_at": "2026-11-30T00:41:07.123Z"}
    fleet = FleetStatus("production", (HostState("node1", "1.4.0", SHA, "1.3.0"),), (), True, (), last)
    monkeypatch.setattr(Releaser, "status", lambda self, env: fleet)
    # When status prints to a 40-column non-terminal
    result = CliRunner(env=NARROW).invoke(cli, ["status", "--env", "production",
                                                "--config", str(example_project(tmp_path))])
    # Then the checksum is whole, nothing is cut, and the last roll-out's date has year and zone
    assert result.exit_code == 0, result.output
    assert SHA in result.output and "…" not in result.output
    assert "by ops at 2026-11-30 00:41 UTC" in result.output


# -- 3. -v reaches Ansible ----------------------------------------------------------------------------
def test_the_verbosity_reaches_ansible_runner(tmp_path):
    kwargs = runner.runner_kwargs(tmp_path, tmp_path / "p.yml", "inv", {}, limit=None, launcher=tmp_path / "a",
                                  envvars={}, verbosity=3)
    assert kwargs["verbosity"] == 3
    assert runner.runner_kwargs(tmp_path, tmp_path / "p.yml", "inv", {}, limit=None, launcher=tmp_path / "a",
                                envvars={}, verbosity=0)["verbosity"] is None


@pytest.mark.parametrize("command", [["deploy", "--build", "1.4.0"], ["rollback"], ["resume"]])
def test_v_v_on_a_command_reaches_the_releaser(tmp_path, monkeypatch, command):
    seen = {}
    real_init = Releaser.__init__

    def init(self, project, **kwargs):
        seen.update(kwargs)
        real_init(self, project, **kwargs)
    monkeypatch.setattr(Releaser, "__init__", init)
    monkeypatch.setattr(Releaser, "artifact", lambda self, build, sha256=None: None)
    done = Outcome("r", "production", "1.4.0", command[0], "succeeded", ExitCode.OK, "ok")
    for name in ("deploy", "rollback", "resume"):
        monkeypatch.setattr(Releaser, name, lambda self, *a, **k: done)
    result = CliRunner().invoke(cli, [*command, "--env", "production", "-vv", "--yes",
                                      "--config", str(example_project(tmp_path))])
    assert result.exit_code == 0, result.output
    assert seen["verbosity"] == 2 and callable(seen["on_output"])


def test_a_verbose_run_hands_ansibles_own_output_over_with_secrets_masked(tmp_path):
    # Given a playbook on localhost that prints a registered secret
    from lrelease import secrets
    secret = "s3cr3t-h5-verbosity"
    secrets.register(secret)
    playbook = tmp_path / "p.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                        f"    - ansible.builtin.debug: {{msg: 'token {secret}'}}\n")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    # When it runs through the wrapper with -v
    output: list[str] = []
    result = runner.run_playbook(playbook, inventory, {}, verbosity=1, on_output=output.append)
    # Then Ansible's verbose lines and its recap came through, the secret masked
    text = "\n".join(output)
    assert result.ok, (result, text)
    assert "as config file" in text and "PLAY RECAP" in text
    assert "token" in text and secret not in text


# -- 4. --help: examples and exit codes ------------------------------------------------------------
@pytest.mark.parametrize("command", ["deploy", "rollback", "resume"])
def test_the_help_of_a_rollout_command_shows_examples_and_every_exit_code(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert f"Examples:\n    lrelease {command}" in result.output or f"lrelease {command} --env" in result.output
    for code, meaning in EXIT_CODES.items():
        assert f"{int(code):>5}  {meaning}\n" in result.output, (code, result.output)


@pytest.mark.parametrize("command", [["plan"], ["status"], ["history"], ["show"], ["inventory", "generate"],
                                     ["help"], ["sandbox"], []])
def test_every_other_command_shows_examples_and_its_exit_codes(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Examples:\n    lrelease " in result.output and "Exit codes:\n      0  success\n" in result.output
    assert "\n      2  usage" in result.output


def test_status_help_says_what_its_exit_5_means():
    assert "5  the fleet is not consistent, or not on --expected-build" in CliRunner().invoke(
        cli, ["status", "--help"]).output


def test_the_exit_codes_are_worded_as_the_readme_words_its_contract():
    readme = " ".join((ROOT / "README.md").read_text().split())
    contract = readme[readme.index("Exit codes: 0"):]
    assert [int(c) for c in EXIT_CODES] == [0, 1, 2, 3, 4, 5, 70, 130] == [int(c) for c in ExitCode]
    for code, meaning in EXIT_CODES.items():
        assert f"{int(code)} {meaning.rstrip(')')}" in contract, code


# -- 5. lrelease help TOPIC, completion ------------------------------------------------------------
def test_help_exit_codes_lists_every_code():
    result = CliRunner().invoke(cli, ["help", "exit-codes"])
    assert result.exit_code == 0
    for code, meaning in EXIT_CODES.items():
        assert f"{int(code):>5}  {meaning}" in result.output


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_each_topic_points_at_pages_that_exist_in_the_repository(topic):
    result = CliRunner().invoke(cli, ["help", topic])
    assert result.exit_code == 0 and result.output == TOPICS[topic] + "\n"
    pages = set(re.findall(r"[\w./-]+\.(?:md|yml)\b", result.output)) - {"lrelease.yml"}  # the user's own
    for page in pages:
        assert (ROOT / page).is_file(), page
    assert "http" not in result.output


def test_help_command_is_that_commands_help_and_an_unknown_topic_is_one_line_exit_2():
    assert CliRunner().invoke(cli, ["help", "deploy"]).output == CliRunner().invoke(cli, ["deploy", "--help"]).output
    listed = CliRunner().invoke(cli, ["help"])
    assert listed.exit_code == 0 and "exit-codes, config, gate, completion" in listed.output
    bad = CliRunner().invoke(cli, ["help", "nope"])
    assert bad.exit_code == 2
    [line] = bad.output.strip().splitlines()
    assert line.startswith("lrelease: error: help: no topic or command 'nope' (topics: exit-codes")


def complete(words: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "_LRELEASE_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)), **env}
    return subprocess.run([LRELEASE], env=environ, capture_output=True, text=True, timeout=60)


def test_the_documented_bash_completion_script_and_its_answers():
    # Given the command installed as the README says to hook it up
    source = subprocess.run([LRELEASE], env={**os.environ, "_LRELEASE_COMPLETE": "bash_source"},
                            capture_output=True, text=True, timeout=60)
    assert source.returncode == 0 and "complete -o nosort -F _lrelease_completion lrelease" in source.stdout
    # Then it completes commands, options and help topics
    assert "plain,deploy" in complete("lrelease de").stdout.splitlines()
    assert "plain,--verbose" in complete("lrelease deploy --verb").stdout.splitlines()
    assert {"plain,exit-codes", "plain,config", "plain,gate"} <= set(complete("lrelease help ").stdout.splitlines())


def test_the_readme_documents_completion_and_help_topics():
    readme = (ROOT / "README.md").read_text()
    assert "_LRELEASE_COMPLETE=bash_source lrelease" in readme
    assert "lrelease help exit-codes" in readme


def test_sandbox_status_outside_a_terminal_prints_each_node_on_one_line(monkeypatch):
    # Given a node with two faults (what `sandbox status` reads from the fleet)
    from lrelease.cli import sandbox as sandbox_cli
    from lrelease.sandbox.fleet import NodeStatus, SandboxStatus
    node = NodeStatus("node-with-a-long-name-3", "198.18.77.13", 8080, True, False, False, "1.4.0-rc.1+build.77",
                      False, "down", ("link-down", "sshd-stop"))
    st = SandboxStatus("netns", "/var/lib/lrelease-sandbox", "198.18.77.0/24", "/srv/demoapp", True, True, False,
                       "http://127.0.0.1:18080", "http://127.0.0.1:19090", "/var/lib/lrelease-sandbox/inventory.yml",
                       (node,))
    buffer = io.StringIO()
    monkeypatch.setattr(sandbox_cli, "console", Console(file=buffer, width=40, color_system=None))
    # When it is shown on a 40-column non-terminal
    sandbox_cli._show(st, as_json=False)
    # Then the node's row is one line with every value whole
    [row] = [line for line in buffer.getvalue().splitlines() if "node-with-a-long-name-3" in line]
    for value in ("198.18.77.13", "1.4.0-rc.1+build.77", "link-down, sshd-stop"):
        assert value in row, row
    assert "…" not in buffer.getvalue()
