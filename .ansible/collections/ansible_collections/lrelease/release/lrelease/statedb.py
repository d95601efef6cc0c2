"""The state database's plumbing: where it lives (a SQLite file, or a URL from the environment),
connections, write transactions, the tables the queries use, and the migrations run on open.

Two backends, one code path (SQLAlchemy Core): SQLite (the default, a file in ``state_dir``)
and PostgreSQL (``LRELEASE_STATE_URL`` or a file named by ``LRELEASE_STATE_URL_FILE``, for
teams whose CLI, AWX and cron runs must see one another). Writes are serialised the same way
on both: SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's transaction-scoped advisory lock taken
first in the transaction, so a check-then-write (the lock, a fenced write) cannot race another
process. The schema is versioned by Alembic (``lrelease/migrations/``); ``meta.schema_version``
still says which lrelease wrote it, so an older lrelease refuses a newer database.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from lrelease import secrets
from lrelease.errors import ExitCode, LreleaseError

SCHEMA_VERSION = 6  # meta.schema_version: 2 is the baseline revision, 3 adds rollouts.seq, 4 the policies,
# 5 the statuses paused and awaiting_promotion, 6 the builds
REVISIONS = ("0001_baseline", "0002_rollout_seq", "0003_release_policies", "0004_rollout_pauses",
             "0005_builds")  # lrelease/migrations/versions/, oldest first
ACTIONS = ("deploy", "rollback", "resume")
# `crashed`: lrelease itself failed (exit 70); `lock_lost`: another roll-out took the lock over
# while this one was paused (exit 4); `paused`: stopped at a wave boundary when its deploy window
# closed (exit 5; `resume` in the next window); `awaiting_promotion`: stopped at a `pause` of its
# waves (exit 5; `promote` goes on, `abort` rolls back).
STATUSES = ("running", "succeeded", "rolled_back", "rollback_failed", "halted", "interrupted", "refused",
            "crashed", "lock_lost", "paused", "awaiting_promotion")
PHASES = ("staged", "switched", "reverted", "gate_passed", "gate_failed", "rolled_back", "unreachable", "failed")

URL_ENV = "LRELEASE_STATE_URL"
URL_FILE_ENV = "LRELEASE_STATE_URL_FILE"
# PostgreSQL: the advisory lock every write transaction takes first ("lrel" in ASCII).
WRITE_LOCK_KEY = 0x6C72656C
DB_ERRORS = (SQLAlchemyError, sqlite3.Error)  # what a store operation may raise from the database

# -- tables (as the newest revision leaves them; the migrations hold each step) ----------------
tables = sa.MetaData()
kv = sa.Table("meta", tables, sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text, nullable=False))
rollouts = sa.Table(
    "rollouts", tables,
    sa.Column("id", sa.Text, primary_key=True),
    *(sa.Column(name, sa.Text) for name in ("env", "build", "previous_build", "action", "status", "actor",
                                             "reason", "started_at", "finished_at")),
    sa.Column("exit_code", sa.Integer), sa.Column("plan", sa.Text), sa.Column("resumes", sa.Text),
    sa.Column("pid", sa.Integer), sa.Column("pid_start", sa.Text), sa.Column("hostname", sa.Text),
    sa.Column("undoes", sa.Text), sa.Column("lock_token", sa.Integer), sa.Column("took_over", sa.Text),
    sa.Column("rollback_started_at", sa.Text),
    sa.Column("seq", sa.BigInteger),  # insertion order (set by the database): ties of started_at
    sa.Column("policy", sa.Text),  # JSON: a refusal, or the overrides a roll-out went ahead with
)
host_events = sa.Table(
    "host_events", tables, sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("rollout_id", sa.Text, sa.ForeignKey("rollouts.id")),
    *(sa.Column(name, sa.Text) for name in ("host", "phase", "at", "detail")),
)
gates = sa.Table(
    "gates", tables, sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("rollout_id", sa.Text, sa.ForeignKey("rollouts.id")),
    sa.Column("wave", sa.Integer), *(sa.Column(name, sa.Text) for name in ("host", "verdict", "evidence", "at")),
)
locks = sa.Table(
    "locks", tables,
    *(sa.Column(name, sa.Text) for name in ("env", "rollout_id")), sa.Column("pid", sa.Integer),
    *(sa.Column(name, sa.Text) for name in ("pid_start", "hostname", "acquired_at", "heartbeat_at")),
    sa.Column("ttl", sa.Float), sa.Column("token", sa.Integer),
)
# The release policies (lrelease/policies.py): each change a row; the current one is the newest not ended.
captains = sa.Table(
    "captains", tables, sa.Column("seq", sa.Integer, primary_key=True),
    *(sa.Column(name, sa.Text) for name in ("env", "name", "until", "reason", "set_by", "set_at", "cleared_by",
                                             "cleared_at")),
)
env_pauses = sa.Table(
    "env_pauses", tables, sa.Column("seq", sa.Integer, primary_key=True),
    *(sa.Column(name, sa.Text) for name in ("env", "reason", "paused_by", "paused_at", "unpaused_by",
                                             "unpaused_at")),
)
# Builds with provenance (lrelease/builds.py); tags, picks and reverts are JSON lists.
builds = sa.Table(
    "builds", tables, sa.Column("seq", sa.Integer, primary_key=True),
    *(sa.Column(name, sa.Text) for name in ("version", "sha256", "artifact", "repository", "branch", "commit_sha",
                                             "tags", "branch_point", "picks", "reverts", "kind", "built_by",
                                             "built_at")),
)
ROLLOUT_COLUMNS = [c for c in rollouts.c if c.name != "seq"]


class StateError(LreleaseError):
    """The state database cannot be used as asked (newer schema, unknown roll-out id)."""

    exit_code = ExitCode.USAGE


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``: sorts as text in time order."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- where the state lives -----------------------------------------------------------------------
@dataclass(frozen=True)
class Location:
    """A state database: a SQLite file (``path``) or a server (``url``). ``shown`` is what
    messages name: the path, or the URL with its password masked."""

    url: sa.URL
    path: Path | None
    shown: str

    @property
    def target(self) -> str:
        """What :class:`~lrelease.state.StateStore` and :func:`~lrelease.state.lock_check` accept
        (the URL with its password: never print it)."""
        return str(self.path) if self.path is not None else self.url.render_as_string(hide_password=False)


def locate(target: str | Path, source: str = "") -> Location:
    """The database at ``target``: a path (SQLite) or a ``postgresql+psycopg://`` (or
    ``sqlite:///``) URL, whose password is registered as a secret before anything can show it."""
    text = str(target)
    if isinstance(target, Path) or "://" not in text:
        return Location(sa.URL.create("sqlite", database=text), Path(text), text)
    secrets.register_url(text)
    try:
        url = sa.make_url(text)
    except (ArgumentError, ValueError):
        url = None
    if url is not None:
        for name, value in url.query.items():
            if secrets.secret_param(name):
                secrets.register(value if isinstance(value, str) else ",".join(value))
        secrets.register(url.password)
    kind = url.get_backend_name() if url is not None else ""
    if kind == "postgresql" and url.get_driver_name() in ("psycopg", "psycopg2"):  # psycopg 3 is the one installed
        url = url.set(drivername="postgresql+psycopg")
        return Location(url, None, secrets.mask_url(url.render_as_string(hide_password=False)))
    if kind == "sqlite" and url.database and url.database != ":memory:" and url.get_driver_name() == "pysqlite":
        return Location(url, Path(url.database), url.database)
    raise StateError(f"{source or 'state database'}: expected a postgresql+psycopg://user:password@host/database"
                     f" URL (or sqlite:///path), got {secrets.mask_url(text)!r}")


