"""The state: roll-outs, per-host transitions, gate outcomes, and the lock.

One database per project: a SQLite file (default ``.lrelease/lrelease.db``, WAL mode so
``history`` can read while a roll-out writes), or a PostgreSQL database shared by the CLI, AWX
and cron (``LRELEASE_STATE_URL``; statedb.py). Every write is its own serialised transaction,
so two lrelease processes never interleave half-done changes. The schema is migrated on open;
a database from a newer lrelease is refused rather than misread.

What is stored: environment and build names, who ran what and why, host names, phases,
timestamps (ISO 8601 UTC) and the JSON the caller passes as plan/detail/evidence. No secret
is ever stored: callers pass none, and as a second line of defence any JSON key that looks
like a secret (``token``, ``api_key``, ``password``...) has its value replaced by
``"<redacted>"`` before it is written.

The release policies' records live here too (lrelease/statepolicy.py, mixed into StateStore):
each environment's release captain and pause, as rows that are only ever ended (the audit
trail), and on each roll-out the ``policy`` it went ahead with or was refused by
(lrelease/policies.py decides).

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
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from lrelease import secrets, statedb
from lrelease.proclife import process_alive, process_start
from lrelease.schema import looks_secret
from lrelease.statedb import ACTIONS, PHASES, ROLLOUT_COLUMNS, STATUSES, StateError, gates as gates_t, \
    host_events as host_events_t, iso, kv, locks as locks_t, rollouts as rollouts_t, utc_now
from lrelease.statebuilds import BuildRecord, BuildRecords
from lrelease.statepolicy import Captain, EnvPause, PolicyRecords
from lrelease.statelock import LockHandle, LockHeld, LockLost, LockRow

__all__ = [
    "ACTIONS", "PHASES", "STATUSES", "BuildRecord", "Captain", "EnvPause", "GateOutcome", "HostEvent", "LockHandle",
    "LockHeld", "LockLost", "LockRow", "Rollout", "StateError", "StateStore", "iso", "new_rollout_id", "redact", "utc_now",
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
    policy: dict | None = None  # the refusal, or the overrides it went ahead with (lrelease/policies.py)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def via(self) -> dict:
        """How it was run when not by the wrapper (plan ``via``: ``{kind, job_id, ...}``, written by
        the playbooks' policy step, lrelease/policystep.py); ``{}`` for a wrapper run."""
        via = self.plan.get("via") if isinstance(self.plan, dict) else None
        return via if isinstance(via, dict) else {}

    @property
    def ledger_id(self) -> str:
        """The id the hosts' ledgers carry for this roll-out: its own id, or the
        ``lrelease_rollout_id`` a plain run was given when that id was already taken here."""
        return str(self.via.get("ledger_id") or self.id)


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


def _rollout(row: Row) -> Rollout:
    data = dict(row._mapping)
    data["plan"] = json.loads(data["plan"])
    data["took_over"] = json.loads(data["took_over"]) if data.get("took_over") else None
    data["policy"] = json.loads(data["policy"]) if data.get("policy") else None
    return Rollout(**data)


_NEWEST = (rollouts_t.c.started_at.desc(), rollouts_t.c.seq.desc())


def _rollouts(*where: Any) -> sa.Select:
    """Roll-outs matching ``where``, newest first."""
    return sa.select(*ROLLOUT_COLUMNS).where(*where).order_by(*_NEWEST)


# A deploy or resume whose newest record has one of these statuses may still have hosts on its
# build: `rollback` (without --to) undoes it. `rolled_back` and `refused` changed nothing that stays.
UNDOABLE = ("succeeded", "halted", "interrupted", "rollback_failed", "crashed", "lock_lost", "running", "paused",
            "awaiting_promotion")
# A deploy or resume that ended with one of these is continued by `resume` (awaiting_promotion: by `promote`).
RESUMABLE = ("interrupted", "halted", "crashed", "lock_lost", "paused", "awaiting_promotion")


class StateStore(PolicyRecords, BuildRecords):
    """The project's state database: a SQLite file's path, or a URL (``postgresql+psycopg://``;
    see :func:`project_state`). ``clock`` and ``hostname`` are injectable for tests."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] | None = None,
                 hostname: str | None = None) -> None:
        self.where = statedb.locate(path)
        self.path = self.where.path  # the SQLite file; None for a server
        self.clock = clock or (lambda: statedb.utc_now())  # looked up per call: tests may replace it
        self.hostname = hostname or socket.gethostname()
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"{self.path.parent}: cannot create the state directory ({exc.strerror}); "
                                 "set state_dir in lrelease.yml to a directory lrelease may write") from None
        self._fences: dict[str, tuple[str, int]] = {}  # roll-out id -> (env, token) of the locks taken here
        self._engine = statedb.engine(self.where)
        self._db = self.connect()
        try:
            statedb.migrate(self._db, self.where)
        except BaseException:
            self._db.close()
            raise

    # -- plumbing ------------------------------------------------------------------------
    def connect(self) -> Connection:
        """A new connection to this database (one per thread)."""
        return statedb.connect(self.where, self._engine)

    def _write(self, db: Connection | None = None) -> AbstractContextManager[Connection]:
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
                      lock: LockHandle | None = None, status: str = "running", pid: int | None = None,
                      policy: dict | None = None) -> Rollout:
        """Record a roll-out as begun by this process. Take the lock first (with the same
        id, from :func:`new_rollout_id`) and pass it, so a running roll-out always has a holder
        and its row carries the lock's token and any takeover. ``pid``: the process the roll-out
        lives in when it is not this one (the playbooks' policy step: ansible-playbook).
        ``policy``: what the release policies said (a refusal, or the overrides it went ahead
        with; lrelease/policies.py)."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        if status not in ("running", "refused"):
            raise ValueError("a roll-out starts as 'running' (or is recorded as 'refused')")
        rid = rollout_id or new_rollout_id()
        pid = pid or os.getpid()
        took_over = None
        if lock is not None and lock.taken_over is not None:
            old = lock.taken_over
            took_over = json.dumps({"rollout_id": old.rollout_id, "pid": old.pid, "hostname": old.hostname,
                                    "acquired_at": old.acquired_at, "heartbeat_at": old.heartbeat_at,
                                    "token": old.token})
        with self._fenced(rid) as db:
            db.execute(sa.insert(rollouts_t).values(
                id=rid, env=env, build=build, previous_build=previous_build, action=action, status=status,
                actor=secrets.scrub(actor), reason=secrets.scrub(reason), started_at=self.now(), plan=_dumps(plan),
                resumes=resumes, pid=pid, pid_start=process_start(pid), hostname=self.hostname,
                undoes=undoes, lock_token=lock.row.token if lock is not None else None, took_over=took_over,
                policy=_dumps(policy) if policy else None))
        return self.rollout(rid)

    def finish_rollout(self, rollout_id: str, status: str, exit_code: int) -> Rollout:
        """Record how a roll-out ended. Fenced: a holder that lost its lock gets LockLost; it may
        only record ``lock_lost`` on its own row, and only while nobody else has ended it."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"status must be one of {STATUSES[1:]}, got {status!r}")
        end = sa.update(rollouts_t).where(rollouts_t.c.id == rollout_id).values(
            status=status, exit_code=int(exit_code), finished_at=self.now())
        if status == "lock_lost":
            with self._write() as db:
                db.execute(end.where(rollouts_t.c.status == "running"))
            return self.rollout(rollout_id)
        with self._fenced(rollout_id) as db:
            if db.execute(end).rowcount == 0:
                raise StateError(f"no roll-out {rollout_id!r} in {self.where.shown}")
        return self.rollout(rollout_id)

    def annotate(self, rollout_id: str, **plan: Any) -> Rollout:
        """Merge keys into a roll-out's ``plan`` JSON (fenced like every write of a holder)."""
        with self._fenced(rollout_id) as db:
            row = db.execute(sa.select(rollouts_t.c.plan).where(rollouts_t.c.id == rollout_id)).fetchone()
            if row is None:
                raise StateError(f"no roll-out {rollout_id!r} in {self.where.shown}")
            db.execute(sa.update(rollouts_t).where(rollouts_t.c.id == rollout_id)
                       .values(plan=_dumps({**json.loads(row[0] or "{}"), **plan})))
        return self.rollout(rollout_id)

    def start_auto_rollback(self, rollout_id: str) -> None:
        """Record that a deploy began rolling back by itself: `resume` then finishes the rollback
        instead of deploying the build again."""
        with self._fenced(rollout_id) as db:
            db.execute(sa.update(rollouts_t).where(rollouts_t.c.id == rollout_id).values(rollback_started_at=self.now()))

    def chain(self, rollout_id: str) -> list[Rollout]:
        """A roll-out and the resumes that continued it (each resumes the one before), oldest first."""
        chain = [self.rollout(rollout_id)]
        while True:
            row = self._db.execute(sa.select(*ROLLOUT_COLUMNS).where(rollouts_t.c.resumes == chain[-1].id)
                                   .order_by(rollouts_t.c.started_at, rollouts_t.c.seq).limit(1)).fetchone()
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
        rows = self._db.execute(_rollouts(rollouts_t.c.env == env, rollouts_t.c.status != "refused")).fetchall()
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
        row = self._db.execute(_rollouts(rollouts_t.c.id == rollout_id)).fetchone()
        if row is None:
            raise StateError(f"no roll-out {rollout_id!r} in {self.where.shown}")
        return _rollout(row)

    def find_rollout(self, prefix: str, env: str | None = None) -> Rollout:
        """The one roll-out whose id is ``prefix`` or starts with it (of ``env``, if given),
        like git's abbreviated commit ids, so a human can type the first few characters shown
        by ``history``. No match, or more than one, is a StateError naming the prefix."""
        prefix = prefix.strip()
        if not prefix:
            raise StateError("a roll-out id is needed (see `lrelease history`)")
        # substr, not LIKE: LIKE is case-insensitive and treats _ and % as wildcards.
        where = [sa.func.substr(rollouts_t.c.id, 1, len(prefix)) == prefix]
        if env:
            where.append(rollouts_t.c.env == env)
        rows = self._db.execute(_rollouts(*where)).fetchall()
        exact = [r for r in rows if r.id == prefix]
        if exact or len(rows) == 1:
            return _rollout((exact or rows)[0])
        scope = f" of environment {env!r}" if env else ""
        if not rows:
            raise StateError(f"no roll-out {prefix!r}{scope} in {self.where.shown} (see `lrelease history`)")
        shown = ", ".join(r.id for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        raise StateError(f"roll-out id {prefix!r}{scope} is ambiguous: {len(rows)} match ({shown});"
                         " give more characters")

    def history(self, env: str | None = None, limit: int = 20) -> list[Rollout]:
        """Roll-outs, newest first."""
        where = [rollouts_t.c.env == env] if env else []
        return [_rollout(r) for r in self._db.execute(_rollouts(*where).limit(int(limit)))]

    def last_rollout(self, env: str, status: str | None = None) -> Rollout | None:
        """The newest roll-out of ``env`` (with that status, if given)."""
        where = [rollouts_t.c.env == env] + ([rollouts_t.c.status == status] if status else [])
        row = self._db.execute(_rollouts(*where).limit(1)).fetchone()
        return _rollout(row) if row else None

    def interrupted(self, env: str | None = None) -> list[Rollout]:
        """Roll-outs still marked running whose process is gone (killed), newest first."""
        where = [rollouts_t.c.status == "running"] + ([rollouts_t.c.env == env] if env else [])
        rows = self._db.execute(_rollouts(*where)).fetchall()
        return [r for r in map(_rollout, rows) if not self._running_alive(r)]

    def resumable(self, env: str) -> Rollout | None:
        """The roll-out ``resume`` should finish: the newest non-refused roll-out of ``env``,
        if it is a deploy/resume that was interrupted, halted, paused, awaits promotion, or was
        killed while running."""
        row = self._db.execute(_rollouts(rollouts_t.c.env == env, rollouts_t.c.status != "refused").limit(1)).fetchone()
        if row is None:
            return None
        last = _rollout(row)
        if last.action == "rollback":
            return None
        if last.status in RESUMABLE:
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
            db.execute(sa.insert(host_events_t).values(rollout_id=rollout_id, host=host, phase=phase, at=at,
                                                       detail=_dumps(detail)))
        return HostEvent(rollout_id, host, phase, at, redact(detail or {}))

    def host_events(self, rollout_id: str) -> list[HostEvent]:
        e = host_events_t.c
        rows = self._db.execute(sa.select(e.rollout_id, e.host, e.phase, e.at, e.detail)
                                .where(e.rollout_id == rollout_id).order_by(e.seq)).fetchall()
        return [HostEvent(r.rollout_id, r.host, r.phase, r.at, json.loads(r.detail)) for r in rows]

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
            db.execute(sa.insert(gates_t).values(rollout_id=rollout_id, wave=int(wave), host=host, verdict=verdict,
                                                 evidence=_dumps(evidence), at=at))
        return GateOutcome(rollout_id, int(wave), host, verdict, redact(evidence or {}), at)

    def gates(self, rollout_id: str) -> list[GateOutcome]:
        rows = self._db.execute(sa.select(gates_t).where(gates_t.c.rollout_id == rollout_id)
                                .order_by(gates_t.c.seq)).fetchall()
        return [GateOutcome(r.rollout_id, r.wave, r.host, r.verdict, json.loads(r.evidence), r.at) for r in rows]

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

    def take_lock(self, env: str, rollout_id: str, *, ttl: float | None = None, pid: int | None = None) -> LockHandle:
        """Take ``env``'s lock without a ``with`` block; call ``handle.release()`` yourself.
        ``pid``: the process whose life the lock is bound to when it is not this one (the
        playbooks' policy step binds it to ansible-playbook, which outlives the step)."""
        pid = pid or os.getpid()
        ttl = lock_ttl() if ttl is None else ttl
        if not ttl > 0:
            raise ValueError("ttl must be > 0 seconds")
        now = self.now()
        with self._write() as db:
            held = self._lock_row(env, db)
            if held is not None and not self._lock_dead(held):
                raise LockHeld(held)
            key = f"fence:{env}"
            last = db.execute(sa.select(kv.c.value).where(kv.c.key == key)).scalar()
            token = int(last) + 1 if last is not None else 1
            statedb.put(db, key, str(token))
            me = LockRow(env, rollout_id, pid, process_start(pid), self.hostname, now, now,
                         float(ttl), token)
            db.execute(sa.delete(locks_t).where(locks_t.c.env == env))
            db.execute(sa.insert(locks_t).values(**me.__dict__))
        self._fences[rollout_id] = (env, token)
        return LockHandle(self, me, taken_over=held)

    def adopt_lock(self, env: str, rollout_id: str, token: int) -> None:
        """Act, in this process, as the holder of the grant ``token`` of ``env``'s lock (taken by
        another process of the same run: the policy step, its guardian): this store's writes for
        ``rollout_id`` are fenced by it, and heartbeat/release act on it. LockLost if it is gone."""
        self._fences[rollout_id] = (env, int(token))
        with self._write() as db:
            held = self._lock_row(env, db)
            if held is None or held.token != int(token) or held.rollout_id != rollout_id:
                raise self._lost(env, rollout_id, db)

    def lock_holder(self, env: str) -> LockRow | None:
        """The current lock row of ``env`` (dead or alive), or None."""
        return self._lock_row(env)

    def heartbeat(self, env: str, rollout_id: str, db: Connection | None = None) -> None:
        """Refresh the heartbeat; raises LockLost (naming the new holder) if the lock is no
        longer this roll-out's."""
        token = self._fences.get(rollout_id, (env, None))[1]
        with self._write(db) as conn:
            cur = conn.execute(sa.update(locks_t).where(*_ours(env, rollout_id, token)).values(heartbeat_at=self.now()))
            if cur.rowcount == 0:
                raise self._lost(env, rollout_id, conn)

    def release_lock(self, env: str, rollout_id: str, db: Connection | None = None) -> None:
        """Drop the lock if this roll-out still holds it; else do nothing."""
        token = self._fences.pop(rollout_id, (env, None))[1]
        with self._write(db) as conn:
            conn.execute(sa.delete(locks_t).where(*_ours(env, rollout_id, token)))

    @contextmanager
    def _fenced(self, rollout_id: str) -> Iterator[Connection]:
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

    def _lost(self, env: str, rollout_id: str, db: Connection) -> LockLost:
        """LockLost naming who holds the lock now, or who took it over if it was since released."""
        held = self._lock_row(env, db)
        if held is not None:
            return LockLost(env, rollout_id, held)
        # took_over is JSON text: filtered here, not by a dialect's JSON functions
        rows = db.execute(_rollouts(rollouts_t.c.env == env, rollouts_t.c.took_over.is_not(None))).fetchall()
        taken_by = next((r for r in map(_rollout, rows) if r.took_over.get("rollout_id") == rollout_id), None)
        return LockLost(env, rollout_id, taken_by=taken_by)

    def _lock_row(self, env: str, db: Connection | None = None) -> LockRow | None:
        row = (db or self._db).execute(sa.select(locks_t).where(locks_t.c.env == env)).fetchone()
        return LockRow(**row._mapping) if row else None

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
        h = host_events_t.c
        rows = self._db.execute(sa.select(h.rollout_id, h.host, h.phase).join_from(host_events_t, rollouts_t)
                                .where(rollouts_t.c.env == env).order_by(h.seq)).fetchall()
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
        rows = self._db.execute(sa.select(gates_t.c.evidence).join_from(gates_t, rollouts_t)
                                .where(rollouts_t.c.env == env).order_by(gates_t.c.seq.desc()).limit(int(limit))).fetchall()
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
        r, h, g = rollouts_t.c, host_events_t.c, gates_t.c
        rows = self._db.execute(
            sa.select(r.id, r.started_at, r.finished_at)
            .where(r.env == env, r.status == "succeeded", r.action.in_(("deploy", "resume")), r.finished_at.is_not(None))
            .order_by(*_NEWEST).limit(int(limit))).fetchall()
        runs = []
        for rollout_id, started, finished in rows:
            staged = self._db.execute(sa.select(sa.func.max(h.at)).where(h.rollout_id == rollout_id,
                                                                         h.phase == "staged")).scalar()
            waves: dict[int, float] = {}
            for wave, text in self._db.execute(sa.select(g.wave, g.evidence).where(g.rollout_id == rollout_id)):
                try:
                    elapsed = json.loads(text).get("elapsed")
                except (ValueError, AttributeError):
                    continue
                if type(elapsed) in (int, float):
                    waves[wave] = max(waves.get(wave, 0.0), float(elapsed))
            runs.append({"started_at": started, "finished_at": finished, "staged_at": staged, "gate_seconds": waves})
        return runs


def _ours(env: str, rollout_id: str, token: int | None) -> tuple:
    """The lock row of ``env`` if it is this roll-out's grant (``token``; None: untokened)."""
    return (locks_t.c.env == env, locks_t.c.rollout_id == rollout_id, locks_t.c.token.is_not_distinct_from(token))


def project_state(default: Path) -> str | Path:
    """Where a project's state lives: the URL in the environment (``LRELEASE_STATE_URL`` or
    ``LRELEASE_STATE_URL_FILE``), else its SQLite file ``default``."""
    where = statedb.configured()
    return where.target if where is not None else default


def lock_check(db_path: str | Path | None, env: str, token: int) -> str:
    """``held`` while ``env``'s lock carries ``token``, else one line naming who holds it (for the
    playbooks' fencing check, lookup ``lrelease_lock``). ``db_path``: the SQLite file, a URL, or
    empty for the URL in the environment (``LRELEASE_STATE_URL``: a URL never travels as an
    extra var). Read-only; no migration."""
    where = statedb.locate(db_path) if db_path else statedb.configured()
    if where is None:
        raise StateError(f"no state database: db is empty and neither {statedb.URL_ENV} nor"
                         f" {statedb.URL_FILE_ENV} is set")
    db = statedb.connect(where, readonly=True)
    try:
        lk = locks_t.c
        row = db.execute(sa.select(lk.rollout_id, lk.pid, lk.hostname, lk.token).where(lk.env == env)).fetchone()
    except statedb.DB_ERRORS as exc:
        raise statedb.unusable(where, exc) from None
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
