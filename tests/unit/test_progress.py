"""The live view's one-line gate notes, from evidence the real judge produced."""

from __future__ import annotations

import io

from rich.console import Console

from lrelease.cli.progress import FIRST_INSTALL, ProgressView, _note
from lrelease.gate.bake import BakeOutcome, Step
from lrelease.gate.judge import judge
from lrelease.gate.judge_config import JudgeConfig
from lrelease.runner import EventKind, ProgressEvent, RunResult, _EventTranslator
from tests.unit.test_judge import host
from tests.unit.test_release_module import rel


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


# -- what the view prints for a human, without a terminal (cron, CI: one line per event) ----------
def printed(*events: ProgressEvent) -> str:
    buffer = io.StringIO()
    view = ProgressView(["node1"], live=False, console=Console(file=buffer, width=400, color_system=None))
    for event in events:
        view.update(event)
    return buffer.getvalue()


def inconclusive_event() -> ProgressEvent:
    """What the runner emits for a gate the real judge could not decide (too little traffic), once
    the bake reached its maximum: a GATE_FAILED event carrying verdict inconclusive."""
    canary = {"node1": host("node1", 40, 0)}
    reference = {f"p{i}": host(f"p{i}", 40, 0) for i in range(5)}
    judgement = judge(canary, reference, JudgeConfig())
    assert judgement.verdict.value == "inconclusive"
    bake = BakeOutcome(Step.HALT, judgement.verdict, f"still inconclusive after 1800s (policy halt): {judgement.reason}",
                       (judgement,), 1800.0, 0.1, 0.01)
    result = bake.to_gate_result()
    return ProgressEvent(EventKind.GATE_FAILED, "node1", 1, {"verdict": "inconclusive", "reason": result.reason,
                                                             "evidence": {**result.evidence, "compared_with": "peers"}})


def test_an_inconclusive_gate_prints_as_inconclusive_with_its_reason_whole():
    # Given the gate could not decide on node1, with a reason longer than a cut note
    event = inconclusive_event()
    reason = event.detail["reason"]
    assert len(reason) > 160
    # When the view prints it
    out = printed(event)
    # Then it says INCONCLUSIVE, never FAILED, and the reason is there whole
    assert out.startswith("node1: gate INCONCLUSIVE — ")
    assert "FAILED" not in out and "…" not in out
    assert reason in out
    # And the table row of a live view says the same
    view = ProgressView(["node1"], live=True, console=Console(file=io.StringIO()))
    view.update(event)
    assert view.state["node1"][0] == "gate INCONCLUSIVE" and reason in view.state["node1"][2]


def test_a_failed_gate_still_prints_as_failed():
    assert printed(gate_event(500)).startswith("node1: gate FAILED — errors 2.50% vs 0.50% fail")


def test_staging_a_host_with_no_current_release_is_marked_first_install(tmp_path):
    # Given what the stage play's read returns for a host without `current` and for one on 1.0.0
    empty, live = tmp_path / "empty", tmp_path / "live"
    empty.mkdir()
    (live / "releases" / "1.0.0").mkdir(parents=True)
    (live / "current").symlink_to("releases/1.0.0")
    first_res, again_res = rel.info(str(empty), "2.0.0"), rel.info(str(live), "2.0.0")
    assert (first_res["current"], again_res["current"]) == (None, "1.0.0")
    # When the runner translates each host's `staged` task and the view prints the events
    seen: list[ProgressEvent] = []
    translate = _EventTranslator(RunResult(), seen.append)
    for host_name, res in (("node1", first_res), ("node2", again_res)):
        translate({"event": "runner_on_ok", "event_data": {"host": host_name, "role": "lrelease_stage",
                                                           "task": "staged", "res": {**res, "changed": True}}})
    buffer = io.StringIO()
    view = ProgressView(["node1", "node2"], live=False, console=Console(file=buffer, width=400, color_system=None))
    for event in seen:
        view.update(event)
    lines = buffer.getvalue().splitlines()
    # Then the host with nothing installed is marked as a first install and what that means
    assert lines[0] == f"node1: staged, first install — {FIRST_INSTALL}"
    assert "if its gate fails, its app is stopped and it stays drained" in lines[0]
    # And the other is only staged
    assert lines[1] == "node2: staged"
