"""The state database's plumbing: schema (versioned in ``meta``), connections, transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from lrelease.errors import ExitCode, LreleaseError

SCHEMA_VERSION = 1
ACTIONS = ("deploy", "rollback", "resume")
STATUSES = ("running", "succeeded", "rolled_back", "rollback_failed", "halted", "interrupted", "refused")
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
    hostname TEXT NOT NULL
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
    ttl REAL NOT NULL
);
"""


class StateError(LreleaseError):
    """The state database cannot be used as asked (newer schema, unknown roll-out id)."""

    exit_code = ExitCode.USAGE


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``: sorts as text in time order."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def connect(path: Path) -> sqlite3.Connection:
    """A new connection (one per thread); autocommit, so transactions are explicit."""
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


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
    """Create or upgrade the schema; refuse a database from a newer lrelease."""
    with write(db):
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row["value"]) if row else 0
        if version > SCHEMA_VERSION:
            raise StateError(f"{path}: written by a newer lrelease (schema {version}, "
                             f"this one knows {SCHEMA_VERSION}); upgrade lrelease")
        if version < SCHEMA_VERSION:  # 0 -> 1 creates everything; later upgrades go here, in steps
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))


def schema_version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row["value"]) if row else 0
