"""Migrations of the state database: an existing SQLite file of schema 1 or 2 (written by an
lrelease before Alembic, with the SQL it used) is upgraded in place when opened; a new database
on either backend is created by the migrations, one process at a time; a file that is not a
database is refused without being changed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from lrelease import statedb
from lrelease.errors import ExitCode
from lrelease.state import StateError, StateStore
from tests.statedbs import raw

ROOT = Path(__file__).resolve().parents[2]

# What lrelease 0.1 wrote: schema 1 (before the fencing token), as its statedb.py created it.
V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE rollouts (id TEXT PRIMARY KEY, env TEXT NOT NULL, build TEXT NOT NULL, previous_build TEXT,
  action TEXT NOT NULL CHECK (action IN ('deploy', 'rollback', 'resume')),
  status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'rolled_back', 'rollback_failed', 'halted',
  'interrupted', 'refused')), actor TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', started_at TEXT NOT NULL,
  finished_at TEXT, exit_code INTEGER, plan TEXT NOT NULL DEFAULT '{}', resumes TEXT REFERENCES rollouts(id),
  pid INTEGER NOT NULL, pid_start TEXT NOT NULL DEFAULT '', hostname TEXT NOT NULL);
CREATE INDEX rollouts_by_env ON rollouts (env, started_at);
CREATE TABLE host_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL REFERENCES rollouts(id),
  host TEXT NOT NULL, phase TEXT NOT NULL, at TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}');
CREATE TABLE gates (seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL REFERENCES rollouts(id),
  wave INTEGER NOT NULL, host TEXT NOT NULL, verdict TEXT NOT NULL, evidence TEXT NOT NULL DEFAULT '{}',
  at TEXT NOT NULL);
CREATE TABLE locks (env TEXT PRIMARY KEY, rollout_id TEXT NOT NULL, pid INTEGER NOT NULL,
  pid_start TEXT NOT NULL DEFAULT '', hostname TEXT NOT NULL, acquired_at TEXT NOT NULL,
  heartbeat_at TEXT NOT NULL, ttl REAL NOT NULL);
INSERT INTO rollouts (id, env, build, action, status, actor, started_at, pid, hostname)
  VALUES ('old000000001', 'production', '1.1.0', 'deploy', 'succeeded', 'ann', '2026-01-01T00:00:00.000Z', 1, 'h');
INSERT INTO host_events (rollout_id, host, phase, at) VALUES ('old000000001', 'node1', 'gate_passed', 'x');
"""


# Schema 2, exactly as lrelease's statedb.py created it before Alembic (its _SCHEMA text).
V2 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY,
    env TEXT NOT NULL,
    build TEXT NOT NULL,
    previous_build TEXT,
    action TEXT NOT NULL CHECK (action IN ('deploy', 'rollback', 'resume')),
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'rolled_back', 'rollback_failed', 'halted',
        'interrupted', 'refused', 'crashed', 'lock_lost')),
    actor TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    started_at TEXT NOT NULL,
    finished_at TEXT,
    exit_code INTEGER,
    plan TEXT NOT NULL DEFAULT '{}',
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
    phase TEXT NOT NULL CHECK (phase IN ('staged', 'switched', 'reverted', 'gate_passed', 'gate_failed',
        'rolled_back', 'unreachable', 'failed')),
    at TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS host_events_by_rollout ON host_events (rollout_id, seq);
CREATE TABLE IF NOT EXISTS gates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL REFERENCES rollouts(id),
    wave INTEGER NOT NULL,
    host TEXT NOT NULL,
    verdict TEXT NOT NULL,
    evidence TEXT NOT NULL DEFAULT '{}',
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
INSERT INTO meta VALUES ('schema_version', '2');
INSERT INTO meta VALUES ('fence:production', '7');
INSERT INTO rollouts (id, env, build, action, status, actor, started_at, pid, hostname, lock_token)
  VALUES ('first0000001', 'production', '1.1.0', 'deploy', 'succeeded', 'ann', '2026-01-01T00:00:00.000Z', 1, 'h', 6);
INSERT INTO rollouts (id, env, build, action, status, actor, started_at, pid, hostname, lock_token)
  VALUES ('second000001', 'production', '1.2.0', 'deploy', 'halted', 'ann', '2026-01-01T00:00:00.000Z', 1, 'h', 7);
INSERT INTO gates (rollout_id, wave, host, verdict, evidence, at)
  VALUES ('second000001', 1, 'node1', 'inconclusive', '{"gate": "apm", "looks": 3}', 'x');
