"""The state database's plumbing: schema (versioned in ``meta``), connections, transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from lrelease.errors import ExitCode, LreleaseError

SCHEMA_VERSION = 2
ACTIONS = ("deploy", "rollback", "resume")
# `crashed`: lrelease itself failed (exit 70); `lock_lost`: another roll-out took the lock over
# while this one was paused (exit 4).
STATUSES = ("running", "succeeded", "rolled_back", "rollback_failed", "halted", "interrupted", "refused",
            "crashed", "lock_lost")
PHASES = ("staged", "switched", "reverted", "gate_passed", "gate_failed", "rolled_back", "unreachable", "failed")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY,
    env TEXT NOT NULL,
    build TEXT NOT NULL,
    previous_build TEXT,
    action TEXT NOT NULL CHECK (action IN {ACTIONS}),
    status TEXT NOT NULL CHECK (status IN {STATUSES}),
    actor TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    started_at TEXT NOT NULL,
    finished_at TEXT,
    exit_code INTEGER,
    plan TEXT NOT NULL DEFAULT '{{}}',
    resumes TEXT REFERENCES rollouts(id),
    pid INTEGER NOT NULL,
    pid_start TEXT NOT NULL DEFAULT '',
    hostname TEXT NOT NULL,
    undoes TEXT REFERENCES rollouts(id),
    lock_token INTEGER,
    took_over TEXT,
    rollback_started_at TEXT
);
CREATE INDEX IF NOT EXISTS rollouts_by_env ON rollouts (env, started_at);
CREATE TABLE IF NOT EXISTS host_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL REFERENCES rollouts(id),
    host TEXT NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN {PHASES}),
    at TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX IF NOT EXISTS host_events_by_rollout ON host_events (rollout_id, seq);
CREATE TABLE IF NOT EXISTS gates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL REFERENCES rollouts(id),
    wave INTEGER NOT NULL,
    host TEXT NOT NULL,
    verdict TEXT NOT NULL,
    evidence TEXT NOT NULL DEFAULT '{{}}',
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gates_by_rollout ON gates (rollout_id, seq);
CREATE TABLE IF NOT EXISTS locks (
    env TEXT PRIMARY KEY,
    rollout_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start TEXT NOT NULL DEFAULT '',
    hostname TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    ttl REAL NOT NULL,
    token INTEGER NOT NULL DEFAULT 0
);
"""

# Version 1 -> 2: two statuses (a CHECK constraint, so the table is rebuilt: renamed aside, created
# anew, copied, dropped, with foreign keys off), the roll-out a rollback `undoes`, the lock's
# fencing token, whom a lock was taken over from, and when a deploy began its automatic rollback.
_V1_ROLLOUT_COLUMNS = ("id, env, build, previous_build, action, status, actor, reason, started_at, finished_at,"
                       " exit_code, plan, resumes, pid, pid_start, hostname")


class StateError(LreleaseError):
    """The state database cannot be used as asked (newer schema, unknown roll-out id)."""

    exit_code = ExitCode.USAGE


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``: sorts as text in time order."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def connect(path: Path) -> sqlite3.Connection:
    """A new connection (one per thread); autocommit, so transactions are explicit. A file that
    is not a usable SQLite database is a StateError naming it and what to do."""
    if path.exists() and not path.is_file():
        raise StateError(f"{path}: the state database is not a file; set state_dir in lrelease.yml to a directory"
                         " lrelease may use")
    try:
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        raise unusable(path, exc) from None
    return db


def unusable(path: Path, exc: BaseException) -> StateError:
    """The one line for a state database that cannot be read or written."""
    return StateError(f"{path}: the state database cannot be used ({exc}); move it aside to start a new history"
                      " (its roll-outs are then forgotten), or restore it from a backup")


@contextmanager
def write(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction: the write lock is taken before anything is read,
    so check-then-write (the lock) cannot race another process."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Create or upgrade the schema, in place; refuse a database from a newer lrelease."""
    try:
        _migrate(db, path)
    except sqlite3.DatabaseError as exc:
        raise unusable(path, exc) from None


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    # A table rebuild must not cascade, nor rewrite the other tables' references to the renamed
    # table (both pragmas are no-ops inside a transaction, so they are set before it).
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("PRAGMA legacy_alter_table=ON")
    try:
        with write(db):
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row["value"]) if row else 0
            if version > SCHEMA_VERSION:
                raise StateError(f"{path}: written by a newer lrelease (schema {version}, "
                                 f"this one knows {SCHEMA_VERSION}); upgrade lrelease")
            if version == 1:
                db.execute("DROP INDEX IF EXISTS rollouts_by_env")
                db.execute("ALTER TABLE rollouts RENAME TO rollouts_v1")
                db.execute("ALTER TABLE locks RENAME TO locks_v1")
            if version < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            if version == 1:
                db.execute(f"INSERT INTO rollouts ({_V1_ROLLOUT_COLUMNS}) SELECT {_V1_ROLLOUT_COLUMNS} FROM rollouts_v1")
                db.execute("INSERT INTO locks (env, rollout_id, pid, pid_start, hostname, acquired_at, heartbeat_at, ttl)"
                           " SELECT env, rollout_id, pid, pid_start, hostname, acquired_at, heartbeat_at, ttl"
                           " FROM locks_v1")
                db.execute("DROP TABLE rollouts_v1")
                db.execute("DROP TABLE locks_v1")
            if version < SCHEMA_VERSION:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))
            if version == 1 and db.execute("PRAGMA foreign_key_check").fetchall():
                raise StateError(f"{path}: the upgrade to schema {SCHEMA_VERSION} broke a reference; not upgraded")
    finally:
        db.execute("PRAGMA legacy_alter_table=OFF")
        db.execute("PRAGMA foreign_keys=ON")


def schema_version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row["value"]) if row else 0
