"""How a deploy, rollback or resume ends, for a human (one line, then each Inconclusive gate with
its reason whole) and for ``--json`` (the outcome, plus the gate that stopped the roll-out).

A failed or halted roll-out's message names the hosts; the gate's own reason (what the gate saw)
is in ``gates`` and in ``lrelease show``. ``--json`` adds it where a nightly job reads first: a
``gate_reason`` field (host, wave, verdict, reason) and the same at the end of ``message``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console

from lrelease import secrets
from lrelease.cli import report
from lrelease.errors import ExitCode
from lrelease.rollout import Outcome
from lrelease.state import HostEvent


def stopping_gate(gates: tuple[Mapping[str, Any], ...] | list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The gate that stopped the roll-out: the first that failed, else the first Inconclusive one;
    None when every gate passed (or none ran)."""
    for verdict in ("fail", "inconclusive"):
        found = next((g for g in gates if g.get("verdict") == verdict), None)
        if found is not None:
            return found
    return None


def to_json(outcome: Outcome) -> dict[str, Any]:
    """The ``--json`` outcome: ``Outcome.to_dict()`` with ``gate_reason`` (null when no gate
    stopped the roll-out) and, when one did, its host, verdict and reason ending the message."""
    data = outcome.to_dict()
    gate = stopping_gate(outcome.gates)
    data["gate_reason"] = None
    if gate is not None:
        reason = str(gate.get("reason") or "no reason recorded")
        verdict = str(gate.get("verdict"))
        data["gate_reason"] = {"host": gate.get("host"), "wave": gate.get("wave"), "verdict": verdict,
                               "reason": reason}
        data["message"] = f"{outcome.message}; gate {verdict.upper()} on {gate.get('host')}: {reason}"
    return data


def print_end(where: Console, action: str, outcome: Outcome) -> None:
    """The end of a run for a human: one line (status and message), then each Inconclusive gate
    with its reason whole (never shown as a failure)."""
    style = "green" if outcome.exit_code == ExitCode.OK else "red"
    where.print(f"[{style}]{action} {outcome.build} on {outcome.env}: {outcome.status}[/] — "
                f"{secrets.scrub(outcome.message)} (roll-out {outcome.rollout_id})", highlight=False)
    print_inconclusive(where, [HostEvent(outcome.rollout_id, g.get("host", "?"), "gate_failed", "", g)
                               for g in outcome.gates])
    if outcome.status in ("awaiting_promotion", "paused"):
        for line in gates_so_far(outcome.gates):
            where.print(line, markup=False, highlight=False, soft_wrap=True)


def gates_so_far(gates: tuple[Mapping[str, Any], ...] | list[Mapping[str, Any]]) -> list[str]:
    """The evidence a promotion is decided on: each gate of the run, one line (wave, host,
    verdict, the gate's reason); `lrelease show ID` has each one's whole evidence."""
    if not gates:
        return ["  gates so far: none ran"]
    return ["  gates so far (`lrelease show ID` has their evidence):"] + [
        f"    wave {g.get('wave')} {g.get('host')}: {str(g.get('verdict')).upper()}"
        + (f" - {secrets.scrub(str(g.get('reason')))}" if g.get("reason") else "") for g in gates]


def print_inconclusive(where: Console, events: list[HostEvent]) -> None:
    """Each Inconclusive gate with its reason whole (never shown as a failure)."""
    lines = report.inconclusive(events)
    if lines:
        where.print(report.render(lines), highlight=False)
