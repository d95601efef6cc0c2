"""The release policies' records in the state database: release captains and environment pauses
(what lrelease/policies.py decides from), mixed into :class:`~lrelease.state.StateStore`.

Each change is a row that is never rewritten except to end it: ``captain set`` adds a row (the
previous captain's row ends), ``captain clear`` ends it, ``pause`` adds a row, ``unpause`` ends
it. So the current captain (or pause) of an environment is its newest row not yet ended, and the
rows are the audit trail (who, when, why). A captaincy with an ``until`` in the past is no
captain: nothing needs to clear it. Times are ISO 8601 UTC, as everywhere in the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from lrelease import secrets
from lrelease.statedb import captains as captains_t, env_pauses as pauses_t, iso, rollouts as rollouts_t

if TYPE_CHECKING:
    from lrelease.state import Rollout


@dataclass(frozen=True)
class Captain:
    """An environment's release captain: ``name`` is compared with a roll-out's actor as recorded."""

    env: str
    name: str
    until: str | None  # ISO 8601 UTC; None: until cleared
    reason: str
    set_by: str
    set_at: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class EnvPause:
    """An environment paused by a human: no new roll-out and no automation starts there."""

    env: str
    reason: str
    paused_by: str
    paused_at: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PolicyRecords:
    """Captains and environment pauses; a mixin of StateStore (its connection, writes and clock)."""

    # -- release captains ---------------------------------------------------------------------
    def set_captain(self, env: str, name: str, *, set_by: str, until: datetime | None = None,
                    reason: str = "") -> Captain:
        """Make ``name`` the release captain of ``env`` (until ``until``, or until cleared); the
        captain before, if any, is ended by this change. ``until`` must lie in the future."""
        now = self.now()
        if until is not None and iso(until) <= now:
            raise ValueError(f"until must lie in the future, got {iso(until)} (now {now})")
        with self._write() as db:
            self._end_captain(db, env, set_by, now)
            db.execute(sa.insert(captains_t).values(
                env=env, name=secrets.scrub(name), until=iso(until) if until is not None else None,
                reason=secrets.scrub(reason), set_by=secrets.scrub(set_by), set_at=now))
            return self._current_captain(db, env)

    def clear_captain(self, env: str, *, cleared_by: str) -> Captain | None:
        """End ``env``'s captaincy; returns the captain it ended (None: there was none)."""
        with self._write() as db:
            current = self._current_captain(db, env)
            self._end_captain(db, env, cleared_by, self.now())
        return current

    def captain(self, env: str) -> Captain | None:
        """``env``'s release captain now, or None (none set, cleared, or past its ``until``)."""
        return self._current_captain(self._db, env)

    def captains(self) -> list[Captain]:
        """Every environment's current captain, by environment name."""
        envs = sorted({r[0] for r in self._db.execute(sa.select(captains_t.c.env).distinct())})
        return [c for c in (self.captain(env) for env in envs) if c is not None]

    def _current_captain(self, db: Any, env: str) -> Captain | None:
        c = captains_t.c
        row = db.execute(sa.select(c.env, c.name, c.until, c.reason, c.set_by, c.set_at)
                         .where(c.env == env, c.cleared_at.is_(None)).order_by(c.seq.desc()).limit(1)).fetchone()
        if row is None or (row.until is not None and row.until <= self.now()):
            return None
        return Captain(*row)

    def _end_captain(self, db: Any, env: str, by: str, at: str) -> None:
        c = captains_t.c
        db.execute(sa.update(captains_t).where(c.env == env, c.cleared_at.is_(None))
                   .values(cleared_by=secrets.scrub(by), cleared_at=at))

    # -- environment pauses -----------------------------------------------------------------
    def pause_env(self, env: str, *, paused_by: str, reason: str) -> EnvPause:
        """Pause ``env`` (no new roll-out, no automation); pausing a paused environment keeps
        the first pause (its who, when and why) and returns it."""
        with self._write() as db:
            current = self._current_pause(db, env)
            if current is not None:
                return current
            db.execute(sa.insert(pauses_t).values(env=env, reason=secrets.scrub(reason),
                                                  paused_by=secrets.scrub(paused_by), paused_at=self.now()))
            return self._current_pause(db, env)

    def unpause_env(self, env: str, *, unpaused_by: str) -> EnvPause | None:
        """Lift ``env``'s pause; returns the pause it lifted (None: it was not paused)."""
        with self._write() as db:
            current = self._current_pause(db, env)
            p = pauses_t.c
            db.execute(sa.update(pauses_t).where(p.env == env, p.unpaused_at.is_(None))
                       .values(unpaused_by=secrets.scrub(unpaused_by), unpaused_at=self.now()))
        return current

    def env_pause(self, env: str) -> EnvPause | None:
        """``env``'s pause now, or None."""
        return self._current_pause(self._db, env)

    def env_pauses(self) -> list[EnvPause]:
        """Every paused environment's pause, by environment name."""
        envs = sorted({r[0] for r in self._db.execute(sa.select(pauses_t.c.env).distinct())})
        return [p for p in (self.env_pause(env) for env in envs) if p is not None]

    @staticmethod
    def _current_pause(db: Any, env: str) -> EnvPause | None:
        p = pauses_t.c
        row = db.execute(sa.select(p.env, p.reason, p.paused_by, p.paused_at)
                         .where(p.env == env, p.unpaused_at.is_(None)).order_by(p.seq.desc()).limit(1)).fetchone()
        return EnvPause(*row) if row is not None else None

    # -- what Next's proof reads --------------------------------------------------------------
    def rollouts_from(self, env: str, build: str) -> list[Rollout]:
        """The roll-outs of ``env``, oldest first, from its first roll-out of ``build`` on
        (empty when ``build`` never went there): a build's life in an environment."""
        from lrelease.state import _rollout, _rollouts  # state.py imports this module

        r = rollouts_t.c
        first = self._db.execute(sa.select(sa.func.min(r.started_at)).where(r.env == env, r.build == build)).scalar()
        if first is None:
            return []
        return list(reversed([_rollout(row) for row in self._db.execute(_rollouts(r.env == env, r.started_at >= first))]))
