"""The live progress view: one row per host, updated from typed progress events.

``update`` does O(1) work per event (it only records state); rich renders the table at its
own refresh rate. Without a terminal (cron, CI) it prints one plain line per event instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lrelease.runner import EventKind, ProgressEvent

_STATE = {
    EventKind.HOST_STAGED: ("staged", "cyan"),
    EventKind.HOST_SWITCHED: ("switched, baking", "yellow"),
    EventKind.HOST_REVERTED: ("switch failed, reverted", "red"),
    EventKind.GATE_PASSED: ("gate passed", "green"),
    EventKind.GATE_FAILED: ("gate FAILED", "red"),
    EventKind.HOST_ROLLED_BACK: ("rolled back", "magenta"),
    EventKind.HOST_FAILED: ("failed", "red"),
    EventKind.HOST_UNREACHABLE: ("unreachable", "red"),
}


class ProgressView:
    def __init__(self, hosts: Iterable[str], *, live: bool, console: Console) -> None:
        self.state: dict[str, tuple[str, str, str]] = {h: ("pending", "dim", "") for h in hosts}
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
            line = f"wave {self.wave}: {', '.join(event.detail.get('hosts', []))}"
        elif event.host and event.kind in _STATE:
            label, style = _STATE[event.kind]
            note = _note(event)
            self.state[event.host] = (label, style, note)
            line = f"{event.host}: {label}{' — ' + note if note else ''}"
        else:
            return
        if self._live is None:
            self.console.print(line, highlight=False)

    def __rich__(self) -> Table:
        table = Table(title=f"wave {self.wave}" if self.wave else "staging")
        for col in ("host", "state", "detail"):
            table.add_column(col)
        for host, (label, style, note) in self.state.items():
            table.add_row(host, f"[{style}]{label}[/]", note)
        return table


def _note(event: ProgressEvent) -> str:
    if event.kind in (EventKind.GATE_PASSED, EventKind.GATE_FAILED):
        return str(event.detail.get("reason", ""))[:160]
    return str(event.detail.get("msg", ""))[:160]
