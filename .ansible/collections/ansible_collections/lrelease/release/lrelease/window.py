"""Deploy windows: when an environment takes roll-outs (``environments.<env>.window``).

A window is weekly rules and freeze dates in one IANA time zone::

    window:
      timezone: Europe/Amsterdam
      weekly: ["Sun-Thu 22:00-06:00"]          # opens on those days at 22:00, closes the next day 06:00
      freeze: ["2026-12-24..2026-12-26", "2026-12-31"]

A rule is ``DAYS HH:MM-HH:MM``: DAYS is a day (``Mon``), a range (``Sun-Thu``, may wrap: ``Fri-Mon``),
a comma list (``Mon,Wed``) or ``daily``; the window opens on each of those days at the first time
and closes at the second, the next day when that is not later (``22:00-06:00`` crosses midnight;
``24:00`` is the end of the day). Without ``weekly`` every hour is open. A freeze date (or an
inclusive range ``FROM..TO``) is closed from 00:00 to 24:00 of that local day, whatever the rules
say; a night that crosses into it closes at its midnight.

Times are local to ``timezone`` (zoneinfo), so a window follows daylight saving time: 22:00 is
22:00 in winter and in summer. A boundary that falls in the hour skipped in spring is moved on by
that hour; one in the hour repeated in autumn is its first occurrence. Pure functions, no I/O;
``now`` is always given (the state store's clock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Window", "WindowRule", "parse_window", "DAYS"]

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HORIZON_DAYS = 400  # how far ahead the next opening is looked for (a freeze may last months)
_RULE_RE = re.compile(r"(?P<days>[A-Za-z][A-Za-z,\-]*)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\Z")
_DATE_RANGE_RE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:\.\.(\d{4}-\d{2}-\d{2}))?\Z")
RULE_EXPECTED = 'a rule such as "Sun-Thu 22:00-06:00" (days: Mon..Sun, a range, a comma list or daily; 24-hour times)'
FREEZE_EXPECTED = 'a date or an inclusive range such as "2026-12-24" or "2026-12-24..2026-12-26"'


@dataclass(frozen=True)
class WindowRule:
    """One weekly rule: opens on ``days`` (0 = Monday) at ``start`` minutes after midnight, for
    ``minutes`` (ending the next day when it crosses midnight)."""

    text: str
    days: frozenset[int]
    start: int  # minutes after local midnight
    minutes: int  # how long it stays open (1 .. 1440)


@dataclass(frozen=True)
class Window:
    """An environment's deploy window (see the module docstring)."""

    timezone: str
    weekly: tuple[WindowRule, ...] = ()
    freeze: tuple[tuple[date, date], ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def describe(self) -> str:
        """``weekly Sun-Thu 22:00-06:00 (Europe/Amsterdam), freeze 2026-12-24..2026-12-26``."""
        rules = ", ".join(r.text for r in self.weekly) or "every hour"
        text = f"{rules} ({self.timezone})"
        if self.freeze:
            text += ", freeze " + ", ".join(a.isoformat() if a == b else f"{a}..{b}" for a, b in self.freeze)
        return text

    def to_dict(self) -> dict:
        return {"timezone": self.timezone, "weekly": [r.text for r in self.weekly],
                "freeze": [a.isoformat() if a == b else f"{a}..{b}" for a, b in self.freeze]}

    # -- when -----------------------------------------------------------------------------
    def intervals(self, now: datetime, days: int = HORIZON_DAYS) -> list[tuple[datetime, datetime]]:
        """The open intervals (UTC, merged, freezes cut out) from the day before ``now`` on, for ``days`` days."""
        zone = self.zone
        first = now.astimezone(zone).date() - timedelta(days=2)
        rules = self.weekly or (WindowRule("daily 00:00-24:00", frozenset(range(7)), 0, 1440),)
        raw: list[tuple[datetime, datetime]] = []
        for offset in range(days + 3):
            day = first + timedelta(days=offset)
            for rule in rules:
                if day.weekday() in rule.days:
                    raw.append((_at(day, rule.start, zone), _at(day, rule.start + rule.minutes, zone)))
        frozen = [(_at(a, 0, zone), _at(b, 1440, zone)) for a, b in self.freeze]
        cut: list[tuple[datetime, datetime]] = []
        for start, end in raw:
            pieces = [(start, end)]
            for f_start, f_end in frozen:
                pieces = [p for s, e in pieces for p in ((s, min(e, f_start)), (max(s, f_end), e)) if p[0] < p[1]]
            cut.extend(pieces)
        merged: list[tuple[datetime, datetime]] = []
        for start, end in sorted(cut):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def is_open(self, now: datetime) -> bool:
        return self.closes_at(now) is not None

    def closes_at(self, now: datetime) -> datetime | None:
        """When the window open at ``now`` closes (UTC); None when it is closed at ``now``."""
        for start, end in self.intervals(now):
            if start <= now < end:
                return end
        return None

    def next_open(self, now: datetime) -> datetime | None:
        """``now`` when open; else when the window next opens (UTC), None when not within the horizon."""
        for start, end in self.intervals(now):
            if end > now:
                return max(start, now)
        return None

    def local(self, moment: datetime) -> str:
        """``Mon 2026-11-30 22:00 Europe/Amsterdam`` (minutes are what a human plans by)."""
        return moment.astimezone(self.zone).strftime("%a %Y-%m-%d %H:%M ") + self.timezone


def _at(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """``minutes`` after local midnight of ``day`` (1440 and more: the following days), in UTC.
    Wall-clock arithmetic: a time in the spring gap moves on by the gap (fold 0)."""
    day = day + timedelta(days=minutes // 1440)
    minutes %= 1440
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return local.astimezone(timezone.utc)


# -- parsing ----------------------------------------------------------------------------------
def parse_rule(text: object) -> WindowRule:
    """``"Sun-Thu 22:00-06:00"`` -> a WindowRule; ValueError (saying what was expected) otherwise."""
    if not isinstance(text, str):
        raise ValueError(RULE_EXPECTED)
    match = _RULE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(RULE_EXPECTED)
    days = _days(match["days"])
    start, end = _minutes(match["start"]), _minutes(match["end"])
    if start is None or end is None or start == 1440:
        raise ValueError(RULE_EXPECTED)
    minutes = end - start if end > start else end + 1440 - start
    return WindowRule(" ".join(text.split()), days, start, minutes)


def _days(text: str) -> frozenset[int]:
    if text.lower() == "daily":
        return frozenset(range(7))
    names = {d.lower(): i for i, d in enumerate(DAYS)}
    out: set[int] = set()
    for part in text.split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(e.lower() not in names for e in ends):
            raise ValueError(RULE_EXPECTED)
        first, last = names[ends[0].lower()], names[ends[-1].lower()]
        out.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    return frozenset(out)


def _minutes(text: str) -> int | None:
    hours, minutes = (int(p) for p in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        return None
    return hours * 60 + minutes


def parse_freeze(text: object) -> tuple[date, date]:
    """``"2026-12-24..2026-12-26"`` (inclusive) or ``"2026-12-31"``; ValueError otherwise."""
    match = _DATE_RANGE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(FREEZE_EXPECTED)
    try:
        first = date.fromisoformat(match[1])
        last = date.fromisoformat(match[2]) if match[2] else first
    except ValueError:
        raise ValueError(FREEZE_EXPECTED) from None
    if last < first:
        raise ValueError(f"{FREEZE_EXPECTED}, its end not before its start")
    return first, last


def parse_zone(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("an IANA time zone name such as Europe/Amsterdam or UTC")
    try:
        ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("an IANA time zone name such as Europe/Amsterdam or UTC") from None
    return text.strip()


def parse_window(timezone_name: object, weekly: object = (), freeze: object = ()) -> Window:
    """A Window from its three settings (ValueError for the first bad one; config.py says where)."""
    return Window(parse_zone(timezone_name), tuple(parse_rule(r) for r in weekly),  # type: ignore[union-attr]
                  tuple(parse_freeze(f) for f in freeze))  # type: ignore[union-attr]