def configured(environ: Mapping[str, str] | None = None) -> Location | None:
    """The state database named by the environment: ``LRELEASE_STATE_URL``, or the one line of
    the file ``LRELEASE_STATE_URL_FILE`` names (a secret file, as systemd and AWX provide). None
    when neither is set: the project's SQLite file is used. Never read from lrelease.yml."""
    env = os.environ if environ is None else environ
    raw, file = env.get(URL_ENV, "").strip(), env.get(URL_FILE_ENV, "").strip()
    if raw and file:
        raise StateError(f"{URL_ENV} and {URL_FILE_ENV} are both set: set one")
    source = URL_ENV
    if file:
        source = f"{URL_FILE_ENV} ({file})"
        try:
            lines = [line.strip() for line in Path(file).read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeError) as exc:
            raise StateError(f"{source}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
        for line in lines:
            secrets.register_url(line)
        if len(lines) != 1:
            raise StateError(f"{source}: expected one line, the state database's URL; found {len(lines)}")
        raw = lines[0]
    return locate(raw, source) if raw else None


# -- connections and transactions ------------------------------------------------------------------
def engine(where: Location, *, readonly: bool = False) -> Engine:
    """An engine for ``where``: no pool (a store keeps its connection; each thread opens its own),
    autocommit at the driver, so every transaction is an explicit :func:`write`, and no values in
    its error messages (a crash's one line never carries a roll-out's data)."""
    if where.path is None:
        return sa.create_engine(where.url, poolclass=NullPool, isolation_level="AUTOCOMMIT", hide_parameters=True,
                                connect_args={"connect_timeout": 10})
    path = where.path

    def sqlite_connection() -> sqlite3.Connection:
        if readonly:
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")  # history reads while a roll-out writes
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    return sa.create_engine("sqlite://", creator=sqlite_connection, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                            hide_parameters=True)


def connect(where: Location, via: Engine | None = None, *, readonly: bool = False) -> Connection:
    """A new connection to ``where`` (one per thread; ``via`` an engine made for it). A file that
    is not a usable SQLite database, or a server that cannot be reached, is a StateError naming it
    and what to do."""
    if where.path is not None and where.path.exists() and not where.path.is_file():
        raise StateError(f"{where.shown}: the state database is not a file; set state_dir in lrelease.yml to a"
                         " directory lrelease may use")
    try:
        return (via or engine(where, readonly=readonly)).connect()
    except DB_ERRORS as exc:
        raise unusable(where, exc) from None


def reason(exc: BaseException) -> str:
    """The database's own words for ``exc``, on one line, secrets masked."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    return secrets.scrub(text)


def unusable(where: Location, exc: BaseException) -> StateError:
    """The one line for a state database that cannot be read or written."""
    if where.path is None:
        return StateError(f"{where.shown}: the state database cannot be used ({reason(exc)}); check"
                          f" {URL_ENV} and that the server is up and lets this user in")
    return StateError(f"{where.shown}: the state database cannot be used ({reason(exc)}); move it aside to start a"
                      " new history (its roll-outs are then forgotten), or restore it from a backup")


@contextmanager
def write(db: Connection) -> Iterator[Connection]:
    """One write transaction, serialised with every other writer before it reads anything:
    SQLite's ``BEGIN IMMEDIATE``; on PostgreSQL an advisory lock held until the transaction ends.
    So check-then-write (the lock, a fenced write) cannot race another process."""
    if db.dialect.name == "sqlite":
        db.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        db.exec_driver_sql("BEGIN")
        try:
            db.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
        except BaseException:
            _rollback(db)
            raise
    try:
        yield db
    except BaseException:
        _rollback(db)
        raise
    db.exec_driver_sql("COMMIT")


def _rollback(db: Connection) -> None:
    try:
        db.exec_driver_sql("ROLLBACK")
    except DB_ERRORS:  # the connection is gone: the server ended the transaction itself
        pass


def put(db: Connection, key: str, value: str) -> None:
    """Set a ``meta`` key (inside :func:`write`, so no other writer interleaves)."""
    if db.execute(sa.update(kv).where(kv.c.key == key).values(value=value)).rowcount == 0:
        db.execute(sa.insert(kv).values(key=key, value=value))


# -- the schema's version and its migrations ---------------------------------------------------------
def versions(db: Connection) -> tuple[str | None, int]:
    """(Alembic revision or None, meta.schema_version or 0) of the database."""
    inspector = sa.inspect(db)
    revision = None
    if inspector.has_table("alembic_version"):
        revision = db.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    version = 0
    if inspector.has_table("meta"):
        value = db.execute(sa.select(kv.c.value).where(kv.c.key == "schema_version")).scalar()
        version = int(value) if value is not None else 0
    return revision, version


def schema_version(db: Connection) -> int:
    return versions(db)[1]


def migrate(db: Connection, where: Location) -> None:
    """Create or upgrade the schema, in place, one process at a time; refuse a database from a
    newer lrelease. A database already at the newest revision costs two reads."""
    try:
        if versions(db) == (REVISIONS[-1], SCHEMA_VERSION):
            return
        _upgrade(db, where)
    except DB_ERRORS as exc:
        raise unusable(where, exc) from None


def _upgrade(db: Connection, where: Location) -> None:
    sqlite = db.dialect.name == "sqlite"
    if sqlite:  # a table rebuild (v1) must not cascade nor rewrite other tables' references;
        db.exec_driver_sql("PRAGMA foreign_keys=OFF")  # both pragmas are no-ops inside a transaction
        db.exec_driver_sql("PRAGMA legacy_alter_table=ON")
    try:
        with write(db):
            revision, version = versions(db)  # again, under the lock: another process may have done it
            if version > SCHEMA_VERSION or (revision is not None and revision not in REVISIONS):
                known = f"schema {version}" if version > SCHEMA_VERSION else f"revision {revision}"
                raise StateError(f"{where.shown}: written by a newer lrelease ({known}, this one knows"
                                 f" {SCHEMA_VERSION}); upgrade lrelease")
            if revision is None and version == 1 and sqlite:
                _v1_to_v2(db)
            _alembic(db, "0001_baseline" if revision is None and version else None)
            if sqlite and version == 1 and db.exec_driver_sql("PRAGMA foreign_key_check").fetchall():
                raise StateError(f"{where.shown}: the upgrade to schema {SCHEMA_VERSION} broke a reference;"
                                 " not upgraded")
    finally:
        if sqlite:
            db.exec_driver_sql("PRAGMA legacy_alter_table=OFF")
            db.exec_driver_sql("PRAGMA foreign_keys=ON")


def _alembic(db: Connection, stamp: str | None) -> None:
    """Run lrelease/migrations/ up to the newest revision on ``db``, inside the caller's transaction;
    first ``stamp`` a database an lrelease before Alembic created (schema 2 is the baseline)."""
    from alembic import command  # only when a migration runs: keeps the CLI's start quick
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = db
    if stamp:
        command.stamp(config, stamp)
    command.upgrade(config, "head")


# Version 1 -> 2 (before Alembic; SQLite only): two statuses (a CHECK constraint, so the table is
# rebuilt: renamed aside, created anew, copied, dropped), the roll-out a rollback `undoes`, the lock's
# fencing token, whom a lock was taken over from, and when a deploy began its automatic rollback.
_V1_ROLLOUT_COLUMNS = ("id, env, build, previous_build, action, status, actor, reason, started_at, finished_at,"
                       " exit_code, plan, resumes, pid, pid_start, hostname")
_V2_TABLES = """
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY, env TEXT NOT NULL, build TEXT NOT NULL, previous_build TEXT,
    action TEXT NOT NULL CHECK (action IN ('deploy', 'rollback', 'resume')),
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'rolled_back', 'rollback_failed', 'halted',
        'interrupted', 'refused', 'crashed', 'lock_lost')),
    actor TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', started_at TEXT NOT NULL, finished_at TEXT,
    exit_code INTEGER, plan TEXT NOT NULL DEFAULT '{}', resumes TEXT REFERENCES rollouts(id),
    pid INTEGER NOT NULL, pid_start TEXT NOT NULL DEFAULT '', hostname TEXT NOT NULL,
    undoes TEXT REFERENCES rollouts(id), lock_token INTEGER, took_over TEXT, rollback_started_at TEXT);
