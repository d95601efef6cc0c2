"""The live view's one-line gate notes, from evidence the real judge produced."""

from __future__ import annotations

from lrelease.cli.progress import _note
from lrelease.gate.bake import BakeOutcome, Step
from lrelease.gate.judge import judge
from lrelease.gate.judge_config import JudgeConfig
from lrelease.runner import EventKind, ProgressEvent
from tests.unit.test_judge import host


def gate_event(canary_errors: float, *, compared_with: str = "peers") -> ProgressEvent:
    canary = {"node1": host("node1", 20000, canary_errors)}
    reference = {f"p{i}": host(f"p{i}", 20000, 100) for i in range(5)}
    judgement = judge(canary, reference, JudgeConfig())
    bake = BakeOutcome(Step.PASS, judgement.verdict, judgement.reason, (judgement,), 180.0, 0.1, 0.01)
    result = bake.to_gate_result()
    evidence = {**result.evidence, "compared_with": compared_with}
    kind = EventKind.GATE_PASSED if result.passed else EventKind.GATE_FAILED
    return ProgressEvent(kind, "node1", 1, {"verdict": result.verdict.value, "reason": result.reason,
                                            "evidence": evidence})


def test_an_apm_verdict_is_one_short_line_of_numbers():
    # Given a canary at 2.5% errors against peers at 0.5%, judged by the real judge
    note = _note(gate_event(500))
    # Then the note gives both rates, the verdict, the latency, the comparison and the look
    assert note.startswith("errors 2.50% vs 0.50% fail; p95 ")
    assert note.endswith("(vs peers, look 1/10)")
    assert len(note) <= 160


def test_the_last_wave_says_it_was_compared_with_its_own_past():
    assert "(vs its own past, look 1/10)" in _note(gate_event(100, compared_with="baseline"))


def test_other_gates_show_their_reason_cut_to_one_line():
    event = ProgressEvent(EventKind.GATE_FAILED, "node1", 1, {"verdict": "fail", "reason": "x" * 300,
                                                              "evidence": {"status": 503}})
    note = _note(event)
    assert len(note) == 160 and note.endswith("…")
