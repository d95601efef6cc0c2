"""The release policies (schema_version 4): release captains, environment pauses, and what a
roll-out was let through by (or refused for).

``captains`` and ``env_pauses`` keep every change as a row (who set it, when, why, when it ended),
so the current captain or pause of an environment is its newest row not yet ended, and the rows
are the audit trail. ``rollouts.policy`` is JSON: the refusal of a refused roll-out, or the
overrides (``--force``, ``--skip-next``) with their reasons. See lrelease/policies.py.

Revision ID: 0003_release_policies
Revises: 0002_rollout_seq
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_release_policies"
down_revision = "0002_rollout_seq"
branch_labels = None
depends_on = None


def text(name: str, nullable: bool = True, default: str | None = None) -> sa.Column:
    return sa.Column(name, sa.Text, nullable=nullable, server_default=default)


def upgrade() -> None:
    op.create_table(
        "captains",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        text("env", False), text("name", False), text("until"), text("reason", False, ""),
        text("set_by", False), text("set_at", False), text("cleared_by"), text("cleared_at"),
        sqlite_autoincrement=True,
    )
    op.create_index("captains_by_env", "captains", ["env", "seq"])
    op.create_table(
        "env_pauses",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        text("env", False), text("reason", False), text("paused_by", False), text("paused_at", False),
        text("unpaused_by"), text("unpaused_at"),
        sqlite_autoincrement=True,
    )
    op.create_index("env_pauses_by_env", "env_pauses", ["env", "seq"])
    op.add_column("rollouts", text("policy"))
    op.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("lrelease does not downgrade its state database: restore a backup")
