"""The baseline: the schema lrelease 0.1 created itself (meta.schema_version 2).

A SQLite file written before lrelease used Alembic (no alembic_version table, schema_version 2
in meta) is stamped with this revision without running it (version 1 is first brought to 2;
lrelease/statedb.py). A new database, SQLite or PostgreSQL, is created by it.

Revision ID: 0001_baseline
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies: later revisions change these, never this one.
ACTIONS = ("deploy", "rollback", "resume")
STATUSES = ("running", "succeeded", "rolled_back", "rollback_failed", "halted", "interrupted", "refused",
            "crashed", "lock_lost")
PHASES = ("staged", "switched", "reverted", "gate_passed", "gate_failed", "rolled_back", "unreachable", "failed")


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IN ({', '.join(repr(v) for v in values)})")


def text(name: str, nullable: bool = True, default: str | None = None) -> sa.Column:
    return sa.Column(name, sa.Text, nullable=nullable, server_default=default)


def upgrade() -> None:
    meta = op.create_table("meta", sa.Column("key", sa.Text, primary_key=True), text("value", False))
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Text, primary_key=True), text("env", False), text("build", False), text("previous_build"),
        text("action", False), text("status", False), text("actor", False), text("reason", False, ""),
        text("started_at", False), text("finished_at"), sa.Column("exit_code", sa.Integer),
        text("plan", False, "{}"), sa.Column("resumes", sa.Text, sa.ForeignKey("rollouts.id")),
        sa.Column("pid", sa.Integer, nullable=False), text("pid_start", False, ""), text("hostname", False),
        sa.Column("undoes", sa.Text, sa.ForeignKey("rollouts.id")), sa.Column("lock_token", sa.Integer),
        text("took_over"), text("rollback_started_at"),
        _one_of("action", ACTIONS), _one_of("status", STATUSES),
    )
    op.create_index("rollouts_by_env", "rollouts", ["env", "started_at"])
    op.create_table(
        "host_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Text, sa.ForeignKey("rollouts.id"), nullable=False),
        text("host", False), text("phase", False), text("at", False), text("detail", False, "{}"),
        _one_of("phase", PHASES), sqlite_autoincrement=True,
    )
    op.create_index("host_events_by_rollout", "host_events", ["rollout_id", "seq"])
    op.create_table(
        "gates",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Text, sa.ForeignKey("rollouts.id"), nullable=False),
        sa.Column("wave", sa.Integer, nullable=False), text("host", False), text("verdict", False),
        text("evidence", False, "{}"), text("at", False), sqlite_autoincrement=True,
    )
    op.create_index("gates_by_rollout", "gates", ["rollout_id", "seq"])
    op.create_table(
        "locks",
        sa.Column("env", sa.Text, primary_key=True), text("rollout_id", False),
        sa.Column("pid", sa.Integer, nullable=False), text("pid_start", False, ""), text("hostname", False),
        text("acquired_at", False), text("heartbeat_at", False), sa.Column("ttl", sa.Float, nullable=False),
        sa.Column("token", sa.Integer, nullable=False, server_default="0"),
    )
    op.bulk_insert(meta, [{"key": "schema_version", "value": "2"}])


def downgrade() -> None:
    raise NotImplementedError("lrelease does not downgrade its state database: restore a backup")
