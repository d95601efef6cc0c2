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
host name, process start time, a heartbeat and a fencing token. It is taken over only when
its holder is provably gone: on this host, when its process is gone (pid gone, a zombie, or a
new process under the same pid), however old its heartbeat (a process stopped with Ctrl-Z is
alive); on another host, when its heartbeat is older than the TTL. A SIGKILLed run cannot
leave it stuck. Every grant carries a token that only grows (per environment, kept in
``meta``); every write a holder makes for its roll-out checks that the lock still carries its
token, so a holder that was paused past its TTL and lost the lock cannot write over the new
holder's state: it gets LockLost (exit 4) and stops. A takeover is recorded in the new
roll-out's row (``took_over``: the old holder's roll-out, pid, host and heartbeat).
"""

from __future__ import annotations

import json
import math
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

from lrelease import secrets, statedb
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
    """A copy of ``value`` with the values of secret-looking keys replaced, at any depth, and
    every secret registered in :mod:`lrelease.secrets` masked wherever it appears in a string."""
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and looks_secret(k) else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return secrets.scrub(value) if isinstance(value, str) else value  # and registered secrets by value


def _dumps(value: Any) -> str:
    return secrets.scrub(json.dumps(redact(value if value is not None else {}), sort_keys=True, default=str))


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
    undoes: str | None = None  # a rollback: the roll-out (the first of its chain) it undoes
    lock_token: int | None = None  # the fencing token of the lock it ran under
    took_over: dict | None = None  # the lock holder it took the lock over from
    rollback_started_at: str | None = None  # a deploy: when its automatic rollback began

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
    data["took_over"] = json.loads(data["took_over"]) if data.get("took_over") else None
    return Rollout(**data)


# A deploy or resume whose newest record has one of these statuses may still have hosts on its
# build: `rollback` (without --to) undoes it. `rolled_back` and `refused` changed nothing that stays.
UNDOABLE = ("succeeded", "halted", "interrupted", "rollback_failed", "crashed", "lock_lost", "running")


class StateStore:
    """The project's state database. ``clock`` and ``hostname`` are injectable for tests."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] = utc_now,
                 hostname: str | None = None) -> None:
        self.path = Path(path)
        self.clock = clock
        self.hostname = hostname or socket.gethostname()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"{self.path.parent}: cannot create the state directory ({exc.strerror}); "
                             "set state_dir in lrelease.yml to a directory lrelease may write") from None
        self._fences: dict[str, tuple[str, int]] = {}  # roll-out id -> (env, token) of the locks taken here
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
                      rollout_id: str | None = None, resumes: str | None = None, undoes: str | None = None,
                      lock: LockHandle | None = None, status: str = "running") -> Rollout:
        """Record a roll-out as begun by this process. Take the lock first (with the same
        id, from :func:`new_rollout_id`) and pass it, so a running roll-out always has a holder
        and its row carries the lock's token and any takeover."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        if status not in ("running", "refused"):
            raise ValueError("a roll-out starts as 'running' (or is recorded as 'refused')")
        rid = rollout_id or new_rollout_id()
        took_over = None
        if lock is not None and lock.taken_over is not None:
            old = lock.taken_over
            took_over = json.dumps({"rollout_id": old.rollout_id, "pid": old.pid, "hostname": old.hostname,
                                    "acquired_at": old.acquired_at, "heartbeat_at": old.heartbeat_at,
                                    "token": old.token})
        with self._fenced(rid) as db:
            db.execute(
                "INSERT INTO rollouts (id, env, build, previous_build, action, status, actor, reason,"
                " started_at, plan, resumes, pid, pid_start, hostname, undoes, lock_token, took_over)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rid, env, build, previous_build, action, status, secrets.scrub(actor), secrets.scrub(reason), self.now(),
                 _dumps(plan), resumes, os.getpid(), process_start(os.getpid()), self.hostname, undoes,
                 lock.row.token if lock is not None else None, took_over))
        return self.rollout(rid)

    def finish_rollout(self, rollout_id: str, status: str, exit_code: int) -> Rollout:
        """Record how a roll-out ended. Fenced: a holder that lost its lock gets LockLost; it may
        only record ``lock_lost`` on its own row, and only while nobody else has ended it."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"status must be one of {STATUSES[1:]}, got {status!r}")
        if status == "lock_lost":
            with self._write() as db:
                db.execute("UPDATE rollouts SET status = ?, exit_code = ?, finished_at = ? WHERE id = ?"
                           " AND status = 'running'", (status, int(exit_code), self.now(), rollout_id))
            return self.rollout(rollout_id)
        with self._fenced(rollout_id) as db:
            cur = db.execute("UPDATE rollouts SET status = ?, exit_code = ?, finished_at = ? WHERE id = ?",
                             (status, int(exit_code), self.now(), rollout_id))
            if cur.rowcount == 0:
                raise StateError(f"no roll-out {rollout_id!r} in {self.path}")
        return self.rollout(rollout_id)

    def start_auto_rollback(self, rollout_id: str) -> None:
        """Record that a deploy began rolling back by itself: `resume` then finishes the rollback
        instead of deploying the build again."""
        with self._fenced(rollout_id) as db:
            db.execute("UPDATE rollouts SET rollback_started_at = ? WHERE id = ?", (self.now(), rollout_id))

    def chain(self, rollout_id: str) -> list[Rollout]:
        """A roll-out and the resumes that continued it (each resumes the one before), oldest first."""
        chain = [self.rollout(rollout_id)]
        while True:
            row = self._db.execute("SELECT * FROM rollouts WHERE resumes = ? ORDER BY started_at, rowid LIMIT 1",
                                   (chain[-1].id,)).fetchone()
            if row is None:
                return chain
            chain.append(_rollout(row))

    def chain_root(self, rollout: Rollout) -> Rollout:
        """The first roll-out of the chain ``rollout`` belongs to (itself unless it is a resume)."""
        while rollout.resumes:
            rollout = self.rollout(rollout.resumes)
        return rollout

    def to_undo(self, env: str) -> Rollout | None:
        """What ``rollback`` (without --to) undoes: the newest deploy chain of ``env`` that may
        still have hosts on its build, as its first roll-out (the root of its resumes). A later
        succeeded rollback that undid a chain passes over it, so a second rollback goes one build
        further back. Returns the newest rollback row instead when it went to an explicit build
        (--to): there is nothing recorded to undo past it. None when nothing is left to undo."""
        undone: set[str] = set()
        rows = self._db.execute("SELECT * FROM rollouts WHERE env = ? AND status != 'refused'"
                                " ORDER BY started_at DESC, rowid DESC", (env,)).fetchall()
        for r in map(_rollout, rows):
            if r.action == "rollback":
                if r.status == "succeeded":
                    if not r.undoes:
                        return r
                    undone.add(r.undoes)
                continue
            root = self.chain_root(r)
            if root.id in undone:
                continue
            undone.add(root.id)  # older rows of this chain: its newest row (this one) decides
            if r.status in UNDOABLE:
                return root
        return None

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
        if last.status in ("interrupted", "halted", "crashed", "lock_lost"):
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
        with self._fenced(rollout_id) as db:
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
        with self._fenced(rollout_id) as db:
            db.execute("INSERT INTO gates (rollout_id, wave, host, verdict, evidence, at) VALUES (?,?,?,?,?,?)",
                       (rollout_id, int(wave), host, verdict, _dumps(evidence), at))
        return GateOutcome(rollout_id, int(wave), host, verdict, redact(evidence or {}), at)

    def gates(self, rollout_id: str) -> list[GateOutcome]:
        rows = self._db.execute("SELECT * FROM gates WHERE rollout_id = ? ORDER BY seq", (rollout_id,)).fetchall()
        return [GateOutcome(r["rollout_id"], r["wave"], r["host"], r["verdict"], json.loads(r["evidence"]), r["at"])
                for r in rows]

    # -- the lock ------------------------------------------------------------------------
    @contextmanager
    def acquire_lock(self, env: str, rollout_id: str, *, ttl: float | None = None,
                     heartbeat_every: float | None = None) -> Iterator[LockHandle]:
        """Hold ``env``'s lock for the ``with`` block; released on any exit, Ctrl-C included.

        Raises LockHeld (exit 4) when a live roll-out holds it. A background thread beats the
        heartbeat every ``heartbeat_every`` seconds (default ttl/4; 0 turns it off, then call
        ``handle.heartbeat()`` yourself more often than ``ttl``). ``ttl`` defaults to
        $LRELEASE_LOCK_TTL or 120 s.
        """
        handle = self.take_lock(env, rollout_id, ttl=ttl)
        every = handle.row.ttl / 4 if heartbeat_every is None else heartbeat_every
        try:
            if every > 0:
                handle.start_beating(every)
            yield handle
        finally:  # finally, not except: a KeyboardInterrupt or SystemExit must release it too
            handle.release()

    def take_lock(self, env: str, rollout_id: str, *, ttl: float | None = None) -> LockHandle:
        """Take ``env``'s lock without a ``with`` block; call ``handle.release()`` yourself."""
        ttl = lock_ttl() if ttl is None else ttl
        if not ttl > 0:
            raise ValueError("ttl must be > 0 seconds")
        now = self.now()
        with self._write() as db:
            held = self._lock_row(env, db)
            if held is not None and not self._lock_dead(held):
                raise LockHeld(held)
            key = f"fence:{env}"
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            token = int(row["value"]) + 1 if row else 1
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(token)))
            me = LockRow(env, rollout_id, os.getpid(), process_start(os.getpid()), self.hostname, now, now,
                         float(ttl), token)
            db.execute("INSERT OR REPLACE INTO locks (env, rollout_id, pid, pid_start, hostname, acquired_at,"
                       " heartbeat_at, ttl, token) VALUES (?,?,?,?,?,?,?,?,?)",
                       (me.env, me.rollout_id, me.pid, me.pid_start, me.hostname, me.acquired_at,
                        me.heartbeat_at, me.ttl, me.token))
        self._fences[rollout_id] = (env, token)
        return LockHandle(self, me, taken_over=held)

    def lock_holder(self, env: str) -> LockRow | None:
        """The current lock row of ``env`` (dead or alive), or None."""
        return self._lock_row(env)

    def heartbeat(self, env: str, rollout_id: str, db: sqlite3.Connection | None = None) -> None:
        """Refresh the heartbeat; raises LockLost (naming the new holder) if the lock is no
        longer this roll-out's."""
        token = self._fences.get(rollout_id, (env, None))[1]
        with self._write(db) as conn:
            cur = conn.execute("UPDATE locks SET heartbeat_at = ? WHERE env = ? AND rollout_id = ? AND token IS ?",
                               (self.now(), env, rollout_id, token))
            if cur.rowcount == 0:
                raise self._lost(env, rollout_id, conn)

    def release_lock(self, env: str, rollout_id: str, db: sqlite3.Connection | None = None) -> None:
        """Drop the lock if this roll-out still holds it; else do nothing."""
        token = self._fences.pop(rollout_id, (env, None))[1]
        with self._write(db) as conn:
            conn.execute("DELETE FROM locks WHERE env = ? AND rollout_id = ? AND token IS ?", (env, rollout_id, token))

    @contextmanager
    def _fenced(self, rollout_id: str) -> Iterator[sqlite3.Connection]:
        """A write for ``rollout_id``: if this process took a lock for it, the write happens only
        while the lock still carries that token (checked in the same transaction)."""
        with self._write() as db:
            fence = self._fences.get(rollout_id)
            if fence is not None:
                env, token = fence
                held = self._lock_row(env, db)
                if held is None or held.token != token:
                    raise self._lost(env, rollout_id, db)
            yield db

    def _lost(self, env: str, rollout_id: str, db: sqlite3.Connection) -> LockLost:
        """LockLost naming who holds the lock now, or who took it over if it was since released."""
        held = self._lock_row(env, db)
        if held is not None:
            return LockLost(env, rollout_id, held)
        row = db.execute("SELECT * FROM rollouts WHERE env = ? AND json_extract(took_over, '$.rollout_id') = ?"
                         " ORDER BY started_at DESC LIMIT 1", (env, rollout_id)).fetchone()
        return LockLost(env, rollout_id, taken_by=_rollout(row) if row else None)

    def _lock_row(self, env: str, db: sqlite3.Connection | None = None) -> LockRow | None:
        row = (db or self._db).execute("SELECT * FROM locks WHERE env = ?", (env,)).fetchone()
        return LockRow(**dict(row)) if row else None

    def _lock_dead(self, lock: LockRow) -> bool:
        """Provably gone: on this host, when its process is gone (or the pid now belongs to a
        process started at another time), however old its heartbeat: a stopped process (Ctrl-Z,
        SIGSTOP) is alive and keeps its lock. On another host, when its heartbeat is older than
        the holder's TTL."""
        if lock.hostname == self.hostname:
            return not self._same_process(lock.pid, lock.pid_start)
        age = (self.clock() - datetime.fromisoformat(lock.heartbeat_at)).total_seconds()
        return age > lock.ttl

    @staticmethod
    def _same_process(pid: int, pid_start: str) -> bool:
        if not process_alive(pid):
            return False
        return not pid_start or process_start(pid) in ("", pid_start)

    # -- read-only views -----------------------------------------------------------------
    def hosts_with_build(self, env: str) -> set[str]:
        """Hosts that a roll-out of ``env`` left on a build: one passed its gate there, or was
        rolled back to an earlier build, or was switched and never judged (interrupted). A host
        whose only switch failed its gate without a rollback (a first install: its app stopped)
        has none. For ``plan``'s first-install marking: this database's view, not the hosts'."""
        rows = self._db.execute(
            "SELECT h.rollout_id, h.host, h.phase FROM host_events h JOIN rollouts r ON r.id = h.rollout_id"
            " WHERE r.env = ? ORDER BY h.seq", (env,)).fetchall()
        last: dict[tuple[str, str], str] = {}
        found = set()
        for rollout_id, host, phase in rows:
            if phase in ("gate_passed", "rolled_back"):
                found.add(host)
            last[(rollout_id, host)] = phase
        return found | {host for (_, host), phase in last.items() if phase == "switched"}

    def gate_history(self, env: str, limit: int = 50) -> list[tuple[int, float]]:
        """The APM gate's recent work in ``env``, newest first: per gate, the looks it took and
        the seconds it spent fetching and judging (its evidence's ``looks``, ``gate_seconds``).
        For ``plan``'s estimate; evidence of another shape is skipped."""
        rows = self._db.execute(
            "SELECT g.evidence FROM gates g JOIN rollouts r ON r.id = g.rollout_id WHERE r.env = ?"
            " ORDER BY g.seq DESC LIMIT ?", (env, int(limit))).fetchall()
        found = []
        for (text,) in rows:
            try:
                ev = json.loads(text)
            except ValueError:
                continue
            if not isinstance(ev, dict) or ev.get("gate") != "apm":
                continue
            looks, work = ev.get("looks"), ev.get("gate_seconds", 0.0)
            if type(looks) is int and type(work) in (int, float):
                found.append((looks, float(work)))
        return found

    def recent_runs(self, env: str, limit: int = 10) -> list[dict[str, Any]]:
        """The last ``limit`` succeeded deploys and resumes of ``env``, newest first, with what
        ``plan``'s estimate learns from them (``plan.Pace``): when each started and finished, when
        its last host was staged, and per wave the longest gate's ``elapsed`` seconds."""
        rows = self._db.execute(
            "SELECT id, started_at, finished_at FROM rollouts WHERE env = ? AND status = 'succeeded'"
            " AND action IN ('deploy', 'resume') AND finished_at IS NOT NULL"
            " ORDER BY started_at DESC, rowid DESC LIMIT ?", (env, int(limit))).fetchall()
        runs = []
        for rollout_id, started, finished in rows:
            staged = self._db.execute("SELECT MAX(at) FROM host_events WHERE rollout_id = ? AND phase = 'staged'",
                                      (rollout_id,)).fetchone()[0]
            waves: dict[int, float] = {}
            for wave, text in self._db.execute("SELECT wave, evidence FROM gates WHERE rollout_id = ?", (rollout_id,)):
                try:
                    elapsed = json.loads(text).get("elapsed")
                except (ValueError, AttributeError):
                    continue
                if type(elapsed) in (int, float):
                    waves[wave] = max(waves.get(wave, 0.0), float(elapsed))
            runs.append({"started_at": started, "finished_at": finished, "staged_at": staged, "gate_seconds": waves})
        return runs


def lock_check(db_path: str | Path, env: str, token: int) -> str:
    """``held`` while ``env``'s lock carries ``token``, else one line naming who holds it (for the
    playbooks' fencing check, lookup ``lrelease_lock``). Read-only; no migration."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30.0)
    try:
        row = db.execute("SELECT rollout_id, pid, hostname, token FROM locks WHERE env = ?", (env,)).fetchone()
    finally:
        db.close()
    if row is not None and row[3] == token:
        return "held"
    if row is None:
        return f"the lock of {env} was released"
    return f"the lock of {env} is held by roll-out {row[0]} (pid {row[1]} on {row[2]})"


def lock_ttl() -> float:
    """The lock's TTL: $LRELEASE_LOCK_TTL seconds (for hosts that pause long), default 120."""
    raw = os.environ.get("LRELEASE_LOCK_TTL", "")
    if not raw:
        return DEFAULT_LOCK_TTL
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and 1 <= value <= 86400):
        raise StateError(f"LRELEASE_LOCK_TTL: expected seconds between 1 and 86400, got {raw!r}")
    return value
