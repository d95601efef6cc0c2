"""Local state in SQLite: roll-outs, per-host transitions, gate outcomes, and the lock.

One database per project (default ``.lrelease/lrelease.db``), WAL mode so ``history`` can
read while a roll-out writes. Every write is its own ``BEGIN IMMEDIATE`` transaction, so two
lrelease processes never interleave half-done changes. The schema version lives in ``meta``;
a database from a newer lrelease is refused rather than misread.

What is stored: environment and build names, who ran what and why, host names, phases,
timestamps (ISO 8601 UTC) and the JSON the caller passes as plan/detail/evidence. No secret
is ever stored: callers pass none, and as a second line of defence any JSON key that looks
like a secret (``token``, ``api_key``, ``password``...) has its value replaced by
``"<redacted>"`` before it is written.

The lock (one roll-out at a time per environment) is a row holding the roll-out id, pid,
host name, process start time and a heartbeat. It is taken over when its holder is dead on
this host (pid gone, a zombie, or a new process under the same pid) or when its heartbeat
is older than the TTL (any host), so a SIGKILLed run cannot leave it stuck.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lrelease import statedb
from lrelease.proclife import process_alive, process_start
from lrelease.schema import looks_secret
from lrelease.statedb import ACTIONS, PHASES, STATUSES, StateError, iso, utc_now
from lrelease.statelock import LockHandle, LockHeld, LockLost, LockRow

__all__ = [
    "ACTIONS", "PHASES", "STATUSES", "GateOutcome", "HostEvent", "LockHandle", "LockHeld", "LockLost",
    "LockRow", "Rollout", "StateError", "StateStore", "iso", "new_rollout_id", "redact", "utc_now",
]

DEFAULT_LOCK_TTL = 120.0
REDACTED = "<redacted>"


def new_rollout_id() -> str:
    """A short random id (12 hex digits of a uuid4), shown to users and put in host ledgers."""
    return uuid.uuid4().hex[:12]


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced, at any depth."""
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and looks_secret(k) else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(redact(value if value is not None else {}), sort_keys=True, default=str)


@dataclass(frozen=True)
class Rollout:
    id: str
    env: str
    build: str
    previous_build: str | None
    action: str
    status: str
    actor: str
    reason: str
    started_at: str
    finished_at: str | None
    exit_code: int | None
    plan: dict
    resumes: str | None  # the roll-out this one resumes
    pid: int  # the process that ran it
    pid_start: str
    hostname: str

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class HostEvent:
    rollout_id: str
    host: str
    phase: str
    at: str
    detail: dict


@dataclass(frozen=True)
class GateOutcome:
    rollout_id: str
    wave: int
    host: str
    verdict: str
    evidence: dict
    at: str


def _rollout(row: sqlite3.Row) -> Rollout:
    data = dict(row)
    data["plan"] = json.loads(data["plan"])
    return Rollout(**data)


