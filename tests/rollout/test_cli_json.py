"""`--json` for cron: stdout is the one JSON outcome, the progress is on stderr, line by line;
`-v` shows Ansible's own output there too. The real CLI as a process, on the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.rollout.conftest import Project

LRELEASE = str(Path(sys.executable).parent / "lrelease")


def run(project: Project, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LRELEASE_CONFIG": str(project.path), "COLUMNS": "40"}
    return subprocess.run([LRELEASE, *args, "--yes", "--json"], env=env, capture_output=True, text=True, timeout=300)


def test_a_caught_bad_build_with_json_prints_the_outcome_on_stdout_and_each_step_on_stderr(project: Project):
    # Given a build whose /health fails once it runs
    project.build("1.2.0-bad", health_fail=True)
    # When cron deploys it with --json, stdout and stderr apart (neither a terminal, 40 columns)
    proc = run(project, "deploy", "--env", "production", "--build", "1.2.0-bad", "-v")
    # Then stdout is exactly one JSON document: the outcome of a roll-out rolled back (exit 1)
    outcome = json.loads(proc.stdout)
    assert proc.returncode == 1 and outcome["status"] == "rolled_back", proc.stderr
    assert outcome["gate_reason"]["host"] == "node1"
    # And stderr has one plain line per step: staging, the wave, the gate's verdict, the rollback
    lines = proc.stderr.splitlines()
    for expected in ("staging", "wave 1: node1", "rolling back", "node1: rolled back"):
        assert expected in lines, (expected, proc.stderr)
    [verdict] = [line for line in lines if line.startswith("node1: gate FAILED")]
    assert len(verdict) > 40  # one line, not wrapped at the 40 columns
    # And -v put Ansible's own output there too (its verbose lines and its play recap), never on stdout
    assert "as config file" in proc.stderr and "PLAY RECAP" in proc.stderr
