"""A failed playbook run keeps its scrubbed events and output under the state dir (retention:
the last failedruns.KEEP); a successful run keeps nothing."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from lrelease import failedruns, runner, secrets

SECRET = "s3cr3t-\"h11\"-kept-run"


def _playbook(tmp_path: Path, fail: bool) -> tuple[Path, Path]:
    playbook = tmp_path / ("fail.yml" if fail else "ok.yml")
    task = (f"    - ansible.builtin.fail: {{msg: 'broken with {SECRET}'}}\n" if fail
            else "    - ansible.builtin.debug: {msg: fine}\n")
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n" + task)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    return playbook, inventory


def test_a_failed_run_leaves_a_scrubbed_copy_of_its_events_and_output(tmp_path, monkeypatch):
    # Given a playbook that fails with a registered secret in its message, and no LRELEASE_KEEP_RUNS
    monkeypatch.delenv(runner.KEEP_RUNS, raising=False)
    secrets.register(SECRET)
    playbook, inventory = _playbook(tmp_path, fail=True)
    dest = tmp_path / "state" / "runs" / "r-1" / "deploy"
    # When it runs through the wrapper with a place to keep failed runs
    result = runner.run_playbook(playbook, inventory, {"lrelease_token": SECRET}, keep_failed=dest)
    # Then it failed and its events and stdout are kept there, with the secret masked everywhere
    assert not result.ok and result.kept == dest
    events = sorted((dest / "job_events").glob("*.json"))
    assert events, list(dest.rglob("*"))
    kinds = {json.loads(e.read_text())["event"] for e in events}
    assert {"runner_on_failed", "playbook_on_stats"} <= kinds
    assert "broken with" in (dest / "stdout").read_text()
    texts = [p.read_text() for p in dest.rglob("*") if p.is_file()]
    escaped = json.dumps(SECRET)[1:-1]  # as it appears inside a JSON event
    assert not any(SECRET in t or escaped in t for t in texts)
    # and no input file (extra vars, environment) was kept
    assert not any(p.name in ("extravars", "envvars", "command") for p in dest.rglob("*"))


def test_a_successful_run_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(runner.KEEP_RUNS, raising=False)
    playbook, inventory = _playbook(tmp_path, fail=False)
    dest = tmp_path / "state" / "runs" / "r-2" / "deploy"
    result = runner.run_playbook(playbook, inventory, {}, keep_failed=dest)
    assert result.ok and result.kept is None
    assert not dest.exists()


def test_retention_drops_the_oldest_kept_runs(tmp_path):
    # Given three failed runs kept already, the oldest first
    runs = tmp_path / "runs"
    data = tmp_path / "data"
    (data / "artifacts" / "x").mkdir(parents=True)
    (data / "artifacts" / "x" / "stdout").write_text("out\n")
    for i, rid in enumerate(["r-a", "r-b", "r-c"]):
        kept = failedruns.keep(data, runs / rid / "deploy", limit=10)
        os.utime(kept, (1000 + i, 1000 + i))
    # When a fourth is kept with a limit of three
    failedruns.keep(data, runs / "r-d" / "rollback", limit=3)
    # Then the oldest one (and its now empty roll-out directory) is gone, the rest stay
    assert sorted(p.parent.name for p in runs.glob("*/*")) == ["r-b", "r-c", "r-d"]
    assert not (runs / "r-a").exists()
    assert (runs / "r-d" / "rollback" / "stdout").read_text() == "out\n"


def test_the_failure_message_names_where_the_output_is_kept(tmp_path):
    # Given a failed run whose output was kept
    from lrelease.rollout import _failure_summary
    result = runner.RunResult(status="failed", rc=2, stats={}, failed={"node1"},
                              failures={"node1": "boom"}, kept=tmp_path / "runs" / "r-9" / "deploy")
    # When the roll-out describes the failure
    summary = _failure_summary(result)
    # Then it names the failure and the directory
    assert summary == f"failed on node1: boom (Ansible's output is kept in {tmp_path / 'runs' / 'r-9' / 'deploy'})"
