"""Tables for a person at a terminal and for a log, and the one way dates are shown.

Nothing is ever cut: on a terminal a table fits its width by wrapping long cells and folding ids
onto a second line (never an ellipsis); anywhere else (a pipe, a file, cron, CI) each row is
printed whole at the table's natural width, whatever the width of the terminal or $COLUMNS.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

_UNBOUNDED = 1 << 20


def table(title: str, columns: Iterable[str]) -> Table:
    """A table whose cells wrap, and fold where a word (an id, a checksum) is wider than its column."""
    t = Table(title=title)
    for name in columns:
        t.add_column(name, overflow="fold")
    return t


def print_table(console: Console, t: Table) -> None:
    """On a terminal: fitted to its width. Elsewhere: at the table's natural width, no row wrapped."""
    if console.is_terminal:
        console.print(t)
        return
    natural = Measurement.get(console, console.options.update_width(_UNBOUNDED), t).maximum
    Console(file=console.file, width=max(natural, console.width), color_system=None,
            highlight=False).print(t)


def when(stamp: str | None, *, seconds: bool = False) -> str:
    """A stored ISO 8601 time as people read it, with its year and zone: ``2026-11-30 00:41 UTC``
    (a stamp without a zone is taken as UTC, as the state database writes it); ``-`` for none."""
    if not stamp:
        return "-"
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")
