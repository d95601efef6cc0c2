"""The live progress view: one row per host, updated from typed progress events.

``update`` does O(1) work per event (it only records state); rich renders the table at its
own refresh rate, at most ROWS_SHOWN rows of it. Without a terminal (cron, CI) it prints one
plain line per event instead.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lrelease import secrets
from lrelease.cli.planview import summarise
from lrelease.runner import EventKind, ProgressEvent

_STATE = {
    EventKind.HOST_STAGED: ("staged", "cyan"),
    EventKind.HOST_SWITCHED: ("switched, baking", "yellow"),
    EventKind.HOST_REVERTED: ("switch failed, reverted", "red"),
    EventKind.GATE_PASSED: ("gate passed", "green"),
    EventKind.GATE_FAILED: ("gate FAILED", "red"),
    EventKind.HOST_ROLLED_BACK: ("rolled back", "magenta"),
    EventKind.HOST_APP_STOPPED: ("first install: app stopped, stays drained", "red"),
    EventKind.HOST_FAILED: ("failed", "red"),
    EventKind.HOST_UNREACHABLE: ("unreachable", "red"),
}


# Plays that start a phase, each a plain line of its own (the play names of deploy.yml and
# rollback.yml); their hosts follow, one line each.
_PHASES = {"lrelease stage": "staging", "lrelease rollback": "rolling back"}

# The stage play read no `current` on the host: if its gate fails, there is nothing to roll back to.
FIRST_INSTALL = "no build on the host yet: if its gate fails, its app is stopped and it stays drained"


ROWS_SHOWN = 20  # hosts in the live table; a bigger fleet shows the latest changes and a count per state


class ProgressView:
    """Each host's state, updated in O(1) per event (the state, a count per state, the hosts that
    changed last). The live table shows every host of a fleet of up to ROWS_SHOWN; beyond that,
    its caption counts the hosts in each state and the rows are the ones that changed last, so a
    refresh costs the same for 10,000 hosts as for 20."""

    def __init__(self, hosts: Iterable[str], *, live: bool, console: Console) -> None:
        self.state: dict[str, tuple[str, str, str]] = {h: ("pending", "dim", "") for h in hosts}
        self.counts: dict[str, int] = {"pending": len(self.state)}
        self.recent: OrderedDict[str, None] = OrderedDict()  # the last ROWS_SHOWN hosts that changed, oldest first
        self.wave = 0
        self.console = console
        self._live = Live(self, console=console, refresh_per_second=4, transient=False) if live else None

    def __enter__(self) -> ProgressView:
        if self._live:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._live.__exit__(*exc)

    def update(self, event: ProgressEvent) -> None:
        if event.kind is EventKind.WAVE_STARTED:
            self.wave = int(event.detail.get("wave", self.wave + 1))
            line = f"wave {self.wave}: {summarise(list(event.detail.get('hosts', [])))}"
        elif event.host and event.kind in _STATE:
            label, style = _label(event)
            note = _note(event)
            self._set(event.host, (label, style, note))
            line = f"{event.host}: {label}{' — ' + note if note else ''}"
        elif event.kind is EventKind.PLAY_STARTED and event.detail.get("play") in _PHASES:
            line = _PHASES[event.detail["play"]]
        else:
            return
        if self._live is None:
            self.console.print(line, highlight=False)

    def _set(self, host: str, row: tuple[str, str, str]) -> None:
        before = self.state.get(host)
        if before is not None:
            self.counts[before[0]] -= 1
        self.counts[row[0]] = self.counts.get(row[0], 0) + 1
        self.state[host] = row
        self.recent[host] = None
        self.recent.move_to_end(host)
        if len(self.recent) > ROWS_SHOWN:
            self.recent.popitem(last=False)

    def __rich__(self) -> Table:
        table = Table(title=f"wave {self.wave}" if self.wave else "staging")
        for col in ("host", "state", "detail"):
            table.add_column(col)
        hosts = list(self.state) if len(self.state) <= ROWS_SHOWN else list(self.recent)
        for host in hosts:
            label, style, note = self.state[host]
            table.add_row(host, f"[{style}]{label}[/]", note)
        if len(self.state) > ROWS_SHOWN:
            table.caption = (f"{len(self.state)} hosts: "
                             + ", ".join(f"{n} {label}" for label, n in self.counts.items() if n)
                             + f"; the last {len(hosts)} that changed above")
        return table


def _inconclusive(event: ProgressEvent) -> bool:
    """The gate could not decide (not a failure: the roll-out halts for a human)."""
    return event.kind is EventKind.GATE_FAILED and event.detail.get("verdict") == "inconclusive"


def _label(event: ProgressEvent) -> tuple[str, str]:
    if _inconclusive(event):
        return "gate INCONCLUSIVE", "yellow"
    if event.kind is EventKind.HOST_STAGED and "current" in event.detail and not event.detail["current"]:
        return "staged, first install", "cyan"
    return _STATE[event.kind]


def _note(event: ProgressEvent) -> str:
    """The detail column: registered secrets masked (before cutting, which could split one).
    An Inconclusive verdict keeps its reason whole: it is what the human it halts for needs."""
    if _inconclusive(event):  # its numbers: `lrelease show`
        return secrets.scrub(str(event.detail.get("reason", "")))
    if event.kind in (EventKind.GATE_PASSED, EventKind.GATE_FAILED):
        return _gate_note(event.detail) or _cut(secrets.scrub(str(event.detail.get("reason", ""))))
    if event.kind is EventKind.HOST_STAGED and "current" in event.detail and not event.detail["current"]:
        return FIRST_INSTALL
    return _cut(secrets.scrub(str(event.detail.get("msg", ""))))


def _cut(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _gate_note(detail: dict) -> str:
    """The APM gate's verdict in one short line: each check's numbers, what it was compared
    with, and at which look (the full evidence: `lrelease show`)."""
    evidence = detail.get("evidence") or {}
    last = evidence.get("last") or {}
    if evidence.get("gate") != "apm" or not isinstance(last, dict):
        return ""
    parts = []
    for check in last.get("checks") or []:
        ev, verdict = check.get("evidence") or {}, check.get("verdict", "?")
        if check.get("check") == "errors" and ev.get("canary_rate") is not None and ev.get("reference_rate") is not None:
            parts.append(f"errors {ev['canary_rate']:.2%} vs {ev['reference_rate']:.2%} {verdict}")
        elif check.get("check") == "latency" and any(k.startswith("reference_p") for k in ev):
            canary = next((v for k, v in ev.items() if k.startswith("canary_p") and k.endswith("_ms")), None)
            reference = next((v for k, v in ev.items() if k.startswith("reference_p") and k.endswith("_ms")), None)
            name = f"p{ev.get('quantile', 0.95) * 100:g}"
            if canary is not None and reference is not None:
                parts.append(f"{name} {canary:.0f} vs {reference:.0f} ms {verdict}")
        else:
            parts.append(_cut(f"{check.get('check', '?')} {verdict}: {check.get('reason', '')}", 100))
    against = "its own past" if evidence.get("compared_with") == "baseline" else "peers"
    looks = f"look {evidence.get('looks', '?')}/{last.get('max_looks', '?')}"
    continued = evidence.get("continued")  # a resume went on with (or restarted) a halted judgement
    lead = f"{continued['note']}: " if isinstance(continued, dict) and continued.get("note") else ""
    return _cut(f"{lead}{'; '.join(parts)} (vs {against}, {looks})") if parts else ""