"""


def old_file(path: Path, sql: str) -> Path:
    db = sqlite3.connect(path)
    db.executescript(sql)
    db.close()
    return path


def test_a_version_2_database_is_stamped_and_upgraded_in_place_keeping_its_order(tmp_path):
    # Given a schema 2 file, whose two roll-outs started in the same millisecond (rowid told them apart)
    path = old_file(tmp_path / "s.db", V2)
    # When this lrelease opens it
    with StateStore(path) as store:
        # Then it is at the newest revision and schema, its history in the same order as before
        assert store.schema_version() == statedb.SCHEMA_VERSION
        assert [r.id for r in store.history()] == ["second000001", "first0000001"]
        assert store.resumable("production").id == "second000001"
        assert store.gate_history("production") == [(3, 0.0)]
        # And a new roll-out in that same millisecond comes after them, and the fence goes on from 7
        store.clock = lambda: statedb.datetime(2026, 1, 1, tzinfo=statedb.timezone.utc)
        with store.acquire_lock("production", "third0000001", heartbeat_every=0) as lock:
            store.start_rollout("production", "1.3.0", "deploy", "bob", rollout_id="third0000001", lock=lock)
            assert lock.row.token == 8
        assert [r.id for r in store.history()] == ["third0000001", "second000001", "first0000001"]
    assert raw(path, "SELECT version_num FROM alembic_version") == [(statedb.REVISIONS[-1],)]


def test_the_known_revisions_are_the_migration_scripts_chain():
    # The fast path on open compares with REVISIONS: it must be the scripts' own chain, base to head
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(ROOT / "lrelease" / "migrations"))
    chain = [s.revision for s in ScriptDirectory.from_config(config).walk_revisions()]
    assert tuple(reversed(chain)) == statedb.REVISIONS


OPENER = textwrap.dedent("""
    import os, sys, time
    from lrelease.state import StateStore
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.005)
    with StateStore(sys.argv[1]) as store:
        print(store.schema_version(), flush=True)
""")


def test_processes_opening_a_new_database_at_once_migrate_it_once(tmp_path, state_db):
    # Given six processes that open the same new, empty database at the same moment
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(state_db), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(6)]
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    # Then each opened it at the newest schema (none saw a half-made one, none failed)
    assert [o.strip() for o, _ in outs] == [str(statedb.SCHEMA_VERSION)] * 6, [e for _, e in outs]
    # And the migrations ran once
    assert raw(state_db, "SELECT version_num FROM alembic_version") == [(statedb.REVISIONS[-1],)]
    assert raw(state_db, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(statedb.SCHEMA_VERSION),)]


def test_a_version_1_database_is_upgraded_in_place_keeping_its_history(tmp_path):
    # Given a database written by the previous lrelease
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    db.executescript(V1)
    db.close()
    # When this lrelease opens it
    with StateStore(path) as store:
        # Then it is at the new version, with its roll-outs and their host events
        assert store.schema_version() == statedb.SCHEMA_VERSION
        assert store.rollout("old000000001").build == "1.1.0"
        assert store.host_phases("old000000001") == {"node1": "gate_passed"}
        # And the new statuses and references work (foreign keys still point at the new table)
        store.start_rollout("production", "1.2.0", "deploy", "ann", rollout_id="new000000001")
        store.finish_rollout("new000000001", "crashed", 70)
        with pytest.raises(sa.exc.IntegrityError):
            store.record_host("nosuchrollout", "node1", "switched")
        assert store._db.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        # And Alembic knows it: the next lrelease upgrades it from there
        assert raw(path, "SELECT version_num FROM alembic_version") == [(statedb.REVISIONS[-1],)]


@pytest.mark.parametrize("content", [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 2000])
def test_a_corrupt_database_is_one_line_naming_the_file_and_what_to_do(tmp_path, content):
    path = tmp_path / "s.db"
    path.write_bytes(content)
    with pytest.raises(StateError) as err:
        StateStore(path)
    assert str(path) in str(err.value) and "move it aside" in str(err.value) and "\n" not in str(err.value)
    assert err.value.exit_code == ExitCode.USAGE
    assert path.read_bytes() == content  # changed nothing


def test_a_state_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "state").write_text("x")
    with pytest.raises(StateError, match="cannot create the state directory"):
        StateStore(tmp_path / "state" / "lrelease.db")




# A process that opens the database and is SIGKILLed right after one statement of a migration ran
# (before the migration's transaction could commit).
KILLED_AFTER = textwrap.dedent("""
    import os, re, signal, sys
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine
    from lrelease.state import StateStore

    @sa.event.listens_for(Engine, "after_cursor_execute")
    def _kill(conn, cursor, statement, *args):
        if re.match(sys.argv[2], statement.strip(), re.IGNORECASE):
            os.kill(os.getpid(), signal.SIGKILL)

    StateStore(sys.argv[1]).close()
    print("not killed")
