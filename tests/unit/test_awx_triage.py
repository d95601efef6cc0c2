"""The AWX workflow's triage step (playbooks/triage.yml) run by real ansible-playbook on the
controller, as the exported "lrelease triage <env>" job template runs it after a failed deploy:
the deploy's set_stats artifacts as extra vars, the environment's hosts in the inventory (their
addresses do not answer: it connects to none of them) and a launch limit. It succeeds (→ the rollback) when the deploy
failed or left no outcome of its own, and fails with one line (→ a human, or the red step) when
the deploy stopped for a human or the next window."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.unit.playbook import ANSIBLE_PLAYBOOK, ENV, ROOT

WINDOW = "window closed: the deploy window of production closed at 2026-11-30T06:00:00+00:00"


def triage(tmp_path, **artifacts) -> subprocess.CompletedProcess:
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"lrelease_env": "production", "lrelease_hosts": "production", "lrelease_build": "1.4.0",
                                 **artifacts}))
    inventory = tmp_path / "hosts.yml"  # TEST-NET addresses: nothing answers there
    inventory.write_text(json.dumps({"production": {"hosts": {"web0": {"ansible_host": "192.0.2.1"},
                                                              "web1": {"ansible_host": "192.0.2.2"}}}}))
    return subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), "-l", "web0,web1", "playbooks/triage.yml",
                           "-e", f"@{extra}"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)


def failure_line(run: subprocess.CompletedProcess) -> str:
    [line] = [ln for ln in run.stdout.splitlines() if ln.startswith("fatal: [web0]")]
    return json.loads(line.split("=> ", 1)[1])["msg"]


def said(run: subprocess.CompletedProcess) -> str:
    """The message of the step's debug task (the default callback prints it as a JSON member)."""
    [line] = [ln.strip() for ln in run.stdout.splitlines() if ln.strip().startswith('"msg": ')]
    return json.loads("{" + line + "}")["msg"]


@pytest.mark.parametrize("artifacts, expected", [
    ({"lrelease_outcome": "paused", "lrelease_outcome_reason": WINDOW},
     "paused: the deploy window of production closed at 2026-11-30T06:00:00+00:00; `lrelease resume` or the next "
     "nightly run continues it in the next window (nothing rolled back: every host is on a complete build)"),
    ({"lrelease_outcome": "halted", "lrelease_outcome_reason": "the gate was Inconclusive on web0: too few requests"},
     "halted: the gate was Inconclusive on web0: too few requests; a human decides: roll back, or `lrelease resume` "
     "(nothing rolled back)"),
    ({"lrelease_outcome": "stopped", "lrelease_outcome_reason": "lock lost: taken over by roll-out r-2"},
     "stopped: lock lost: taken over by roll-out r-2; another roll-out holds the lock of production "
     "(nothing rolled back)"),
    ({"lrelease_outcome": "refused", "lrelease_outcome_reason": "production is paused by carol (INC-9)"},
     "refused: production is paused by carol (INC-9) (the deploy changed no host: nothing to roll back)"),
])
def test_a_deploy_stopped_for_a_human_or_the_next_window_fails_the_triage_with_one_line(tmp_path, artifacts, expected):
    # Given the artifacts of a deploy that stopped (its window closed, a gate Inconclusive, its lock
    # taken over) or that a policy refused before any host changed
    # When the triage step runs
    run = triage(tmp_path, **artifacts)
    # Then it fails (the workflow asks a human or ends red, never rolls back) with one line saying why
    assert run.returncode == 2, run.stdout + run.stderr
    assert failure_line(run) == expected


UNSAID = ("the deploy failed without saying why (lrelease_outcome {}, perhaps an earlier job's): killed, lost, or failed "
          "before its first wave; rolling production back, the safe side")


@pytest.mark.parametrize("artifacts, expected", [
    ({"lrelease_outcome": "failed", "lrelease_outcome_reason": 'web0 failed at "lrelease gate": HTTP 503'},
     'failed: web0 failed at "lrelease gate": HTTP 503; rolling production back'),
    # a job that died (killed, lost) or failed before its first wave published nothing
    ({}, UNSAID.format("missing")),
    # ... or AWX handed on an earlier stretch's outcome
    ({"lrelease_outcome": "succeeded", "lrelease_outcome_reason": ""}, UNSAID.format('"succeeded"')),
])
def test_a_failed_deploy_or_one_without_an_outcome_is_rolled_back(tmp_path, artifacts, expected):
    # Given a deploy that failed, or one that said nothing of its own
    # When the triage step runs
    run = triage(tmp_path, **artifacts)
    # Then it succeeds: the workflow goes on to the rollback (the safe side for a job that said nothing)
    assert run.returncode == 0, run.stdout + run.stderr
    assert said(run) == expected
