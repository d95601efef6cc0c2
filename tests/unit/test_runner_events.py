"""ansible-runner events -> typed progress events and a RunResult (pure, no Ansible run)."""

from __future__ import annotations

from lrelease.rollout import Outcome
from lrelease.errors import ExitCode
from lrelease.runner import EventKind, RunResult, _EventTranslator


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
        "rollout_id", "env", "build", "action", "status", "exit_code", "message", "switched", "rolled_back",
        "failed", "unreachable", "gates", "plan"])
    assert out.to_dict()["exit_code"] == 0


def test_gate_records_carry_the_deciders_reason():
    result, seen = translate([ev("runner_on_ok", "node1", "lrelease gate", verdict="pass", reason="answered 200",
                                 evidence={"probes": 1})])
    assert result.gates == [{"host": "node1", "wave": 0, "verdict": "pass", "reason": "answered 200",
                             "evidence": {"probes": 1}}]
    assert seen[0].detail["reason"] == "answered 200"
