"""ansible-runner events -> typed progress events and a RunResult (pure, no Ansible run)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from lrelease.cli.release import _Interrupt
from lrelease.errors import ExitCode
from lrelease.rollout import Outcome
from lrelease.runner import EventKind, RunResult, StopRequest, _cancel_callback, _EventTranslator


def ev(event: str, host: str | None = None, task: str = "", role: str = "", **res) -> dict:
    data = {"host": host, "task": task, "role": role, "res": res}
    return {"event": event, "event_data": data}


def translate(events: list[dict]) -> tuple[RunResult, list]:
    result, seen = RunResult(status="successful"), []
    t = _EventTranslator(result, seen.append)
    for e in events:
        t(e)
    return result, seen


def test_switched_hosts_come_from_changed_switch_events_not_batch_positions():
    # Given a wave of node1+node2 where only node2 actually switched (node1 already on the build)
    result, seen = translate([
        ev("runner_on_ok", "node1", "lrelease wave", ansible_play_batch=["node1", "node2"]),
        ev("runner_on_ok", "node1", "switched", "lrelease_switch", changed=False),
        ev("runner_on_ok", "node2", "switched", "lrelease_switch", changed=True),
        ev("runner_on_ok", "node1", "lrelease gate", verdict="pass", reason="answered 200", evidence={}),
        ev("runner_on_ok", "node2", "lrelease gate", verdict="pass", evidence={}),
        ev("playbook_on_stats", ok={"node1": 3}),
    ])
    # Then only node2 counts as switched, both gates passed, and the run is ok
    assert result.switched == {"node2"}
    assert [g["host"] for g in result.gates] == ["node1", "node2"]
    assert result.ok
    assert [e.kind for e in seen] == [EventKind.WAVE_STARTED, EventKind.HOST_SWITCHED,
                                     EventKind.GATE_PASSED, EventKind.GATE_PASSED]
    assert seen[0].detail["hosts"] == ["node1", "node2"] and seen[1].wave == 1


def test_a_failed_gate_is_one_gate_event_and_the_host_is_failed_once():
    result, seen = translate([
        ev("runner_on_ok", "node1", "lrelease wave", ansible_play_batch=["node1"]),
        ev("runner_on_ok", "node1", "switched", "lrelease_switch", changed=True),
        ev("runner_on_failed", "node1", "lrelease gate", verdict="fail", evidence={"summary": "503"}),
        ev("runner_on_failed", "node1", "lrelease host failed", msg="gate failed"),
        ev("playbook_on_stats"),
    ])
    assert result.failed == {"node1"} and not result.ok
    assert [e.kind for e in seen][-1] == EventKind.GATE_FAILED
    assert result.gates[0]["verdict"] == "fail" and result.live_on_new_build == {"node1"}


def test_a_reverted_switch_is_not_live_and_unreachable_hosts_fail_the_run():
    result, _ = translate([
        ev("runner_on_ok", "node3", "switched", "lrelease_switch", changed=True),
        ev("runner_on_ok", "node3", "reverted", "lrelease_switch", changed=True),
        ev("runner_on_unreachable", "node4", "switched", "lrelease_switch", msg="ssh: connect timed out"),
        ev("playbook_on_stats"),
    ])
    assert result.live_on_new_build == set()
    assert result.unreachable == {"node4"} and not result.ok


def test_a_run_without_its_final_stats_event_counts_as_failed():
    result, _ = translate([ev("runner_on_ok", "node1", "switched", "lrelease_switch", changed=True)])
    assert result.status == "successful" and result.stats is None
    assert not result.ok


def test_ignored_errors_do_not_fail_a_host():
    data = ev("runner_on_failed", "node1", "probe")
    data["event_data"]["ignore_errors"] = True
    result, seen = translate([data, ev("playbook_on_stats")])
    assert result.failed == set() and seen == []


def test_the_outcome_json_envelope_keys_are_pinned():
    out = Outcome(rollout_id="r1", env="production", build="1.1.0", action="deploy", status="succeeded",
                  exit_code=ExitCode.OK, message="ok")
    assert sorted(out.to_dict()) == sorted([
        "rollout_id", "env", "build", "action", "status", "exit_code", "message", "switched", "rolled_back", "app_stopped",
        "failed", "unreachable", "gates", "plan"])
    assert out.to_dict()["exit_code"] == 0


def test_gate_records_carry_the_deciders_reason():
    result, seen = translate([ev("runner_on_ok", "node1", "lrelease gate", verdict="pass", reason="answered 200",
                                 evidence={"probes": 1})])
    assert result.gates == [{"host": "node1", "wave": 0, "verdict": "pass", "reason": "answered 200",
                             "evidence": {"probes": 1}}]
    assert seen[0].detail["reason"] == "answered 200"


# -- stop at a safe point (Ctrl-C / SIGTERM) ----------------------------------------------

def test_a_stop_before_a_wave_is_an_interruption_not_a_success_nor_a_failure():
    # Given wave 1 (node1) switched and passed its gate, then the stop check ended the play
    result, seen = translate([
        ev("runner_on_ok", "node1", "lrelease wave", ansible_play_batch=["node1"]),
        ev("runner_on_ok", "node1", "switched", "lrelease_switch", changed=True),
        ev("runner_on_ok", "node1", "lrelease gate", verdict="pass", evidence={}),
        ev("runner_on_ok", "node2", "lrelease stop check", stat={"exists": True}),
        ev("runner_on_ok", "node2", "lrelease stopped", msg="stop requested: no further wave starts"),
        ev("playbook_on_stats", ok={"node1": 5, "node2": 2}),
    ])
    # Then the run stopped: not ok (so not "succeeded"), canceled (so interrupted, no rollback)
    assert result.stopped and not result.ok and result.canceled
    assert not result.failed and result.switched == {"node1"} and result.waves == 1
    # And the stop is one event after wave 1, naming how many waves ran; the result says why it stopped
    assert seen[-1].kind == EventKind.STOPPED and seen[-1].detail["waves_done"] == 1
    assert [e.kind for e in seen].count(EventKind.WAVE_STARTED) == 1
    assert result.stop_reason == "stop requested"


def test_a_stop_at_a_pause_of_the_waves_says_so_in_the_result():
    # Given wave 1 judged, then the stop check ended the play before the hosts after the pause
    result, _ = translate([
        ev("runner_on_ok", "node1", "lrelease wave", ansible_play_batch=["node1"]),
        ev("runner_on_ok", "node1", "lrelease gate", verdict="pass", evidence={}),
        ev("runner_on_ok", "node2", "lrelease stopped", msg="awaiting promotion: a pause of the waves comes before "
                                                            "node2, node3: no further wave starts (hosts not yet "
                                                            "switched stay on their build)"),
        ev("playbook_on_stats"),
    ])
    # Then it is a clean stop whose reason names the pause and the hosts held back
    assert result.stopped and result.canceled and not result.ok
    assert result.stop_reason == "awaiting promotion: a pause of the waves comes before node2, node3"


def test_a_stop_check_that_found_no_request_changes_nothing():
    result, seen = translate([
        ev("runner_on_ok", "node1", "lrelease stop check", stat={"exists": False}),
        ev("runner_on_skipped", "node1", "lrelease stopped"),
        ev("runner_on_ok", "node1", "lrelease wave", ansible_play_batch=["node1"]),
        ev("playbook_on_stats"),
    ])
    assert not result.stopped and result.ok and not result.canceled
    assert [e.kind for e in seen] == [EventKind.WAVE_STARTED]


def test_a_failure_before_the_stop_still_counts_as_a_failure_so_it_is_rolled_back():
    result, _ = translate([
        ev("runner_on_ok", "node1", "switched", "lrelease_switch", changed=True),
        ev("runner_on_failed", "node1", "lrelease gate", verdict="fail", evidence={}),
        ev("runner_on_ok", "node2", "lrelease stopped", msg="stop requested"),
        ev("playbook_on_stats"),
    ])
    assert result.stopped and not result.ok and not result.canceled
    assert result.live_on_new_build == {"node1"}


def test_a_hard_cancel_is_canceled_as_before():
    result = RunResult(status="canceled")
    assert result.canceled and not result.ok and not result.stopped


def test_the_first_request_stops_the_second_cancels_at_once():
    request = StopRequest()
    assert (request.stop_requested, request()) == (False, False)
    # When asked once: a stop at the next safe point, ansible-runner's cancel_callback still False
    assert request.escalate() == StopRequest.STOP
    assert (request.stop_requested, request()) == (True, False)
    # When asked again: the hard cancel
    assert request.escalate() == StopRequest.CANCEL
    assert request.cancel_requested and request()


def test_a_stop_request_becomes_the_stop_file_the_playbook_reads(tmp_path):
    # Given a run driven by a StopRequest
    request = StopRequest()
    extravars, poll = _cancel_callback(tmp_path, {"lrelease_build": "1.1.0"}, request)
    stop_file = Path(extravars["lrelease_stop_file"])
    assert stop_file.parent == tmp_path and extravars["lrelease_build"] == "1.1.0"
    # When polled before any request, nothing is written and the run goes on
    assert poll() is False and not stop_file.exists()
    # When a stop is requested, the next poll writes the file and still does not kill the run
    request.escalate()
    assert poll() is False and stop_file.exists()
    # And a second request kills it
    request.escalate()
    assert poll() is True


def test_a_stop_asked_before_the_run_started_holds_from_its_first_wave(tmp_path):
    request = StopRequest()
    request.escalate()
    extravars, _ = _cancel_callback(tmp_path, {}, request)
    assert Path(extravars["lrelease_stop_file"]).exists()


def test_without_a_stop_request_no_stop_file_and_never_a_missing_cancel_callback(tmp_path):
    # ansible-runner installs its own kill-at-once SIGINT/SIGTERM handlers when given none
    extravars, poll = _cancel_callback(tmp_path, {"a": 1}, None)
    assert extravars == {"a": 1} and poll is not None and poll() is False
    flag = [False]
    extravars, poll = _cancel_callback(tmp_path, {}, lambda: flag[0])
    assert "lrelease_stop_file" not in extravars
    flag[0] = True
    assert poll() is True
    assert list(tmp_path.iterdir()) == []


def test_sigterm_and_ctrl_c_step_stop_then_cancel_then_give_up():
    # Given the CLI's handler (what deploy/rollback/resume install around a run)
    interrupt = _Interrupt()
    # When SIGTERM arrives (cron, systemd), it asks for the stop at a safe point, not a kill
    interrupt._handle(signal.SIGTERM, None)
    assert interrupt.request.stop_requested and not interrupt.request()
    # When Ctrl-C follows, it cancels at once
    interrupt._handle(signal.SIGINT, None)
    assert interrupt.request()
    # And a third gives up waiting
    with pytest.raises(KeyboardInterrupt):
        interrupt._handle(signal.SIGINT, None)


def test_the_first_signal_says_what_happens_next(capsys):
    # Given a deploy and a rollback (rollback.yml has no safe point before its end)
    for action, words in (("deploy", "stopping after the hosts in flight"),
                          ("rollback", "the rollback finishes first")):
        # When SIGTERM arrives once
        _Interrupt(action)._handle(signal.SIGTERM, None)
        # Then one line says what happens and how to cancel at once
        err = " ".join(capsys.readouterr().err.split())
        assert f"SIGTERM: {words}" in err and "press Ctrl-C again to cancel at once" in err, err


def test_roles_reported_by_their_collection_name_are_followed_like_short_names():
    # Given the events of a run whose playbooks name the roles by FQCN (lrelease.release.*)
    result, seen = translate([
        ev("runner_on_ok", "node1", "lrelease wave", ansible_play_batch=["node1"]),
        ev("runner_on_ok", "node1", "staged", "lrelease.release.lrelease_stage", changed=True),
        ev("runner_on_ok", "node1", "switched", "lrelease.release.lrelease_switch", changed=True),
        ev("runner_on_ok", "node1", "lrelease gate", verdict="pass", evidence={}),
        ev("playbook_on_stats", ok={"node1": 4}),
    ])
    # Then the host is staged and switched, as with the roles' short names
    assert result.switched == {"node1"}
    assert [e.kind for e in seen if e.host == "node1"][:2] == [EventKind.HOST_STAGED, EventKind.HOST_SWITCHED]
