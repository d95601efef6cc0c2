"""``lrelease show``: one stored roll-out and its gate evidence, laid out for a human.

Pure functions from what the state database holds (a Rollout, its host events, its gate
outcomes) to lines of rich Text, so the layout is tested without a fleet and the command only
prints. Each line carries an indent, and a long line wraps with a hanging indent, so the
report stays readable on an 80-column terminal and as plain text in a log.

Evidence is read defensively: it was written by whichever gate ran at the time (the APM gate,
the plain http gate, one from a later version), so a missing key is left out, a value of an
odd type is shown as it is, and nothing here raises on what it finds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from lrelease import policies, secrets
from lrelease.cli.tables import when
from lrelease.state import GateOutcome, HostEvent, Rollout

VERDICT_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}
STATUS_STYLE = {"succeeded": "green", "rolled_back": "red", "rollback_failed": "bold red", "halted": "yellow",
                "interrupted": "yellow", "refused": "magenta", "running": "cyan", "paused": "yellow",
                "awaiting_promotion": "bold yellow"}
PHASE_STYLE = {"staged": "cyan", "switched": "yellow", "gate_passed": "green", "gate_failed": "red",
               "gate_inconclusive": "yellow", "reverted": "red", "rolled_back": "magenta", "unreachable": "red",
               "failed": "red"}
_GATE_PHASES = ("gate_passed", "gate_failed")
_QUANTILE_KEY = re.compile(r"^canary_(p[0-9.]+)_ms$")


@dataclass(frozen=True)
class Line:
    """One line of the report, ``indent`` spaces in; when it wraps, the continuations go
    ``hang`` spaces further, so they do not read as lines of their own."""

    text: Text
    indent: int = 0
    hang: int = 2


class Rendered:
    """The lines as one rich renderable, wrapped to the console's width with hanging indents
    and no trailing blanks (rich's Padding would fill every line to the full width, which
    shows in logs and in saved output)."""

    MIN_WIDTH = 30  # a hang never squeezes the text narrower than this

    def __init__(self, lines: Iterable[Line]) -> None:
        self.lines = list(lines)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines:
            for indent, part in self.wrap(console, line, options.max_width):
                part.rstrip()
                yield Text(" " * indent, no_wrap=True).append_text(part)

    def wrap(self, console: Console, line: Line, width: int) -> list[tuple[int, Text]]:
        text = line.text
        first = text.wrap(console, max(width - line.indent, self.MIN_WIDTH))[0] if text.plain else Text("")
        rest_at = len(first.plain)
        rest_at += len(text.plain[rest_at:]) - len(text.plain[rest_at:].lstrip())
        if rest_at >= len(text.plain):
            return [(line.indent, first)]
        hang = min(line.indent + line.hang, max(width - self.MIN_WIDTH, 0))
        rest = text[rest_at:].wrap(console, max(width - hang, self.MIN_WIDTH))
        return [(line.indent, first), *((hang, part) for part in rest)]


def render(lines: Iterable[Line]) -> Rendered:
    return Rendered(lines)


# -- numbers, tolerant of whatever was stored ----------------------------------------------------
def _dig(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or None as soon as a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _num(value: Any) -> float | None:
    """A finite number, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        return None
    return number if math.isfinite(number) else None


def _shown(value: Any, fmt: str) -> str:
    number = _num(value)
    if number is not None:
        return format(number, fmt)
    return "?" if value is None else str(value)


def pct(value: Any) -> str:
    """A rate (0.0512) as the judge writes it in its reasons: 5.120%."""
    return _shown(value, ".3%")


def pval(value: Any) -> str:
    return _shown(value, ".2g")


def ms(value: Any) -> str:
    number = _num(value)
    if number is None:
        return _shown(value, "")
    return f"{number:.1f} ms" if abs(number) < 10 else f"{number:.0f} ms"