""")


def _at_revision(state_db, revision: str) -> None:
    """A database migrated up to ``revision`` only (what an older lrelease left), with a roll-out."""
    from alembic import command
    from alembic.config import Config

    where = statedb.locate(str(state_db))
    if where.path is not None:
        where.path.parent.mkdir(parents=True, exist_ok=True)
    db = statedb.connect(where)
    try:
        with statedb.write(db):
            config = Config()
            config.set_main_option("script_location", str(ROOT / "lrelease" / "migrations"))
            config.attributes["connection"] = db
            command.upgrade(config, revision)
            db.exec_driver_sql(
                "INSERT INTO rollouts (id, env, build, action, status, actor, started_at, pid, hostname, lock_token)"
                " VALUES ('kept00000001', 'production', '1.1.0', 'deploy', 'halted', 'ann',"
                " '2026-01-01T00:00:00.000Z', 1, 'h', 3)")
    finally:
        db.close()


@pytest.mark.parametrize("killed_in, statement", [
    ("0003_release_policies", r"CREATE TABLE env_pauses"),  # captains made, rollouts.policy not yet
    ("0004_rollout_pauses", r"DROP TABLE rollouts|ALTER TABLE rollouts DROP CONSTRAINT"),  # the table rebuilt halfway
])
def test_a_migration_killed_halfway_leaves_the_old_schema_and_the_next_open_upgrades(state_db, killed_in, statement):
    # Given a database at the revision before 0003 (an lrelease before the release policies), with
    # a roll-out in it
    _at_revision(state_db, "0002_rollout_seq")
    # When the process upgrading it is SIGKILLed right after a statement inside migration `killed_in`
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER, str(state_db), statement], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    # Then nothing of the upgrade stayed: the database is still at its old revision, not half-way
    where = statedb.locate(str(state_db))
    db = statedb.connect(where)
    try:
        assert statedb.versions(db) == ("0002_rollout_seq", 3)
        assert not sa.inspect(db).has_table("captains")
    finally:
        db.close()
    # When it is opened again
    with StateStore(state_db) as store:
        # Then it is upgraded to the newest schema, its history kept, and what 0003 and 0004 add works
        assert store.schema_version() == statedb.SCHEMA_VERSION
        assert [(r.id, r.status) for r in store.history()] == [("kept00000001", "halted")]
        store.set_captain("production", "carol", set_by="carol")
        assert store.captain("production").name == "carol"
        with store.acquire_lock("production", "next00000001", heartbeat_every=0) as lock:
            store.start_rollout("production", "1.2.0", "deploy", "bob", rollout_id="next00000001", lock=lock)
            store.finish_rollout("next00000001", "paused", int(ExitCode.HALTED))
        assert store.rollout("next00000001").status == "paused"


def test_a_schema_5_database_gains_the_builds_table_in_place(tmp_path):
    # Given a database the previous lrelease wrote (revision 0004, schema 5) with a roll-out
    from alembic import command
    from alembic.config import Config

    path = tmp_path / "s.db"
    where = statedb.locate(path)
    db = statedb.connect(where)
    with statedb.write(db):
        config = Config()
        config.set_main_option("script_location", str(ROOT / "lrelease" / "migrations"))
        config.attributes["connection"] = db
        command.upgrade(config, "0004_rollout_pauses")
    db.close()
    raw(path, "INSERT INTO rollouts (id, env, build, action, status, actor, started_at, pid, hostname)"
              " VALUES ('old000000005', 'production', '1.5.0', 'deploy', 'paused', 'ann', '2026-01-01T00:00:00.000Z',"
              " 1, 'h')")
    assert raw(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [("5",)]
    # When this lrelease opens it
    with StateStore(path) as store:
        # Then it is at the newest schema, its roll-out kept, and builds can be recorded
        assert store.schema_version() == statedb.SCHEMA_VERSION == 6
        assert store.rollout("old000000005").status == "paused"
        from lrelease.statebuilds import BuildRecord

        store.record_build(BuildRecord(version="1.6.0", sha256="a" * 64, artifact="x", repository="/r",
                                       branch="release/1.6.0", commit="c" * 40, built_by="ann"))
        assert store.build_record("1.6.0").branch == "release/1.6.0"
    assert raw(path, "SELECT version_num FROM alembic_version") == [("0005_builds",)]
