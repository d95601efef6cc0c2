"""A clock moved by hand, for the state store and the CLI (shared by the tests of the release
policies, deploy windows and nightly runs)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from lrelease import statedb


class Clock:
    """Returns ``now`` until moved: ``tick(minutes=31)``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def injected(monkeypatch: pytest.MonkeyPatch, start: datetime) -> Clock:
    """A clock that every state store the process opens reads (StateStore's default clock looks
    ``statedb.utc_now`` up on each call), so CLI commands run in-process see it too."""
    clock = Clock(start)
    monkeypatch.setattr(statedb, "utc_now", clock)
    return clock