def seconds(value: Any) -> str:
    number = _num(value)
    if number is None:
        return _shown(value, "")
    if number < 60:
        return f"{number:.3g} s"
    minutes, secs = divmod(round(number), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _span(start: str | None, end: str | None) -> float | None:
    try:
        return (datetime.fromisoformat(end or "") - datetime.fromisoformat(start or "")).total_seconds()
    except ValueError:
        return None


def _styled(word: str, styles: Mapping[str, str], *, upper: bool = False) -> Text:
    return Text(word.upper() if upper else word, style=styles.get(word, ""))


def _text(*parts: str | Text) -> Text:
    return Text.assemble(*parts)


# -- the report ----------------------------------------------------------------------------------
def report(rollout: Rollout, events: Sequence[HostEvent], gates: Sequence[GateOutcome]) -> list[Line]:
    """The whole report: header, waves with each host's final phase, then one block per gate."""
    rollout, events, gates = scrubbed(rollout, events, gates)
    lines = header(rollout)
    lines.append(Line(Text("")))
    lines.extend(waves(rollout, events))
    lines.append(Line(Text("")))
    lines.append(Line(Text(f"gates: {len(gates)}" if gates else "gates: none recorded", style="bold")))
    reasons = _gate_reasons(events)
    for gate in gates:
        pending = reasons.get((gate.host, gate.wave)) or [""]
        lines.extend(gate_block(gate, pending.pop(0)))
    return lines


def header(rollout: Rollout) -> list[Line]:
    """Who ran what, why, when and how it ended."""
    title = _text(Text(f"roll-out {rollout.id}", style="bold"), f": {rollout.action} {rollout.build} to {rollout.env}")
    exit_code = "-" if rollout.exit_code is None else str(rollout.exit_code)
    finished = when(rollout.finished_at, seconds=True)
    took = _span(rollout.started_at, rollout.finished_at)
    if took is not None:
        finished += f" (after {seconds(took)})"
    rows: list[tuple[str, str | Text]] = [
        ("status", _text(_styled(rollout.status, STATUS_STYLE), f", exit code {exit_code}")),
        ("actor", rollout.actor),
        ("via", via(rollout)),
        ("reason", rollout.reason or "-"),
        ("started", when(rollout.started_at, seconds=True)),
        ("finished", finished),
        ("previous", rollout.previous_build or "-"),
    ]
    if rollout.resumes:
        rows.append(("resumes", rollout.resumes))
    what = what_next(rollout.status, rollout.env)
    if what:
        rows.append(("next", what))
    rows.extend(("policy", phrase) for phrase in policies.describe(rollout.policy))
    return [Line(title)] + [Line(_text(f"{key:<9} ", value), indent=2) for key, value in rows]


def via(rollout: Rollout) -> str:
    """How it was run: ``lrelease`` (the wrapper), ``ansible-playbook``, or ``AWX job N`` (the
    playbooks' policy step records it in the plan's ``via``)."""
    v = rollout.via
    if v.get("kind") == "awx":
        return f"AWX job {v.get('job_id', '?')}"
    return str(v.get("kind") or "lrelease")


def who(rollout: Rollout) -> str:
    """The actor, and the AWX job or plain ansible-playbook it came through (history's column)."""
    v = via(rollout)
    return rollout.actor if v == "lrelease" else f"{rollout.actor} ({v})"


def what_next(status: str, env: str) -> str:
    """What a human does with a roll-out stopped by its window or at a pause (empty otherwise)."""
    if status == "paused":
        return f"paused by its deploy window: `lrelease resume --env {env}` continues it inside the next window"
    if status == "awaiting_promotion":
        return (f"awaiting promotion: `lrelease promote --env {env}` goes on, `lrelease abort --env {env}` rolls back "
                "what it switched")
    return ""


def waves(rollout: Rollout, events: Sequence[HostEvent]) -> list[Line]:
    """Each planned wave with its hosts grouped by their final phase; hosts the plan does not
    name (a rollback has no waves) are listed after it."""
    phases = final_phases(events)
    plan = rollout.plan if isinstance(rollout.plan, Mapping) else {}
    planned = plan.get("waves") if isinstance(plan.get("waves"), list) else []
    done = plan.get("done") if isinstance(plan.get("done"), list) else []
    # (label, hosts, what a host without events there means)
    groups: list[tuple[str, list[str], str]] = []
    if done:
        groups.append(("done before", [str(h) for h in done], "already on the build"))
    for number, wave in enumerate(planned, 1):
        hosts = _dig(wave, "hosts")
        if isinstance(hosts, list):
            groups.append((f"wave {_dig(wave, 'index') or number}", [str(h) for h in hosts], "not reached"))
    named = {h for _, hosts, _ in groups for h in hosts}
    others = [h for h in phases if h not in named]
    if others:
        groups.append(("hosts" if not named else "other hosts", others, "-"))
    if not groups:
        return [Line(Text("waves: none recorded", style="bold"))]
    lines = [Line(Text("waves", style="bold"))]
    width = max(len(label) for label, _, _ in groups)
    for label, hosts, untouched in groups:
        by_phase: dict[str, list[str]] = {}
        for host in hosts:
            by_phase.setdefault(phases.get(host, untouched), []).append(host)
        for i, (phase, members) in enumerate(by_phase.items()):
            lead = f"{label if i == 0 else '':<{width}}  "
            shown = Text(phase.replace("_", " "), style=PHASE_STYLE.get(phase, "dim"))
            hang = len(lead) + len(shown.plain) + 2  # a long list of hosts wraps under its first host
            lines.append(Line(_text(lead, shown, ": ", ", ".join(members)), indent=2, hang=hang))
    return lines


def final_phases(events: Sequence[HostEvent]) -> dict[str, str]:
    """Each host's last phase; a gate that could not decide reads ``gate_inconclusive`` (the
    database records it as ``gate_failed`` with the verdict in its detail), never failed."""
    phases: dict[str, str] = {}
    for event in events:
        phases[event.host] = "gate_inconclusive" if _is_inconclusive(event) else event.phase
    return phases


def _is_inconclusive(event: HostEvent) -> bool:
    return event.phase == "gate_failed" and isinstance(event.detail, Mapping) and \
        event.detail.get("verdict") == "inconclusive"


def inconclusive(events: Sequence[HostEvent]) -> list[Line]:
    """One line per Inconclusive gate: host, wave and its reason whole (it is what the human the
    roll-out halted for needs), for ``status`` and ``history``."""
    lines = []
    for event in map(_scrubbed_event, events):
        if _is_inconclusive(event):
            lead = f"{event.host}: gate "
            wave = _num(event.detail.get("wave"))
            where = f" (wave {int(wave)})" if wave is not None else ""
            text = _text(lead, _styled("inconclusive", VERDICT_STYLE, upper=True), f"{where}: ",
                         str(event.detail.get("reason") or "no reason recorded"))
            lines.append(Line(text, indent=2, hang=len(lead)))
    return lines


def _scrubbed_event(event: HostEvent) -> HostEvent:
    return replace(event, detail=secrets.scrub_data(event.detail))


def _gate_reasons(events: Sequence[HostEvent]) -> dict[tuple[str, int], list[str]]:
    """The gate's own one-line reason, which the gates table does not keep but the host event
    recorded with it does; per (host, wave), in recording order."""
    found: dict[tuple[str, int], list[str]] = {}
    for event in events:
        if event.phase in _GATE_PHASES and isinstance(event.detail, Mapping):
            wave = _num(event.detail.get("wave"))
            found.setdefault((event.host, int(wave or 0)), []).append(str(event.detail.get("reason") or ""))
    return found


def gate_block(gate: GateOutcome, reason: str = "") -> list[Line]:
    """One gate outcome: a title line, then what the evidence says, by the kind of gate."""
    evidence = gate.evidence
    kind = _dig(evidence, "gate")
    if kind == "apm" or (kind is None and isinstance(_dig(evidence, "last"), Mapping)):
        title, body = _apm(evidence)
    elif kind == "http":
        title, body = _http(evidence)
    elif not evidence:
        title, body = Text("gate"), [Line(Text("no evidence recorded", style="dim"), indent=2)]
    else:
        title, body = _unknown(evidence)
    verdict = _styled(str(gate.verdict), VERDICT_STYLE, upper=True)
    lead = f"wave {gate.wave}  {gate.host}  "
    lines = [Line(Text("")), Line(_text(lead, verdict, "  ", title), hang=len(lead))]
    # The APM judge's own reason only repeats its checks' reasons, shown below; the gate's
    # reason is worth a line when it says more (a bake that ran out of time).
    last_reason = str(_dig(evidence, "last", "reason") or "")
    checks = _dig(evidence, "last", "checks")
    if isinstance(checks, list) and checks:
        reason = "" if reason == last_reason else reason
    else:
        reason = reason or last_reason
    if reason:
        lines.append(Line(_text("reason: ", reason), indent=2, hang=len("reason: ")))
    return lines + body


def _apm(ev: Mapping[str, Any]) -> tuple[Text, list[Line]]:
    last = _dig(ev, "last") if isinstance(_dig(ev, "last"), Mapping) else {}
    provider = _dig(ev, "provider")
    title = Text(f"apm ({provider})" if provider else "apm")
    compared = _dig(ev, "compared_with") or (_dig(last, "reference") if isinstance(_dig(last, "reference"), str)
                                              else None)
    reference = _dig(ev, "reference")
    peers = ", ".join(str(h) for h in reference) if isinstance(reference, list) and reference else ""
    if compared == "peers":
        title.append(f" vs peers {peers}" if peers else " vs its peers")
    elif compared == "baseline":
        title.append(" vs its own baseline (before the switch)")
    elif compared:
        title.append(f" vs {compared}")
    looks, max_looks = _dig(ev, "looks"), _dig(last, "max_looks")
    facts = [f"looks {_shown(looks, 'g')}/{_shown(max_looks, 'g')}" if looks is not None else "",
             f"bake {seconds(_dig(ev, 'elapsed'))}" if _dig(ev, "elapsed") is not None else "",
             f"gate work {seconds(_dig(ev, 'gate_seconds'))}" if _dig(ev, "gate_seconds") is not None else "",
             f"decision {_dig(ev, 'step')}" if _dig(ev, "step") else ""]
    lines = [Line(Text(", ".join(f for f in facts if f)), indent=2)] if any(facts) else []
    history = _dig(ev, "history")
    if isinstance(history, list) and len(history) > 1:
        verdicts = [str(_dig(look, "verdict") or "?") for look in history]
        lines.append(Line(Text("each look: " + ", ".join(verdicts)), indent=2))
    checks = _dig(last, "checks")
    for check in checks if isinstance(checks, list) else []:
        lines.extend(check_lines(check, last))
    return title, lines


def check_lines(check: Any, look: Mapping[str, Any] | None = None) -> list[Line]:
    """One check of the last look: its verdict and reason, then its key numbers."""
    if not isinstance(check, Mapping):
        return [Line(Text(f"check: {check!r}"), indent=2)]
    name = str(check.get("check") or "check")
    verdict = _styled(str(check.get("verdict") or "?"), VERDICT_STYLE, upper=True)
    lead = _text(f"{name}  ", verdict, "  ")
    lines = [Line(_text(lead, str(check.get("reason") or "")), indent=2, hang=len(lead.plain))]
    ev = check.get("evidence") if isinstance(check.get("evidence"), Mapping) else {}
    alpha, beta = _dig(look, "alpha_this_look"), _dig(look, "beta_this_look")
    numbers = _errors(ev, alpha, beta) if name == "errors" else _latency(ev, alpha, beta) if name == "latency" else []
    return lines + [Line(Text(n), indent=4) for n in numbers]


def _vs(p: Any, level: Any) -> str:
    return f"p={pval(p)}" + (f" (needs < {pval(level)})" if _num(level) is not None else "")


def _errors(ev: Mapping[str, Any], alpha: Any, beta: Any) -> list[str]:
    out: list[str] = []

    def counted(side: str) -> str:
        rate, errors, requests = ev.get(f"{side}_rate"), ev.get(f"{side}_errors"), ev.get(f"{side}_requests")
        shown = pct(rate)
        if _num(errors) is not None and _num(requests) is not None:
            shown += f" ({_shown(errors, 'g')}/{_shown(requests, 'g')})"
        return shown

    if "canary_rate" in ev or "reference_rate" in ev:
        rate = f"error rate: canary {counted('canary')}"
        out.append(rate + (f" vs reference {counted('reference')}" if "reference_rate" in ev else ""))
    ratio, ci = ev.get("ratio"), ev.get("ratio_ci95")
    phi = _dig(ev, "dispersion", "phi")
    parts = []
    if ratio is not None:
        interval = f", 95% CI {_shown(ci[0], '.3g')}-{_shown(ci[1], '.3g')}" if isinstance(ci, list) and len(ci) == 2 else ""
        parts.append(f"ratio {_shown(ratio, '.3g')}{interval}")
    if phi is not None:
        parts.append(f"dispersion phi {_shown(phi, '.3g')}")
    if parts:
        out.append("; ".join(parts))
    if "p_fail" in ev:
        out.append(f"fail if above {pct(ev.get('fail_above_rate'))}: {_vs(ev.get('p_fail'), alpha)}")
    if "p_pass" in ev:
        out.append(f"pass if below {pct(ev.get('pass_below_rate'))}: {_vs(ev.get('p_pass'), beta)}")
    if "max_rate" in ev:
        out.append(f"max_rate {pct(ev.get('max_rate'))}: {_vs(ev.get('p_over_max_rate'), alpha)}")
    return out


def _latency(ev: Mapping[str, Any], alpha: Any, beta: Any) -> list[str]:
    out: list[str] = []
    name = next((m.group(1) for key in ev if (m := _QUANTILE_KEY.match(str(key)))), None)
    if name:
        line = f"{name}: canary {ms(ev.get(f'canary_{name}_ms'))}"
        if f"reference_{name}_ms" in ev:
            line += f" vs reference {ms(ev.get(f'reference_{name}_ms'))}"
        out.append(line)
    if "fail_above_ms" in ev:
        out.append(f"fail if above {ms(ev.get('fail_above_ms'))}"
                   + (f": {_vs(ev.get('p_fail'), alpha)}" if "p_fail" in ev else ""))
    if "pass_below_ms" in ev:
        out.append(f"pass if below {ms(ev.get('pass_below_ms'))}"
                   + (f": {_vs(ev.get('p_pass'), beta)}" if "p_pass" in ev else ""))
    if "max_ms" in ev:
        out.append(f"max_ms {ms(ev.get('max_ms'))}"
                   + (f": {_vs(ev.get('p_over_max_ms'), alpha)}" if "p_over_max_ms" in ev else ""))
    mw = ev.get("mann_whitney")
    if isinstance(mw, Mapping):
        out.append(f"Mann-Whitney AUC {_shown(mw.get('auc'), '.3g')}, p(slower)={pval(mw.get('p_slower'))}")
    return out


def _http(ev: Mapping[str, Any]) -> tuple[Text, list[Line]]:
    title = Text(f"http {ev.get('url') or ''}".rstrip())
    facts = []
    if ev.get("probes") is not None:
        facts.append(f"{_shown(ev.get('probes'), 'g')} probes")
    if ev.get("elapsed") is not None:
        facts.append(f"in {seconds(ev.get('elapsed'))}")
    if ev.get("bake_seconds") is not None:
        facts.append(f"after a {seconds(ev.get('bake_seconds'))} bake")
    codes = ev.get("status_counts")
    lines = [Line(Text(" ".join(facts)), indent=2)] if facts else []
    if isinstance(codes, Mapping) and codes:
        seen = ", ".join(f"{code} x{count}" for code, count in codes.items())
        expect = ev.get("expect_status")
        wanted = f" (expected {', '.join(map(str, expect))})" if isinstance(expect, list) and expect else ""
        lines.append(Line(Text(f"answers: {seen}{wanted}"), indent=2))
    samples = ev.get("samples")
    last = samples[-1] if isinstance(samples, list) and samples else None
    if isinstance(last, Mapping):
        status = last.get("status") if last.get("status") is not None else "no answer"
        took = f" in {seconds(last.get('seconds'))}" if last.get("seconds") is not None else ""
        detail = last.get("error") or last.get("body") or ""
        lines.append(Line(Text(f"last probe: {status}{took}{': ' + str(detail) if detail else ''}"), indent=2))
    return title, lines


def _unknown(ev: Any) -> tuple[Text, list[Line]]:
    kind = _dig(ev, "gate")
    title = Text(f"gate {kind}" if kind else "gate")
    keys = ", ".join(sorted(map(str, ev))) if isinstance(ev, Mapping) else type(ev).__name__
    return title, [Line(Text(f"evidence of an unknown shape: {keys} (see --json)", style="dim"), indent=2)]


def to_json(rollout: Rollout, events: Sequence[HostEvent], gates: Sequence[GateOutcome]) -> dict[str, Any]:
    """The stored record, shaped like a ``history --json`` row plus the full host events (the
    phases as stored: an Inconclusive gate is ``gate_failed`` there, its verdict in its event)."""
    phases: dict[str, str] = {}
    for event in events:
        phases[event.host] = event.phase
    return secrets.scrub_data({**rollout.to_dict(), "hosts": phases, "events": [e.__dict__ for e in events],
                               "gates": [g.__dict__ for g in gates]})


def scrubbed(rollout: Rollout, events: Sequence[HostEvent], gates: Sequence[GateOutcome],
             ) -> tuple[Rollout, list[HostEvent], list[GateOutcome]]:
    """The record with every secret this process knows masked (one stored before lrelease
    scrubbed by value, or one it learned since, never reaches the screen)."""
    return (replace(rollout, reason=secrets.scrub(rollout.reason), plan=secrets.scrub_data(rollout.plan),
                    policy=secrets.scrub_data(rollout.policy) if rollout.policy else rollout.policy),
            [_scrubbed_event(e) for e in events],
            [replace(g, evidence=secrets.scrub_data(g.evidence)) for g in gates])