class StateStore:
    """The project's state database. ``clock`` and ``hostname`` are injectable for tests."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] = utc_now,
                 hostname: str | None = None) -> None:
        self.path = Path(path)
        self.clock = clock
        self.hostname = hostname or socket.gethostname()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self.connect()
        statedb.migrate(self._db, self.path)

    # -- plumbing ------------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """A new connection to this database (one per thread)."""
        return statedb.connect(self.path)

    def _write(self, db: sqlite3.Connection | None = None) -> AbstractContextManager[sqlite3.Connection]:
        return statedb.write(db or self._db)

    def schema_version(self) -> int:
        return statedb.schema_version(self._db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> str:
        return iso(self.clock())

    # -- roll-outs -----------------------------------------------------------------------
    def start_rollout(self, env: str, build: str, action: str, actor: str, *, reason: str = "",
                      previous_build: str | None = None, plan: dict | None = None,
                      rollout_id: str | None = None, resumes: str | None = None,
                      status: str = "running") -> Rollout:
        """Record a roll-out as begun by this process. Take the lock first (with the same
        id, from :func:`new_rollout_id`), so a running roll-out always has a holder."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        if status not in ("running", "refused"):
            raise ValueError("a roll-out starts as 'running' (or is recorded as 'refused')")
        rid = rollout_id or new_rollout_id()
        with self._write() as db:
            db.execute(
                "INSERT INTO rollouts (id, env, build, previous_build, action, status, actor, reason,"
                " started_at, plan, resumes, pid, pid_start, hostname) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rid, env, build, previous_build, action, status, actor, reason, self.now(),
                 _dumps(plan), resumes, os.getpid(), process_start(os.getpid()), self.hostname))
        return self.rollout(rid)

    def finish_rollout(self, rollout_id: str, status: str, exit_code: int) -> Rollout:
        if status not in STATUSES or status == "running":
            raise ValueError(f"status must be one of {STATUSES[1:]}, got {status!r}")
        with self._write() as db:
            cur = db.execute("UPDATE rollouts SET status = ?, exit_code = ?, finished_at = ? WHERE id = ?",
                             (status, int(exit_code), self.now(), rollout_id))
            if cur.rowcount == 0:
                raise StateError(f"no roll-out {rollout_id!r} in {self.path}")
        return self.rollout(rollout_id)

    def rollout(self, rollout_id: str) -> Rollout:
        row = self._db.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        if row is None:
            raise StateError(f"no roll-out {rollout_id!r} in {self.path}")
        return _rollout(row)

    def find_rollout(self, prefix: str, env: str | None = None) -> Rollout:
        """The one roll-out whose id is ``prefix`` or starts with it (of ``env``, if given),
        like git's abbreviated commit ids, so a human can type the first few characters shown
        by ``history``. No match, or more than one, is a StateError naming the prefix."""
        prefix = prefix.strip()
        if not prefix:
            raise StateError("a roll-out id is needed (see `lrelease history`)")
        where, args = ("AND env = ?", (env,)) if env else ("", ())
        # substr, not LIKE: LIKE is case-insensitive and treats _ and % as wildcards.
        rows = self._db.execute(f"SELECT * FROM rollouts WHERE substr(id, 1, ?) = ? {where}"
                                " ORDER BY started_at DESC, rowid DESC", (len(prefix), prefix, *args)).fetchall()
        exact = [r for r in rows if r["id"] == prefix]
        if exact or len(rows) == 1:
            return _rollout((exact or rows)[0])
        scope = f" of environment {env!r}" if env else ""
        if not rows:
            raise StateError(f"no roll-out {prefix!r}{scope} in {self.path} (see `lrelease history`)")
        shown = ", ".join(r["id"] for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        raise StateError(f"roll-out id {prefix!r}{scope} is ambiguous: {len(rows)} match ({shown});"
                         " give more characters")

    def history(self, env: str | None = None, limit: int = 20) -> list[Rollout]:
        """Roll-outs, newest first."""
        where, args = ("WHERE env = ?", [env]) if env else ("", [])
        rows = self._db.execute(f"SELECT * FROM rollouts {where} ORDER BY started_at DESC, rowid DESC LIMIT ?",
                                (*args, int(limit))).fetchall()
        return [_rollout(r) for r in rows]

    def last_rollout(self, env: str, status: str | None = None) -> Rollout | None:
        """The newest roll-out of ``env`` (with that status, if given)."""
        sql = "SELECT * FROM rollouts WHERE env = ?" + (" AND status = ?" if status else "")
        args = (env, status) if status else (env,)
        row = self._db.execute(sql + " ORDER BY started_at DESC, rowid DESC LIMIT 1", args).fetchone()
        return _rollout(row) if row else None

    def interrupted(self, env: str | None = None) -> list[Rollout]:
        """Roll-outs still marked running whose process is gone (killed), newest first."""
        where, args = ("AND env = ?", (env,)) if env else ("", ())
        rows = self._db.execute(f"SELECT * FROM rollouts WHERE status = 'running' {where}"
                                " ORDER BY started_at DESC, rowid DESC", args).fetchall()
        return [r for r in map(_rollout, rows) if not self._running_alive(r)]

    def resumable(self, env: str) -> Rollout | None:
        """The roll-out ``resume`` should finish: the newest non-refused roll-out of ``env``,
        if it is a deploy/resume that was interrupted, halted, or killed while running."""
        row = self._db.execute(
            "SELECT * FROM rollouts WHERE env = ? AND status != 'refused'"
            " ORDER BY started_at DESC, rowid DESC LIMIT 1", (env,)).fetchone()
        if row is None:
            return None
        last = _rollout(row)
        if last.action == "rollback":
            return None
        if last.status in ("interrupted", "halted"):
            return last
        if last.status == "running" and not self._running_alive(last):
            return last
        return None

    def _running_alive(self, rollout: Rollout) -> bool:
        """A running roll-out is alive while it holds a live lock, or, before taking one,
        while its process runs."""
        lock = self._lock_row(rollout.env)
        if lock is not None and lock.rollout_id == rollout.id:
            return not self._lock_dead(lock)
        return rollout.hostname == self.hostname and self._same_process(rollout.pid, rollout.pid_start)

    # -- hosts and gates -----------------------------------------------------------------
    def record_host(self, rollout_id: str, host: str, phase: str, detail: dict | None = None) -> HostEvent:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        at = self.now()
        with self._write() as db:
            db.execute("INSERT INTO host_events (rollout_id, host, phase, at, detail) VALUES (?,?,?,?,?)",
                       (rollout_id, host, phase, at, _dumps(detail)))
        return HostEvent(rollout_id, host, phase, at, redact(detail or {}))

    def host_events(self, rollout_id: str) -> list[HostEvent]:
        rows = self._db.execute("SELECT rollout_id, host, phase, at, detail FROM host_events"
                                " WHERE rollout_id = ? ORDER BY seq", (rollout_id,)).fetchall()
        return [HostEvent(r["rollout_id"], r["host"], r["phase"], r["at"], json.loads(r["detail"])) for r in rows]

    def host_phases(self, rollout_id: str) -> dict[str, str]:
        """Each host's latest phase in the roll-out, hosts in the order first seen."""
        phases: dict[str, str] = {}
        for event in self.host_events(rollout_id):
            phases[event.host] = event.phase
        return phases

    def hosts_in_phase(self, rollout_id: str, phase: str | Iterable[str], *, latest: bool = True) -> list[str]:
        """Hosts whose latest phase (``latest=False``: any recorded phase) is ``phase`` (or
        one of several), in the order first seen. For resume, the hosts already on the
        target build are ``hosts_in_phase(rid, ("switched", "gate_passed"))``."""
        wanted = {phase} if isinstance(phase, str) else set(phase)
        if latest:
            return [h for h, p in self.host_phases(rollout_id).items() if p in wanted]
        hosts = [e.host for e in self.host_events(rollout_id) if e.phase in wanted]
        return list(dict.fromkeys(hosts))

    def record_gate(self, rollout_id: str, wave: int, host: str, verdict: str,
                    evidence: dict | None = None) -> GateOutcome:
        at = self.now()
        with self._write() as db:
            db.execute("INSERT INTO gates (rollout_id, wave, host, verdict, evidence, at) VALUES (?,?,?,?,?,?)",
                       (rollout_id, int(wave), host, verdict, _dumps(evidence), at))
        return GateOutcome(rollout_id, int(wave), host, verdict, redact(evidence or {}), at)

    def gates(self, rollout_id: str) -> list[GateOutcome]:
        rows = self._db.execute("SELECT * FROM gates WHERE rollout_id = ? ORDER BY seq", (rollout_id,)).fetchall()
        return [GateOutcome(r["rollout_id"], r["wave"], r["host"], r["verdict"], json.loads(r["evidence"]), r["at"])
                for r in rows]

    # -- the lock ------------------------------------------------------------------------
    @contextmanager
    def acquire_lock(self, env: str, rollout_id: str, *, ttl: float = DEFAULT_LOCK_TTL,
                     heartbeat_every: float | None = None) -> Iterator[LockHandle]:
        """Hold ``env``'s lock for the ``with`` block; released on any exit, Ctrl-C included.

        Raises LockHeld (exit 4) when a live roll-out holds it. A background thread beats the
        heartbeat every ``heartbeat_every`` seconds (default ttl/4; 0 turns it off, then call
        ``handle.heartbeat()`` yourself more often than ``ttl``).
        """
        handle = self.take_lock(env, rollout_id, ttl=ttl)
        every = ttl / 4 if heartbeat_every is None else heartbeat_every
        try:
            if every > 0:
                handle.start_beating(every)
            yield handle
        finally:  # finally, not except: a KeyboardInterrupt or SystemExit must release it too
            handle.release()

    def take_lock(self, env: str, rollout_id: str, *, ttl: float = DEFAULT_LOCK_TTL) -> LockHandle:
        """Take ``env``'s lock without a ``with`` block; call ``handle.release()`` yourself."""
        if ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        now = self.now()
        me = LockRow(env, rollout_id, os.getpid(), process_start(os.getpid()), self.hostname, now, now, float(ttl))
        with self._write() as db:
            held = self._lock_row(env, db)
            if held is not None and not self._lock_dead(held):
                raise LockHeld(held)
            db.execute("INSERT OR REPLACE INTO locks (env, rollout_id, pid, pid_start, hostname, acquired_at,"
                       " heartbeat_at, ttl) VALUES (?,?,?,?,?,?,?,?)",
                       (me.env, me.rollout_id, me.pid, me.pid_start, me.hostname, me.acquired_at,
                        me.heartbeat_at, me.ttl))
        return LockHandle(self, me, taken_over=held)

    def lock_holder(self, env: str) -> LockRow | None:
        """The current lock row of ``env`` (dead or alive), or None."""
        return self._lock_row(env)

    def heartbeat(self, env: str, rollout_id: str, db: sqlite3.Connection | None = None) -> None:
        """Refresh the heartbeat; raises LockLost if the lock is no longer this roll-out's."""
        with self._write(db) as conn:
            cur = conn.execute("UPDATE locks SET heartbeat_at = ? WHERE env = ? AND rollout_id = ? AND pid = ?",
                               (self.now(), env, rollout_id, os.getpid()))
            if cur.rowcount == 0:
                raise LockLost(env, rollout_id)

    def release_lock(self, env: str, rollout_id: str, db: sqlite3.Connection | None = None) -> None:
        """Drop the lock if this process still holds it for ``rollout_id``; else do nothing."""
        with self._write(db) as conn:
            conn.execute("DELETE FROM locks WHERE env = ? AND rollout_id = ? AND pid = ?",
                         (env, rollout_id, os.getpid()))

    def _lock_row(self, env: str, db: sqlite3.Connection | None = None) -> LockRow | None:
        row = (db or self._db).execute("SELECT * FROM locks WHERE env = ?", (env,)).fetchone()
        return LockRow(**dict(row)) if row else None

    def _lock_dead(self, lock: LockRow) -> bool:
        """Dead when its heartbeat is older than the holder's TTL, or, on this host, when its
        process is gone (or the pid now belongs to a process started at another time)."""
        age = (self.clock() - datetime.fromisoformat(lock.heartbeat_at)).total_seconds()
        if age > lock.ttl:
            return True
        return lock.hostname == self.hostname and not self._same_process(lock.pid, lock.pid_start)

    @staticmethod
    def _same_process(pid: int, pid_start: str) -> bool:
        if not process_alive(pid):
            return False
        return not pid_start or process_start(pid) in ("", pid_start)
