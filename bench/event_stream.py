"""A simulated ansible-runner event stream of one roll-out, as deploy.yml's plays emit it.

For bench/scale_bench.py (event handling, 100 vs 1,000 hosts) and tests/unit/test_event_scale.py.
The shape is what runner._EventTranslator reads (docs/design.md: task names are a contract with
the roles): the stage play (a few tasks per host, then ``staged``), then per wave the ``lrelease
wave`` task (once, with the batch), a few tasks per host, ``switched`` (changed) and ``lrelease
gate``; the final stats. Every event is built before any is handled, so only handling is timed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lrelease.plan import plan_waves

OTHER_TASKS_PER_HOST = 4  # tasks whose events the wrapper reads and drops (drain, restart, port check...)
WAVES = (1, 1, "5%", "25%", "100%")


def _event(kind: str, host: str | None, task: str, role: str = "", **res: Any) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": host, "task": task, "role": role, "res": res}}


def deploy_events(count: int, waves: Sequence[int | str] = WAVES) -> list[dict[str, Any]]:
    """The events of deploying to ``count`` hosts (``node00001``...), every gate passing."""
    hosts = [f"node{i:05d}" for i in range(1, count + 1)]
    events = [_event("playbook_on_play_start", None, "", play="stage")]
    for host in hosts:
        events += [_event("runner_on_ok", host, f"stage step {n}", "lrelease_stage")
                   for n in range(OTHER_TASKS_PER_HOST)]
        events.append(_event("runner_on_ok", host, "staged", "lrelease_stage", current="1.0.0"))
    events.append(_event("playbook_on_play_start", None, "", play="switch"))
    for wave in plan_waves(hosts, list(waves)).waves:
        events.append(_event("runner_on_ok", wave.hosts[0], "lrelease wave", ansible_play_batch=list(wave.hosts)))
        for host in wave.hosts:
            events += [_event("runner_on_ok", host, f"switch step {n}", "lrelease_switch")
                       for n in range(OTHER_TASKS_PER_HOST)]
            events.append(_event("runner_on_ok", host, "switched", "lrelease_switch", changed=True,
                                 lrelease_status={"build": "2.0.0", "previous": "1.0.0"}))
            events.append(_event("runner_on_ok", host, "lrelease gate", verdict="pass", reason="healthy",
                                 evidence={"gate": "http", "status": 200, "elapsed_ms": 12}))
    stats = {"ok": {h: 12 for h in hosts}, "changed": {h: 2 for h in hosts}}
    events.append({"event": "playbook_on_stats", "event_data": stats})
    return events
