"""How a run ends, for a human and for --json: a resumed Inconclusive gate's "continuing…" note is
shown once, and --json carries the reason of the gate that stopped the roll-out."""

from __future__ import annotations

import io

from rich.console import Console

from lrelease.cli.outcome import print_end, to_json
from lrelease.errors import ExitCode
from lrelease.rollout import Outcome, _continued
from lrelease.runner import EventKind, ProgressEvent, RunResult
from tests.unit.test_progress import inconclusive_event, printed

NOTE = "judging wave 1 from zero: node1's app restarted since (its counters start again from zero)"
HALTED = ("halted for a human: the gate could not decide on node1 (every host is on a complete build; "
          "`lrelease resume` continues, `lrelease rollback` undoes)")


def resumed_inconclusive() -> dict:
    """node1's gate as a resume records it when the judgement it went on with is Inconclusive
    again: the real judge's reason, led by the resume's note (as lrelease.gate.canary writes it)."""
    detail = inconclusive_event().detail
    evidence = {**detail["evidence"], "gate": "apm",
                "continued": {"continued": False, "wave": 1, "note": NOTE}}
    return {"host": "node1", "wave": 1, "verdict": "inconclusive", "reason": f"{NOTE}: {detail['reason']}",
            "evidence": evidence}


def halted_outcome(*gates: dict) -> Outcome:
    """The outcome the releaser returns for a halt: its message with what the resume noted."""
    message = HALTED + _continued(RunResult(gates=list(gates)))
    return Outcome(rollout_id="r2", env="production", build="2.3.0", action="resume", status="halted",
                   exit_code=ExitCode.HALTED, message=message, switched=("node1",), gates=gates)


def end_of_run(outcome: Outcome) -> str:
    buffer = io.StringIO()
    print_end(Console(file=buffer, width=400, color_system=None), "resume", outcome)
    return buffer.getvalue()


def test_a_resumed_inconclusive_gate_shows_its_continuing_note_once_in_each_place():
    # Given a resume whose canary judgement was Inconclusive again, its reason led by the note
    gate = resumed_inconclusive()
    # When the live view prints its gate event, and the run ends
    live = printed(ProgressEvent(EventKind.GATE_FAILED, "node1", 1, gate))
    end = end_of_run(halted_outcome(gate))
    # Then the progress line says INCONCLUSIVE with the note once
    assert "node1: gate INCONCLUSIVE — " + NOTE in live, live
    assert live.count(NOTE) == 1, live
    # And the end of the run gives the note once: in the gate's line, with its reason whole
    assert "node1: gate INCONCLUSIVE (wave 1): " + NOTE + ": still inconclusive after 1800s" in end, end
    assert end.count(NOTE) == 1, end


def test_a_continued_gate_that_passed_keeps_its_note_in_the_message():
    # Given a resume whose canary passed once its judgement went on, and whose next wave halted
    passed = {**resumed_inconclusive(), "verdict": "pass", "reason": f"{NOTE}: pass"}
    halted = {"host": "node2", "wave": 2, "verdict": "inconclusive", "reason": "still inconclusive after 40s",
              "evidence": {}}
    # When the run ends, Then the message says how node1 was judged (no gate line shows it)
    end = end_of_run(halted_outcome(passed, halted))
    assert f"(node1: {NOTE})" in end and end.count(NOTE) == 1, end


def test_json_carries_the_reason_of_the_gate_that_halted_the_rollout():
    # Given a halted resume
    gate = resumed_inconclusive()
    # When it is turned into the --json outcome
    data = to_json(halted_outcome(gate))
    # Then gate_reason names the host, wave, verdict and the reason whole
    assert data["gate_reason"] == {"host": "node1", "wave": 1, "verdict": "inconclusive", "reason": gate["reason"]}
    # And the message ends with it (the note once)
    assert data["message"].startswith(HALTED)
    assert data["message"].endswith(f"; gate INCONCLUSIVE on node1: {gate['reason']}"), data["message"]
    assert data["message"].count(NOTE) == 1, data["message"]


def test_json_carries_the_failed_gate_first_and_nothing_when_every_gate_passed():
    # Given a roll-out whose canary failed its gate (another host's gate undecided)
    failed = {"host": "node2", "wave": 1, "verdict": "fail", "reason": "errors 2.50% vs 0.50% fail", "evidence": {}}
    other = {"host": "node3", "wave": 1, "verdict": "inconclusive", "reason": "too little traffic", "evidence": {}}
    outcome = Outcome(rollout_id="r3", env="production", build="2.4.0", action="deploy", status="rolled_back",
                      exit_code=ExitCode.ROLLED_BACK, message="gate failed on node2, node3; rolled back",
                      gates=(other, failed))
    # When it is turned into the --json outcome, Then the failed gate is the one named
    data = to_json(outcome)
    assert data["gate_reason"]["host"] == "node2" and data["gate_reason"]["verdict"] == "fail"
    assert data["message"] == "gate failed on node2, node3; rolled back; gate FAIL on node2: errors 2.50% vs 0.50% fail"
    # And a roll-out whose gates all passed has none, its message as it was
    ok = Outcome(rollout_id="r4", env="production", build="2.4.0", action="deploy", status="succeeded",
                 exit_code=ExitCode.OK, message="2.4.0 is live on 4 host(s)",
                 gates=({"host": "node1", "verdict": "pass", "reason": "healthy"},))
    assert (to_json(ok)["gate_reason"], to_json(ok)["message"]) == (None, "2.4.0 is live on 4 host(s)")