CREATE INDEX rollouts_by_env ON rollouts (env, started_at);
CREATE TABLE locks (
    env TEXT PRIMARY KEY, rollout_id TEXT NOT NULL, pid INTEGER NOT NULL, pid_start TEXT NOT NULL DEFAULT '',
    hostname TEXT NOT NULL, acquired_at TEXT NOT NULL, heartbeat_at TEXT NOT NULL, ttl REAL NOT NULL,
    token INTEGER NOT NULL DEFAULT 0)
"""


def _v1_to_v2(db: Connection) -> None:
    db.exec_driver_sql("DROP INDEX IF EXISTS rollouts_by_env")
    db.exec_driver_sql("ALTER TABLE rollouts RENAME TO rollouts_v1")
    db.exec_driver_sql("ALTER TABLE locks RENAME TO locks_v1")
    for statement in _V2_TABLES.split(";"):
        db.exec_driver_sql(statement)
    db.exec_driver_sql(f"INSERT INTO rollouts ({_V1_ROLLOUT_COLUMNS}) SELECT {_V1_ROLLOUT_COLUMNS} FROM rollouts_v1")
    db.exec_driver_sql("INSERT INTO locks (env, rollout_id, pid, pid_start, hostname, acquired_at, heartbeat_at, ttl)"
                       " SELECT env, rollout_id, pid, pid_start, hostname, acquired_at, heartbeat_at, ttl FROM locks_v1")
    db.exec_driver_sql("DROP TABLE rollouts_v1")
    db.exec_driver_sql("DROP TABLE locks_v1")
    put(db, "schema_version", "2")
